//! Runs Envoy processes, restarts them with exponential backoff, and makes
//! sure none outlives `trellis up`.
//!
//! Every child is started through `setpriv --pdeathsig KILL`, so the kernel
//! kills it when the thread that spawned it exits — including when `trellis up`
//! itself is SIGKILLed. PDEATHSIG is tied to the spawning *thread*, so all
//! spawns happen on one dedicated thread that lives exactly as long as the
//! [`Supervisor`] (never tokio's blocking pool, whose threads come and go).
//! Children get their own process group so a terminal's Ctrl-C reaches only
//! `trellis up`, which then stops them in order.
use crate::error::{LocalError, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One supervised process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Unique name, e.g. `sidecar/shop/cart-v1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// stdout and stderr are appended here.
    pub log_path: PathBuf,
}

/// The arguments `trellis up` passes to every Envoy: its own bootstrap, one
/// worker thread (many Envoys share a small machine) and no hot-restart
/// shared memory, which would otherwise collide between Envoys.
pub fn envoy_args(bootstrap: &std::path::Path, log_level: &str) -> Vec<OsString> {
    vec![
        "-c".into(),
        bootstrap.into(),
        "--concurrency".into(),
        "1".into(),
        "--disable-hot-restart".into(),
        "--log-level".into(),
        log_level.into(),
    ]
}

#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// A process that ran this long before exiting restarts with `initial`.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
        }
    }
}

impl BackoffPolicy {
    /// The delay before restart number `failures` (1-based) in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What the supervisor knows about one process, for `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessState {
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

enum Request {
    Start(ProcessSpec, mpsc::Sender<Result<u32>>),
    Stop(String, mpsc::Sender<()>),
    StopAll(mpsc::Sender<()>),
}

pub struct Supervisor {
    commands: mpsc::Sender<Request>,
    states: Arc<Mutex<BTreeMap<String, ProcessState>>>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the supervisor thread. `setpriv` is looked up on PATH.
    pub fn start(policy: BackoffPolicy) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let states = Arc::new(Mutex::new(BTreeMap::new()));
        let thread_states = Arc::clone(&states);
        let thread = std::thread::Builder::new()
            .name("trellis-supervisor".into())
            .spawn(move || run(rx, thread_states, policy))
            .map_err(|e| LocalError::io("starting supervisor thread", "trellis-supervisor", e))?;
        Ok(Supervisor {
            commands: tx,
            states,
            thread: Some(thread),
        })
    }

    /// Starts a process and returns its PID (the PID of Envoy itself:
    /// `setpriv` execs it).
    pub fn spawn(&self, spec: ProcessSpec) -> Result<u32> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Request::Start(spec, tx))
            .map_err(|_| LocalError::SupervisorGone)?;
        rx.recv().map_err(|_| LocalError::SupervisorGone)?
    }

    /// Stops one process and forgets it.
    pub fn stop(&self, name: &str) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Request::Stop(name.to_string(), tx))
            .map_err(|_| LocalError::SupervisorGone)?;
        rx.recv().map_err(|_| LocalError::SupervisorGone)
    }

    pub fn states(&self) -> BTreeMap<String, ProcessState> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops every process and the supervisor thread.
    pub fn shutdown(mut self) {
        self.stop_everything();
    }

    fn stop_everything(&mut self) {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(Request::StopAll(tx)).is_ok() {
            let _ = rx.recv();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

struct Managed {
    spec: ProcessSpec,
    child: Option<Child>,
    started: Instant,
    failures: u32,
    restart_at: Option<Instant>,
}

fn spawn_child(spec: &ProcessSpec) -> Result<Child> {
    let spawn_err = |source| LocalError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        source,
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(|e| LocalError::io("opening log", &spec.log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| LocalError::io("opening log", &spec.log_path, e))?;
    Command::new("setpriv")
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(spawn_err)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn run(
    commands: mpsc::Receiver<Request>,
    states: Arc<Mutex<BTreeMap<String, ProcessState>>>,
    policy: BackoffPolicy,
) {
    let mut managed: BTreeMap<String, Managed> = BTreeMap::new();
    let update = |name: &str, f: &dyn Fn(&mut ProcessState)| {
        if let Ok(mut s) = states.lock() {
            f(s.entry(name.to_string()).or_default());
        }
    };
    loop {
        match commands.recv_timeout(Duration::from_millis(50)) {
            Ok(Request::Start(spec, reply)) => {
                if managed.contains_key(&spec.name) {
                    let _ = reply.send(Err(LocalError::DuplicateProcess(spec.name)));
                    continue;
                }
                match spawn_child(&spec) {
                    Ok(child) => {
                        let pid = child.id();
                        update(&spec.name, &|s| s.pid = Some(pid));
                        managed.insert(
                            spec.name.clone(),
                            Managed {
                                spec,
                                child: Some(child),
                                started: Instant::now(),
                                failures: 0,
                                restart_at: None,
                            },
                        );
                        let _ = reply.send(Ok(pid));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Ok(Request::Stop(name, reply)) => {
                if let Some(mut m) = managed.remove(&name)
                    && let Some(child) = m.child.as_mut()
                {
                    kill(child);
                }
                if let Ok(mut s) = states.lock() {
                    s.remove(&name);
                }
                let _ = reply.send(());
            }
            Ok(Request::StopAll(reply)) => {
                stop_all(&mut managed, &states);
                let _ = reply.send(());
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                stop_all(&mut managed, &states);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        for (name, m) in &mut managed {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                m.child = None;
                m.failures = if m.started.elapsed() >= policy.healthy_after {
                    1
                } else {
                    m.failures + 1
                };
                let delay = policy.delay(m.failures);
                m.restart_at = Some(now + delay);
                tracing::warn!(process = %name, %exit, ?delay, "process exited; restarting after backoff");
                let exit = exit.to_string();
                update(name, &|s| {
                    s.pid = None;
                    s.last_exit = Some(exit.clone());
                });
            }
            if m.child.is_none() && m.restart_at.is_some_and(|at| at <= now) {
                m.restart_at = None;
                match spawn_child(&m.spec) {
                    Ok(child) => {
                        let pid = child.id();
                        m.child = Some(child);
                        m.started = Instant::now();
                        update(name, &|s| {
                            s.pid = Some(pid);
                            s.restarts += 1;
                        });
                    }
                    Err(e) => {
                        m.failures += 1;
                        m.restart_at = Some(now + policy.delay(m.failures));
                        let msg = e.to_string();
                        update(name, &|s| s.last_exit = Some(msg.clone()));
                    }
                }
            }
        }
    }
}

fn stop_all(
    managed: &mut BTreeMap<String, Managed>,
    states: &Arc<Mutex<BTreeMap<String, ProcessState>>>,
) {
    for m in managed.values_mut() {
        if let Some(child) = m.child.as_mut() {
            kill(child);
        }
    }
    managed.clear();
    if let Ok(mut s) = states.lock() {
        s.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(name: &str, dir: &std::path::Path, script: &str) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            log_path: dir.join(format!("{}.log", name.replace('/', "_"))),
        }
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; its state letter is Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            healthy_after: Duration::from_secs(5),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(10), Duration::from_secs(1));
        assert_eq!(p.delay(200), Duration::from_secs(1));
    }

    #[test]
    fn crashed_process_is_restarted_and_logged() {
        let tmp = tempfile::tempdir().unwrap();
        let sup = Supervisor::start(BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            healthy_after: Duration::from_secs(60),
        })
        .unwrap();
        sup.spawn(sleeper("crash", tmp.path(), "echo started; exit 3"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while sup.states().get("crash").map_or(0, |s| s.restarts) < 2 {
            assert!(Instant::now() < deadline, "no restarts: {:?}", sup.states());
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = sup.states()["crash"].clone();
        assert!(state.last_exit.unwrap().contains('3'));
        let log = std::fs::read_to_string(tmp.path().join("crash.log")).unwrap();
        assert!(log.matches("started").count() >= 2, "{log}");
        sup.shutdown();
    }

    #[test]
    fn stop_and_shutdown_kill_children() {
        let tmp = tempfile::tempdir().unwrap();
        let sup = Supervisor::start(BackoffPolicy::default()).unwrap();
        let a = sup
            .spawn(sleeper("a", tmp.path(), "exec sleep 600"))
            .unwrap();
        let b = sup
            .spawn(sleeper("b", tmp.path(), "exec sleep 600"))
            .unwrap();
        assert!(alive(a) && alive(b));
        assert!(matches!(
            sup.spawn(sleeper("a", tmp.path(), "exec sleep 600")),
            Err(LocalError::DuplicateProcess(_))
        ));
        sup.stop("a").unwrap();
        assert!(!alive(a));
        assert!(!sup.states().contains_key("a"));
        sup.shutdown();
        assert!(!alive(b));
    }
}
