//! The patch engines of `PATCH` requests, one per content type:
//!
//! ```text
//! application/merge-patch+json           merge::merge_patch(target: &Value, patch: &Value) -> Value
//! application/json-patch+json            json_patch::apply_json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError>
//! application/strategic-merge-patch+json strategic::strategic_merge_patch(current: &Value, patch: &Value, kind: &str) -> Result<Value, ApiError>
//!                                        (custom resources: strategic::unsupported_for_custom_resource() -> 415)
//! ```
//! `merge::create_merge_patch(from, to)` computes the merge patch that turns `from` into `to`.

pub mod json_patch;
pub mod merge;
pub mod strategic;
