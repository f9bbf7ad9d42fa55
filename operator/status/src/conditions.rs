//! The status of one mesh configuration object, computed from what the sources
//! read and what the translation found (pure: values and the time in, status out).
use trellis_api::Resource;
use trellis_api::status::{Condition, ResourceStatus};
use trellis_sources::{ConfigContent, ConfigObject};
use trellis_translate::TranslateError;

pub const ACCEPTED: &str = "Accepted";
pub const WARNING: &str = "Warning";

/// Longest condition message; longer lists are cut with a count of the rest.
const MAX_MESSAGE: usize = 1024;

/// A problem with an object: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

impl Finding {
    fn line(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

/// Why an object is not accepted: it could not be read, or it does not validate.
pub fn rejection(object: &ConfigObject) -> Vec<Finding> {
    match &object.content {
        ConfigContent::Unreadable { path, message } => vec![Finding {
            path: path.clone(),
            message: message.clone(),
        }],
        ConfigContent::Loaded(resource) => validation(resource),
    }
}

fn validation(resource: &Resource) -> Vec<Finding> {
    trellis_api::validate(resource)
        .into_iter()
        .map(|e| Finding {
            path: e.path,
            message: e.message,
        })
        .collect()
}

/// Joins findings into one message of bounded length.
pub fn summarize(findings: &[Finding]) -> String {
    let mut out = String::new();
    for (i, f) in findings.iter().enumerate() {
        let line = f.line();
        let sep = if i == 0 { "" } else { "; " };
        if out.len() + sep.len() + line.len() > MAX_MESSAGE {
            out.push_str(&format!("{sep}and {} more", findings.len() - i));
            break;
        }
        out.push_str(sep);
        out.push_str(&line);
    }
    out
}

/// The desired status of `object`. `analysis`: the translation's findings about this
/// object (already filtered to it). `previous`: the status the API holds, whose
/// transition times are kept for conditions that did not change. `now`: RFC 3339.
pub fn resource_status(
    object: &ConfigObject,
    analysis: &[TranslateError],
    previous: Option<&ResourceStatus>,
    now: &str,
) -> ResourceStatus {
    let generation = object.generation;
    let kind = object.object.kind.as_str();
    let rejected = rejection(object);
    let mut conditions = Vec::new();
    if rejected.is_empty() {
        let message = if object.programmed {
            format!("The {kind} is valid and is part of the configuration sent to proxies.")
        } else {
            format!("The {kind} is valid.")
        };
        conditions.push(condition(ACCEPTED, true, "Accepted", message, generation));
        let mut warnings: Vec<&TranslateError> = analysis.iter().collect();
        warnings.sort();
        warnings.dedup();
        if let Some(first) = warnings.first() {
            let findings: Vec<Finding> = warnings
                .iter()
                .map(|e| Finding {
                    path: e.path.clone(),
                    message: e.message.clone(),
                })
                .collect();
            let reason = format!("{:?}", first.code);
            conditions.push(condition(
                WARNING,
                true,
                &reason,
                summarize(&findings),
                generation,
            ));
        } else if !object.programmed {
            let message = format!(
                "Trellis validates {kind} objects but does not program them into proxies yet."
            );
            conditions.push(condition(
                WARNING,
                true,
                "NotImplemented",
                message,
                generation,
            ));
        }
    } else {
        let reason = match object.content {
            ConfigContent::Unreadable { .. } => "Unreadable",
            ConfigContent::Loaded(_) => "Invalid",
        };
        conditions.push(condition(
            ACCEPTED,
            false,
            reason,
            summarize(&rejected),
            generation,
        ));
    }
    for c in &mut conditions {
        let kept = previous
            .and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_))
            .filter(|o| o.status == c.status)
            .and_then(|o| o.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or_else(|| now.to_string()));
    }
    ResourceStatus {
        conditions,
        observed_generation: generation,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: None,
        observed_generation,
    }
}

/// Whether the object is accepted according to `status`.
pub fn is_accepted(status: &ResourceStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == ACCEPTED && c.status == "True")
}

#[cfg(test)]
mod tests;
