//! The openssl binary, and an HTTPS file server made with it
//! (`openssl s_server -WWW`) for tests of TLS the proxy must verify.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// openssl from `OPENSSL_BIN` or PATH; missing = failure.
pub fn openssl_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("OPENSSL_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("openssl"))
            .find(|p| p.exists())
    });
    found.expect("openssl not found (OPENSSL_BIN or PATH): run `make setup`")
}

/// Runs openssl in `dir` and returns its stdout; fails the test on a non-zero exit.
pub fn openssl(args: &[&str], dir: &Path) -> String {
    crate::run_ok(Command::new(openssl_bin()).args(args).current_dir(dir))
}

/// `openssl req` arguments for a new P-256 key, unencrypted, written to the file named next.
const NEW_P256_KEY: [&str; 6] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
];

/// A self-signed P-256 certificate `cert` and its key `key` in `dir`, with the
/// X.509 extensions `extensions` (`-addext` values).
pub fn self_signed(dir: &Path, key: &str, cert: &str, subject: &str, extensions: &[&str]) {
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_P256_KEY);
    args.extend([key, "-out", cert, "-days", "3650", "-subj", subject]);
    for extension in extensions {
        args.extend(["-addext", extension]);
    }
    let _ = openssl(&args, dir);
}

/// A self-signed CA certificate (see [`self_signed`]).
pub fn self_signed_ca(dir: &Path, key: &str, cert: &str, subject: &str) {
    self_signed(
        dir,
        key,
        cert,
        subject,
        &[
            "basicConstraints=critical,CA:true",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A P-256 key `key` and a certificate `cert` for it, signed by `ca_cert` and
/// `ca_key`, valid for a year, with the extension lines `extensions` (an
/// openssl extension file); everything in `dir`.
pub fn signed_by(
    dir: &Path,
    (ca_key, ca_cert): (&str, &str),
    (key, cert): (&str, &str),
    subject: &str,
    extensions: &str,
) {
    let csr = format!("{cert}.csr");
    let ext = format!("{cert}.ext");
    std::fs::write(dir.join(&ext), extensions).expect("writing the extension file");
    let mut request = vec!["req"];
    request.extend(NEW_P256_KEY);
    request.extend([key, "-out", &csr, "-subj", subject]);
    let _ = openssl(&request, dir);
    let _ = openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca_cert,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "365",
            "-out",
            cert,
            "-extfile",
            &ext,
        ],
        dir,
    );
}

/// Serves the files it was given over HTTPS, with a self-signed certificate
/// for its address that no system trusts. Killed by PID on drop.
pub struct HttpsFileServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl HttpsFileServer {
    /// Serves `files` (`(name, content)`, at `/<name>`) on `ip`, a free port.
    pub fn start(ip: Ipv4Addr, files: &[(&str, &str)]) -> HttpsFileServer {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("writing a served file");
        }
        let san = format!("subjectAltName=IP:{ip}");
        self_signed(
            dir.path(),
            "key.pem",
            "cert.pem",
            "/CN=untrusted-test-server",
            &[&san],
        );
        let port = crate::free_ports_on(ip, 1)[0];
        let addr = SocketAddr::from((ip, port));
        let child = Command::new(openssl_bin())
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
            ])
            .args(["-accept", &addr.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting openssl s_server");
        let server = HttpsFileServer { child, addr, dir };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "openssl s_server did not listen on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /<name>` by a client that trusts the server's certificate
    /// (`openssl s_client -verify_return_error`): the whole response.
    pub fn fetch_trusting(&self, name: &str) -> String {
        self.fetch_trusting_via(self.addr, name)
    }

    /// [`HttpsFileServer::fetch_trusting`] through `via` (a proxy in front of
    /// the server that passes its TLS through): the server's certificate is
    /// still what the client checks.
    pub fn fetch_trusting_via(&self, via: SocketAddr, name: &str) -> String {
        self.fetch_trusting_via_sni(via, None, name)
            .unwrap_or_else(|e| panic!("openssl s_client to {via}: {e}"))
    }

    /// [`HttpsFileServer::fetch_trusting_via`], the client sending `sni` as
    /// its server name (SNI) when given; `Err` with s_client's complaint when
    /// the exchange fails.
    pub fn fetch_trusting_via_sni(
        &self,
        via: SocketAddr,
        sni: Option<&str>,
        name: &str,
    ) -> Result<String, String> {
        let mut child = Command::new(openssl_bin())
            .args(["s_client", "-quiet", "-verify_return_error"])
            .args([
                "-CAfile",
                "cert.pem",
                "-verify_ip",
                &self.addr.ip().to_string(),
            ])
            .args(["-connect", &via.to_string()])
            .args(sni.map(|s| ["-servername", s]).into_iter().flatten())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting openssl s_client");
        use std::io::Write;
        let request = format!("GET /{name} HTTP/1.0\r\n\r\n");
        let mut stdin = child.stdin.take().expect("s_client stdin");
        // A refused handshake can end s_client before the request is written
        // (a broken pipe): that is a refusal too, not a harness failure.
        let written = stdin.write_all(request.as_bytes());
        // The server closes after its answer; keep stdin open until then.
        let out = child.wait_with_output().expect("openssl s_client");
        drop(stdin);
        if !out.status.success() || written.is_err() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(match written {
                Err(e) => format!("s_client ended before the request was written ({e}): {stderr}"),
                Ok(()) => stderr.into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What a TLS client ([`tls_exchange`]) does: the server name it sends (SNI),
/// the roots it verifies the server's chain with, and the certificate it presents.
pub struct TlsClient<'a> {
    pub sni: &'a str,
    /// PEM roots the server's chain must lead to (the name is not checked
    /// unless `verify_hostname`: mesh certificates carry only a SPIFFE URI).
    pub ca: &'a Path,
    pub verify_hostname: bool,
    /// (certificate chain, key) PEM files presented to the server.
    pub client: Option<(&'a Path, &'a Path)>,
}

/// A child process killed (by PID) and reaped when dropped, also on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One TLS exchange with `openssl s_client` as `client`: connects to `addr`,
/// writes `request` once the handshake is done, and returns everything the
/// server sent until it closed. `Err` with s_client's complaint when the
/// handshake or the exchange fails, or when the server did not close within
/// 20 s (s_client is then killed).
pub fn tls_exchange(
    addr: SocketAddr,
    client: &TlsClient<'_>,
    request: &[u8],
) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut cmd = Command::new(openssl_bin());
    cmd.args(["s_client", "-quiet", "-verify_return_error"])
        .arg("-CAfile")
        .arg(client.ca)
        .args(["-connect", &addr.to_string(), "-servername", client.sni]);
    if client.verify_hostname {
        cmd.args(["-verify_hostname", client.sni]);
    }
    if let Some((cert, key)) = client.client {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting openssl s_client"),
    );
    let mut stdout = child.0.stdout.take().expect("s_client stdout");
    let mut stderr = child.0.stderr.take().expect("s_client stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    // Keep stdin open: s_client stops at its end, before the answer is read.
    let mut stdin = child.0.stdin.take().expect("s_client stdin");
    let _ = stdin.write_all(request);
    let _ = stdin.flush();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for s_client") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    drop(child);
    let out = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!("s_client exited with {s}: {err}{out}")),
        None => Err(format!("s_client still running after 20 s: {err}{out}")),
    }
}

impl Drop for HttpsFileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CRL `crl` (PEM) from the CA `ca_cert`/`ca_key` listing the certificates
/// `revoked`, made with a minimal `openssl ca` database in `dir`.
pub fn revocation_list(dir: &Path, (ca_key, ca_cert): (&str, &str), revoked: &[&str], crl: &str) {
    std::fs::write(dir.join("index.txt"), "").expect("writing the CA database");
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\n\
         default_md = sha256\ndefault_crl_days = 30\n",
    )
    .expect("writing the CA configuration");
    let ca_args = ["-config", "ca.cnf", "-keyfile", ca_key, "-cert", ca_cert];
    for cert in revoked {
        let mut revoke = vec!["ca", "-revoke", cert];
        revoke.extend(ca_args);
        let _ = openssl(&revoke, dir);
    }
    let mut gencrl = vec!["ca", "-gencrl", "-out", crl];
    gencrl.extend(ca_args);
    let _ = openssl(&gencrl, dir);
}
