//! Ids: opaque strings with a type prefix (`msg_01j…`), one type per kind of
//! object so that a message id cannot be passed where a tenant's is wanted.
//! ULIDs sort by creation time, which the lists' cursors rely on.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A new id with its type prefix: `msg_01j…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The least id of this type that could be made at `unix_ms` or later: every
/// id made before then sorts below it (ids compare bytewise).
pub fn id_floor(prefix: &str, unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0);
    format!(
        "{prefix}_{}",
        ulid::Ulid::from_parts(ms, 0).to_string().to_lowercase()
    )
}

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(new_id($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// An id as stored, or as a client sent it: unchecked, since an id
        /// that is not ours simply finds nothing (a 404).
        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

id_type! {
    /// `ten_…`
    TenantId = "ten";
    /// `key_…` (the key itself is `line_test_…`/`line_live_…`, shown once)
    KeyId = "key";
    /// `msg_…`
    MessageId = "msg";
    /// `otp_…`
    VerificationId = "otp";
    /// `wh_…`
    EndpointId = "wh";
    /// `whd_…`; also the `webhook-id` header, the same on every attempt
    DeliveryId = "whd";
    /// `num_…`: one rental of a number by a tenant
    NumberId = "num";
    /// `usr_…`: a person in a tenant's team (the dashboard)
    UserId = "usr";
    /// `inv_…`: an invitation to join a team
    InviteId = "inv";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_floor_splits_ids_by_time() {
        let before = MessageId::generate();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let floor = id_floor("msg", now + 1);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let after = MessageId::generate();
        assert!(before.as_str() < floor.as_str(), "{before} < {floor}");
        assert!(after.as_str() > floor.as_str(), "{after} > {floor}");
        assert_eq!(floor.len(), before.as_str().len());
    }

    #[test]
    fn ids_carry_their_prefix_and_serialize_as_strings() {
        let a = MessageId::generate();
        assert!(a.as_str().starts_with("msg_"));
        assert_eq!(a.as_str().len(), "msg_".len() + 26);
        assert_ne!(a, MessageId::generate());
        assert_eq!(serde_json::to_value(&a).unwrap(), a.as_str());
    }
}
