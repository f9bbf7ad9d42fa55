//! The resources of the configuration directory, kept per file, and what an
//! edit changes: the bridge between [`crate::watcher`] events and the model.
//!
//! A document that does not load or does not validate is reported (file,
//! kind/namespace/name, field path, message) and skipped; everything else in
//! the directory still applies. When two files define the same object, the
//! first path in sorted order wins and the other is reported.
use crate::status::ConfigError;
use crate::watcher::FileEvent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trellis_api::{ObjectRef, Resource};

#[derive(Debug, Clone, PartialEq)]
pub enum ResourceChange {
    Apply(Box<Resource>),
    Delete(ObjectRef),
}

#[derive(Debug, Default)]
struct FileState {
    resources: Vec<Resource>,
    errors: Vec<ConfigError>,
}

#[derive(Debug, Default)]
pub struct ConfigSet {
    files: BTreeMap<PathBuf, FileState>,
}

impl ConfigSet {
    /// Applies file events and returns the object-level changes, deletions first.
    pub fn apply_events(&mut self, events: Vec<FileEvent>) -> Vec<ResourceChange> {
        let before: BTreeMap<ObjectRef, Resource> = self
            .effective()
            .into_iter()
            .map(|(key, (_, resource))| (key, resource.clone()))
            .collect();
        for event in events {
            match event {
                FileEvent::Apply { path, contents } => {
                    let state = load_file(&path, &contents);
                    self.files.insert(path, state);
                }
                FileEvent::Delete { path } => {
                    self.files.remove(&path);
                }
            }
        }
        let after = self.effective();
        let mut changes: Vec<ResourceChange> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| ResourceChange::Delete(k.clone()))
            .collect();
        for (key, (_, resource)) in &after {
            if before.get(key) != Some(*resource) {
                changes.push(ResourceChange::Apply(Box::new((*resource).clone())));
            }
        }
        changes
    }

    /// Every object in effect, with the file it comes from.
    fn effective(&self) -> BTreeMap<ObjectRef, (&Path, &Resource)> {
        let mut out = BTreeMap::new();
        for (path, state) in &self.files {
            for resource in &state.resources {
                out.entry(resource.object_ref())
                    .or_insert((path.as_path(), resource));
            }
        }
        out
    }

    /// Every object in effect.
    pub fn resources(&self) -> Vec<Resource> {
        self.effective()
            .into_values()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Load and validation errors, plus objects defined twice.
    pub fn errors(&self) -> Vec<ConfigError> {
        let mut errors: Vec<ConfigError> = self
            .files
            .values()
            .flat_map(|s| s.errors.iter().cloned())
            .collect();
        let effective = self.effective();
        for (path, state) in &self.files {
            for resource in &state.resources {
                let key = resource.object_ref();
                if let Some((winner, _)) = effective.get(&key)
                    && *winner != path.as_path()
                {
                    errors.push(error_for(
                        path,
                        Some(&key),
                        "",
                        format!(
                            "also defined in {}; that definition is used",
                            winner.display()
                        ),
                    ));
                }
            }
        }
        errors
    }
}

fn error_for(path: &Path, object: Option<&ObjectRef>, field: &str, message: String) -> ConfigError {
    ConfigError {
        file: path.display().to_string(),
        kind: object.map(|o| o.kind.clone()),
        namespace: object.and_then(|o| o.namespace.clone()),
        name: object.map(|o| o.name.clone()),
        field: (!field.is_empty()).then(|| field.to_string()),
        message,
    }
}

fn load_file(path: &Path, contents: &str) -> FileState {
    let source = path.display().to_string();
    let (loaded, load_errors) = trellis_api::load_all(&source, contents);
    let mut state = FileState::default();
    for e in load_errors {
        let message = match e.object {
            Some(_) => e.message.clone(),
            None => format!("document {}: {}", e.document, e.message),
        };
        state
            .errors
            .push(error_for(path, e.object.as_ref(), &e.path, message));
    }
    for resource in loaded {
        let problems = trellis_api::validate(&resource);
        if problems.is_empty() {
            state.resources.push(resource);
        } else {
            let object = resource.object_ref();
            for p in problems {
                state
                    .errors
                    .push(error_for(path, Some(&object), &p.path, p.message));
            }
        }
    }
    state
}

#[cfg(test)]
mod tests;
