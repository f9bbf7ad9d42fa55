//! The state directory of `trellis up` and the atomic writes into it.
//!
//! Layout (all under the root):
//! - `ca/`: the mesh root (kept across restarts so identities stay valid)
//! - `certs/<ns>/<sa>/`: `cert-chain.pem`, `key.pem`, `root-cert.pem` in the
//!   Kubernetes secret-volume layout (`..vN/` + `..data` symlink), so Envoy's
//!   `watched_directory` sees each rotation as one atomic change
//! - `bootstrap/`: one bootstrap and its SDS files per proxy
//! - `logs/`: one log file per Envoy
//! - `assignments.json`: ports handed out on the first run, reused afterwards
//! - `status.json`: what `trellis status` prints
use crate::error::{LocalError, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

/// The name Kubernetes gives the symlink to the current version directory.
pub const DATA_LINK: &str = "..data";

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating when missing) a state directory and its subdirectories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let state = StateDir { root: root.into() };
        for dir in [
            state.root.clone(),
            state.ca_dir(),
            state.root.join("certs"),
            state.bootstrap_dir(),
            state.logs_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        Ok(state)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// The certificate directory of one service account; both names are
    /// checked so that no identity can write outside `certs/`.
    pub fn cert_dir(&self, namespace: &str, service_account: &str) -> Result<PathBuf> {
        for (field, value) in [
            ("namespace", namespace),
            ("serviceAccount", service_account),
        ] {
            if !is_safe_component(value) {
                return Err(LocalError::UnsafeIdentity {
                    namespace: namespace.to_string(),
                    service_account: service_account.to_string(),
                    field,
                    value: value.to_string(),
                });
            }
        }
        Ok(self
            .root
            .join("certs")
            .join(namespace)
            .join(service_account))
    }

    pub fn bootstrap_dir(&self) -> PathBuf {
        self.root.join("bootstrap")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    pub fn assignments_path(&self) -> PathBuf {
        self.root.join("assignments.json")
    }
}

/// Kubernetes object names (DNS labels and subdomains) are safe path
/// components; anything else (`..`, `/`, empty, hidden) is refused.
pub fn is_safe_component(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Writes `contents` to `path` so that readers see the old or the new file,
/// never a partial one: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| LocalError::io("writing", path, std::io::ErrorKind::InvalidInput.into()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| LocalError::io("creating", &tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| LocalError::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LocalError::io("renaming into place", path, e))
}

/// One file of a certificate directory; `private` files are created 0600.
pub struct CertFile<'a> {
    pub name: &'a str,
    pub contents: &'a [u8],
    pub private: bool,
}

/// Replaces the contents of a certificate directory the way the kubelet
/// updates a secret volume: the files go into a fresh `..vN/` directory, the
/// `..data` symlink is swapped to it with one rename, and each top-level name
/// is a symlink through `..data/`. Older versions are removed afterwards.
pub fn write_cert_dir(dir: &Path, files: &[CertFile<'_>]) -> Result<()> {
    for file in files {
        if !is_plain_file_name(file.name) {
            return Err(LocalError::UnsafeFileName(file.name.to_string()));
        }
    }
    fs::create_dir_all(dir).map_err(|e| LocalError::io("creating", dir, e))?;
    let version = next_version(dir)?;
    let version_name = format!("..v{version}");
    let version_dir = dir.join(&version_name);
    fs::create_dir(&version_dir).map_err(|e| LocalError::io("creating", &version_dir, e))?;
    for file in files {
        let mode = if file.private { 0o600 } else { 0o644 };
        write_atomic(&version_dir.join(file.name), file.contents, mode)?;
    }
    replace_symlink(dir, DATA_LINK, Path::new(&version_name))?;
    for file in files {
        let target = Path::new(DATA_LINK).join(file.name);
        let link = dir.join(file.name);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            replace_symlink(dir, file.name, &target)?;
        }
    }
    remove_old_versions(dir, &version_name)
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

fn replace_symlink(dir: &Path, name: &str, target: &Path) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp-link"));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(|e| LocalError::io("linking", &tmp, e))?;
    let link = dir.join(name);
    fs::rename(&tmp, &link).map_err(|e| LocalError::io("swapping link", &link, e))
}

fn version_dirs(dir: &Path) -> Result<Vec<(u64, String)>> {
    let entries = fs::read_dir(dir).map_err(|e| LocalError::io("reading", dir, e))?;
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LocalError::io("reading", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("..v").and_then(|n| n.parse::<u64>().ok()) {
            versions.push((n, name));
        }
    }
    Ok(versions)
}

fn next_version(dir: &Path) -> Result<u64> {
    Ok(version_dirs(dir)?
        .into_iter()
        .map(|(n, _)| n)
        .max()
        .map_or(1, |n| n + 1))
}

fn remove_old_versions(dir: &Path, current: &str) -> Result<()> {
    for (_, name) in version_dirs(dir)? {
        if name != current {
            let old = dir.join(&name);
            fs::remove_dir_all(&old).map_err(|e| LocalError::io("removing", &old, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files<'a>(chain: &'a [u8], key: &'a [u8]) -> Vec<CertFile<'a>> {
        vec![
            CertFile {
                name: "cert-chain.pem",
                contents: chain,
                private: false,
            },
            CertFile {
                name: "key.pem",
                contents: key,
                private: true,
            },
        ]
    }

    #[test]
    fn open_creates_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path().join("s")).unwrap();
        for dir in [state.ca_dir(), state.bootstrap_dir(), state.logs_dir()] {
            assert!(dir.is_dir(), "{}", dir.display());
        }
        assert_eq!(
            state.cert_dir("shop", "cart").unwrap(),
            tmp.path().join("s/certs/shop/cart")
        );
    }

    #[test]
    fn cert_dir_refuses_traversal() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let err = state.cert_dir("shop", "../../etc").unwrap_err().to_string();
        assert!(
            err.contains("shop/../../etc") && err.contains("serviceAccount"),
            "{err}"
        );
        assert!(state.cert_dir("..", "cart").is_err());
    }

    #[test]
    fn cert_dir_swap_keeps_one_version_and_links_through_data() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        write_cert_dir(&dir, &files(b"chain-1", b"key-1")).unwrap();
        write_cert_dir(&dir, &files(b"chain-2", b"key-2")).unwrap();
        assert_eq!(fs::read(dir.join("cert-chain.pem")).unwrap(), b"chain-2");
        assert_eq!(fs::read(dir.join("key.pem")).unwrap(), b"key-2");
        assert_eq!(
            fs::read_link(dir.join(DATA_LINK)).unwrap(),
            Path::new("..v2")
        );
        assert_eq!(
            fs::read_link(dir.join("key.pem")).unwrap(),
            Path::new("..data/key.pem")
        );
        assert!(!dir.join("..v1").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn cert_dir_refuses_path_in_file_name() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = [CertFile {
            name: "../x",
            contents: b"",
            private: false,
        }];
        assert!(matches!(
            write_cert_dir(tmp.path(), &bad),
            Err(LocalError::UnsafeFileName(_))
        ));
    }

    #[test]
    fn write_atomic_replaces_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("status.json");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    proptest! {
        #[test]
        fn safe_components_never_escape(value in ".{0,40}") {
            if is_safe_component(&value) {
                prop_assert!(!value.contains('/'));
                prop_assert!(value != ".." && !value.starts_with('.'));
            }
        }
    }
}
