//! Turns edits in the configuration directory into apply/delete events.
//!
//! A polling scan (content hashes, not mtimes, so a rewrite with the same
//! bytes is no change) keeps this free of platform notification APIs. A
//! change is reported once the file has looked the same on two consecutive
//! scans, so an editor's half-written save is never applied.
use crate::error::{LocalError, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    Apply { path: PathBuf, contents: String },
    Delete { path: PathBuf },
}

type Digest32 = [u8; 32];

/// One scan of the directory: YAML files and their contents.
pub type Scan = BTreeMap<PathBuf, Vec<u8>>;

/// Reads every `*.yaml`/`*.yml` file under `dir` (recursively), skipping
/// hidden files and directories (editor swap files, `..data` links).
pub fn scan_dir(dir: &Path) -> Result<Scan> {
    let mut out = Scan::new();
    scan_into(dir, &mut out)?;
    Ok(out)
}

fn scan_into(dir: &Path, out: &mut Scan) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| LocalError::io("reading", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LocalError::io("reading", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            scan_into(&path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    out.insert(path, bytes);
                }
                // Deleted between listing and reading: the next scan reports it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LocalError::io("reading", &path, e)),
            }
        }
    }
    Ok(())
}

/// Compares scans and decides which changes are settled.
#[derive(Debug, Default)]
pub struct ChangeDetector {
    /// What has been reported (the consumer's view).
    reported: BTreeMap<PathBuf, Digest32>,
    /// What the previous scan saw.
    previous: BTreeMap<PathBuf, Digest32>,
}

impl ChangeDetector {
    /// The first scan: everything is applied at once, no settling needed.
    pub fn initial(&mut self, scan: &Scan) -> Vec<FileEvent> {
        let digests = digest_all(scan);
        let events = scan
            .iter()
            .map(|(path, bytes)| FileEvent::Apply {
                path: path.clone(),
                contents: String::from_utf8_lossy(bytes).into_owned(),
            })
            .collect();
        self.reported = digests.clone();
        self.previous = digests;
        events
    }

    /// A later scan: reports changes that look the same as in the previous scan.
    pub fn observe(&mut self, scan: &Scan) -> Vec<FileEvent> {
        let current = digest_all(scan);
        let mut events = Vec::new();
        for (path, digest) in &current {
            let settled = self.previous.get(path) == Some(digest);
            if settled && self.reported.get(path) != Some(digest) {
                self.reported.insert(path.clone(), *digest);
                events.push(FileEvent::Apply {
                    path: path.clone(),
                    contents: String::from_utf8_lossy(&scan[path]).into_owned(),
                });
            }
        }
        let gone: Vec<PathBuf> = self
            .reported
            .keys()
            .filter(|p| !current.contains_key(*p) && !self.previous.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            self.reported.remove(&path);
            events.push(FileEvent::Delete { path });
        }
        self.previous = current;
        events
    }
}

fn digest_all(scan: &Scan) -> BTreeMap<PathBuf, Digest32> {
    scan.iter()
        .map(|(p, bytes)| (p.clone(), Sha256::digest(bytes).into()))
        .collect()
}

