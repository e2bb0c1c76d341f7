//! Ids: opaque strings with a type prefix (`msg_01j…`). ULIDs sort by creation time.

/// A new id with its type prefix: `msg_01j…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}
