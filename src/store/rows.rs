//! Rows read back as records: each record's columns, in SELECT order, beside
//! the code that reads them (either backend).

use super::records::{
    ApiKeyInfo, AuthContext, ClaimedMessage, SandboxMessage, StoredEndpoint, Tenant,
};
use super::sql::{Columns, Db, FromRow};
use super::{Result, StoreError};
use crate::domain::Mode;
use crate::domain::encoding::Encoding;
use crate::domain::message::{Message, MessageStatus, Pence, StatusChange, Timestamp};
use crate::domain::number::{Number, NumberStatus};
use crate::domain::sender::Sender;
use crate::domain::verification::{StoredVerification, VerificationStatus};
use crate::domain::webhook::EventSet;

/// A stored value that does not read back as its type.
fn bad(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn small<D: Db>(r: &Columns<D>, i: usize, what: &str) -> Result<u32> {
    u32::try_from(r.get::<i64>(i)?).map_err(|_| bad(what))
}

fn mode<D: Db>(r: &Columns<D>, i: usize) -> Result<Mode> {
    Mode::parse(&r.get::<String>(i)?).ok_or_else(|| bad("mode"))
}

fn encoding<D: Db>(r: &Columns<D>, i: usize) -> Result<Encoding> {
    Encoding::parse(&r.get::<String>(i)?).ok_or_else(|| bad("encoding"))
}

fn at<D: Db>(r: &Columns<D>, i: usize) -> Result<Timestamp> {
    Ok(Timestamp(r.get(i)?))
}

/// The columns a [`Tenant`] is read from, in SELECT order (of `tenants t`).
pub const TENANT_COLUMNS: &str =
    "t.id, t.name, t.allowed_regions, t.default_sender, t.spend_cap_pence";

/// A tenant from `TENANT_COLUMNS`, starting at column `at`.
pub(super) fn tenant_from<D: Db>(r: &Columns<D>, at: usize) -> Result<Tenant> {
    let allowed: String = r.get(at + 2)?;
    Ok(Tenant {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        allowed_regions: allowed
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        default_sender: r
            .get::<Option<String>>(at + 3)?
            .map(|s| Sender::parse(&s).map_err(|_| bad("default_sender")))
            .transpose()?,
        spend_cap: r.get::<Option<i64>>(at + 4)?.map(Pence),
    })
}

impl<D: Db> FromRow<D> for Tenant {
    fn from_row(row: &D::Row) -> Result<Self> {
        tenant_from(&Columns::<D>(row), 0)
    }
}

/// An API key's mode, then `TENANT_COLUMNS`.
impl<D: Db> FromRow<D> for AuthContext {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(AuthContext {
            mode: mode(&r, 0)?,
            tenant: tenant_from(&r, 1)?,
        })
    }
}

/// The columns an [`ApiKeyInfo`] is read from, in SELECT order.
pub const API_KEY_COLUMNS: &str = "id, mode, name, hint, created_at, last_used_at, revoked_at";

impl<D: Db> FromRow<D> for ApiKeyInfo {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(ApiKeyInfo {
            id: r.get(0)?,
            mode: mode(&r, 1)?,
            name: r.get(2)?,
            hint: r.get(3)?,
            created_at: at(&r, 4)?,
            last_used_at: r.get::<Option<i64>>(5)?.map(Timestamp),
            revoked_at: r.get::<Option<i64>>(6)?.map(Timestamp),
        })
    }
}

/// The columns a [`Message`] is read from, in SELECT order.
pub const MESSAGE_COLUMNS: &str = "id, to_number, sender, mode, status, encoding, segments, \
     price_pence, reference, error_code, error_message, created_at, updated_at, history";

impl<D: Db> FromRow<D> for Message {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        let created_at = at(&r, 11)?;
        let status: String = r.get(4)?;
        Ok(Message {
            id: r.get(0)?,
            to: r.get(1)?,
            from: r.get(2)?,
            mode: mode(&r, 3)?,
            status: MessageStatus::parse(&status).ok_or_else(|| bad("status"))?,
            encoding: encoding(&r, 5)?,
            segments: small(&r, 6, "segments")?,
            price_pence: Pence(r.get(7)?),
            reference: r.get(8)?,
            error_code: r.get(9)?,
            error_message: r.get(10)?,
            created_at,
            updated_at: at(&r, 12)?,
            status_history: parse_history(created_at, &r.get::<String>(13)?)
                .ok_or_else(|| bad("history"))?,
        })
    }
}

/// The SQL that records a status change in `messages.history`, from the SQL
/// expressions of the new status and its time: one "status:at " entry appended.
pub fn history_append(status: &str, at: &str) -> String {
    format!("history = history || {status} || ':' || {at} || ' '")
}

/// A message's history: queued at its creation, then the stored entries.
fn parse_history(created_at: Timestamp, stored: &str) -> Option<Vec<StatusChange>> {
    let queued = StatusChange {
        status: MessageStatus::Queued,
        at: created_at,
    };
    std::iter::once(Some(queued))
        .chain(stored.split_whitespace().map(|entry| {
            let (status, at) = entry.split_once(':')?;
            Some(StatusChange {
                status: MessageStatus::parse(status)?,
                at: Timestamp(at.parse().ok()?),
            })
        }))
        .collect()
}