/// A running watcher; dropping it stops the polling thread.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Scans `dir` now, hands the initial events to `on_events`, then polls every
/// `interval` on a thread and hands over each settled batch. Scan errors (a
/// directory briefly missing) are reported through `on_error` and retried.
pub fn watch(
    dir: PathBuf,
    interval: Duration,
    mut on_events: impl FnMut(Vec<FileEvent>) + Send + 'static,
    on_error: impl Fn(LocalError) + Send + 'static,
) -> Result<WatchHandle> {
    let mut detector = ChangeDetector::default();
    let first = scan_dir(&dir)?;
    on_events(detector.initial(&first));
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("trellis-watcher".into())
        .spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                match scan_dir(&dir) {
                    Ok(scan) => {
                        let events = detector.observe(&scan);
                        if !events.is_empty() {
                            on_events(events);
                        }
                    }
                    Err(e) => on_error(e),
                }
            }
        })
        .map_err(|e| LocalError::io("starting watcher thread", "trellis-watcher", e))?;
    Ok(WatchHandle {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(files: &[(&str, &str)]) -> Scan {
        files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn change_is_reported_once_it_has_settled() {
        let mut d = ChangeDetector::default();
        assert_eq!(d.initial(&scan(&[("a.yaml", "1")])).len(), 1);
        assert!(d.observe(&scan(&[("a.yaml", "1")])).is_empty());
        assert!(
            d.observe(&scan(&[("a.yaml", "2")])).is_empty(),
            "not settled yet"
        );
        let events = d.observe(&scan(&[("a.yaml", "2")]));
        assert_eq!(
            events,
            vec![FileEvent::Apply {
                path: "a.yaml".into(),
                contents: "2".into()
            }]
        );
        assert!(d.observe(&scan(&[("a.yaml", "2")])).is_empty());
    }

    #[test]
    fn half_written_file_is_never_applied() {
        let mut d = ChangeDetector::default();
        d.initial(&scan(&[]));
        assert!(d.observe(&scan(&[("a.yaml", "kind: Se")])).is_empty());
        assert!(d.observe(&scan(&[("a.yaml", "kind: Service")])).is_empty());
        let events = d.observe(&scan(&[("a.yaml", "kind: Service")]));
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn deletion_is_reported_after_settling() {
        let mut d = ChangeDetector::default();
        d.initial(&scan(&[("a.yaml", "1"), ("b.yaml", "1")]));
        assert!(d.observe(&scan(&[("b.yaml", "1")])).is_empty());
        assert_eq!(
            d.observe(&scan(&[("b.yaml", "1")])),
            vec![FileEvent::Delete {
                path: "a.yaml".into()
            }]
        );
    }

    #[test]
    fn scan_reads_yaml_recursively_and_skips_hidden() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("a.yaml"), "a").unwrap();
        std::fs::write(tmp.path().join("sub/b.yml"), "b").unwrap();
        std::fs::write(tmp.path().join(".a.yaml.swp"), "x").unwrap();
        std::fs::write(tmp.path().join("README.md"), "x").unwrap();
        let s = scan_dir(tmp.path()).unwrap();
        let names: Vec<_> = s
            .keys()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("a.yaml"), PathBuf::from("sub/b.yml")]
        );
    }

    #[test]
    fn watch_thread_reports_an_edit() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.yaml"), "1").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let _h = watch(
            tmp.path().to_path_buf(),
            Duration::from_millis(20),
            move |events| {
                let _ = tx.send(events);
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(rx.recv().unwrap().len(), 1);
        std::fs::write(tmp.path().join("a.yaml"), "2").unwrap();
        let events = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(&events[0], FileEvent::Apply { contents, .. } if contents == "2"));
    }

    proptest! {
        // Whatever the sequence of scans, after two identical scans the
        // reported view equals the directory.
        #[test]
        fn settles_to_the_directory(
            steps in proptest::collection::vec(
                proptest::collection::btree_map("[a-c]\\.yaml", "[0-2]", 0..3), 1..8)
        ) {
            let mut d = ChangeDetector::default();
            d.initial(&Scan::new());
            let mut view: BTreeMap<PathBuf, String> = BTreeMap::new();
            let apply = |events: Vec<FileEvent>, view: &mut BTreeMap<PathBuf, String>| {
                for e in events {
                    match e {
                        FileEvent::Apply { path, contents } => { view.insert(path, contents); }
                        FileEvent::Delete { path } => { view.remove(&path); }
                    }
                }
            };
            for step in &steps {
                let s: Scan = step.iter().map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec())).collect();
                apply(d.observe(&s), &mut view);
            }
            let last: Scan = steps.last().unwrap().iter().map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec())).collect();
            apply(d.observe(&last), &mut view);
            let expected: BTreeMap<PathBuf, String> = steps.last().unwrap().iter().map(|(p, c)| (PathBuf::from(p), c.clone())).collect();
            prop_assert_eq!(view, expected);
        }
    }
}