/// The columns a [`ClaimedMessage`] is read from (a claim's RETURNING).
pub const CLAIMED_COLUMNS: &str =
    "id, tenant_id, mode, to_number, sender, body, encoding, segments, created_at, attempts";

impl<D: Db> FromRow<D> for ClaimedMessage {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(ClaimedMessage {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            mode: mode(&r, 2)?,
            to: r.get(3)?,
            from: r.get(4)?,
            // A queued message always has its body; only accepted or ended ones lose it.
            body: r.get::<Option<String>>(5)?.ok_or_else(|| bad("body"))?,
            encoding: encoding(&r, 6)?,
            segments: small(&r, 7, "segments")?,
            created_at: at(&r, 8)?,
            attempts: small(&r, 9, "attempts")?,
        })
    }
}

/// The columns a [`StoredVerification`] is read from, in SELECT order.
pub const VERIFICATION_COLUMNS: &str = "id, tenant_id, mode, to_number, status, code_hash, \
     code_length, max_attempts, attempts, sends, ttl_seconds, brand, template, app_domain, \
     message_id, last_sent_at, expires_at, created_at, updated_at";

impl<D: Db> FromRow<D> for StoredVerification {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        let status: String = r.get(4)?;
        Ok(StoredVerification {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            mode: mode(&r, 2)?,
            to: r.get(3)?,
            status: VerificationStatus::parse(&status).ok_or_else(|| bad("verification status"))?,
            code_hash: r.get(5)?,
            code_length: small(&r, 6, "code_length")?,
            max_attempts: small(&r, 7, "max_attempts")?,
            attempts: small(&r, 8, "attempts")?,
            sends: small(&r, 9, "sends")?,
            ttl_seconds: small(&r, 10, "ttl_seconds")?,
            brand: r.get(11)?,
            template: r.get(12)?,
            app_domain: r.get(13)?,
            message_id: r.get(14)?,
            last_sent_at: at(&r, 15)?,
            expires_at: at(&r, 16)?,
            created_at: at(&r, 17)?,
            updated_at: at(&r, 18)?,
        })
    }
}

/// The columns a [`StoredEndpoint`] is read from, in SELECT order.
pub const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, description, events, secret, \
     previous_secret, previous_secret_until, enabled, disabled_reason, created_at, updated_at";

impl<D: Db> FromRow<D> for StoredEndpoint {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(StoredEndpoint {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            url: r.get(2)?,
            description: r.get(3)?,
            events: EventSet::from_column(r.get::<Option<String>>(4)?.as_deref()),
            secret: r.get(5)?,
            previous_secret: r.get(6)?,
            previous_secret_until: r.get::<Option<i64>>(7)?.map(Timestamp),
            enabled: r.get(8)?,
            disabled_reason: r.get(9)?,
            created_at: at(&r, 10)?,
            updated_at: at(&r, 11)?,
        })
    }
}

/// The columns a [`Number`] is read from, in SELECT order (of `rentals`).
pub const NUMBER_COLUMNS: &str =
    "id, number, mode, monthly_price_pence, status, rented_at, renews_at, released_at";

impl<D: Db> FromRow<D> for Number {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        let status: String = r.get(4)?;
        Ok(Number {
            id: r.get(0)?,
            number: r.get(1)?,
            mode: mode(&r, 2)?,
            monthly_price_pence: Pence(r.get(3)?),
            status: NumberStatus::parse(&status).ok_or_else(|| bad("number status"))?,
            rented_at: at(&r, 5)?,
            renews_at: r.get::<Option<i64>>(6)?.map(Timestamp),
            released_at: r.get::<Option<i64>>(7)?.map(Timestamp),
        })
    }
}

/// The columns a [`SandboxMessage`] is read from, in SELECT order.
pub const SANDBOX_COLUMNS: &str = "message_id, to_number, sender, body, received_at";

impl<D: Db> FromRow<D> for SandboxMessage {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(SandboxMessage {
            message_id: r.get(0)?,
            to: r.get(1)?,
            from: r.get(2)?,
            body: r.get(3)?,
            received_at: at(&r, 4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_reads_back_what_the_updates_append() {
        let h = parse_history(Timestamp(5), "sent:7 delivered:9 ").unwrap();
        let got: Vec<(&str, i64)> = h.iter().map(|c| (c.status.as_str(), c.at.0)).collect();
        assert_eq!(got, [("queued", 5), ("sent", 7), ("delivered", 9)]);
        assert_eq!(parse_history(Timestamp(5), "").unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_history_is_an_error_not_a_guess() {
        assert!(parse_history(Timestamp(5), "sent:x ").is_none());
        assert!(parse_history(Timestamp(5), "teleported:7 ").is_none());
        assert!(parse_history(Timestamp(5), "sent ").is_none());
    }
}
