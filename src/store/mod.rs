//! Storage: one trait, one implementation per backend, picked by the URL scheme.
//! Every tenant-owned read or write takes the tenant first.

mod batch;
mod common;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::Mode;
use crate::domain::encoding::Encoding;
use crate::domain::message::{Message, MessageStatus, Pence, StatusChange, Timestamp};
use crate::domain::verification::{StoredVerification, Verdict, Verification, VerificationStatus};
use crate::domain::webhook::{Delivery, DeliveryAttempt, EventType};

pub use batch::{
    Batcher, CheckWriter, FinishWriter, MessageWriter, check_writer, finish_writer, message_writer,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub type StoreError = sqlx::Error;

/// How long a receipt waits for its part before it is dropped.
pub(crate) const UNMATCHED_RECEIPT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// ISO regions this tenant may send to.
    pub allowed_regions: Vec<String>,
}

/// Who a request acts for: resolved from an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub tenant: Tenant,
    pub key_id: String,
    pub mode: Mode,
}

/// A message to insert, fully validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant_id: String,
    pub mode: Mode,
    pub to: String,
    pub from: String,
    pub body: String,
    pub body_hmac: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub price: Pence,
    pub reference: Option<String>,
    pub created_at: Timestamp,
}

/// A request's idempotency record, written in the same transaction as its effect.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

/// A message waiting to be written, with its idempotency record if it has a key.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub message: NewMessage,
    pub idem: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created,
    /// The key was used before: what was stored then.
    Existing {
        request_hash: String,
        status: u16,
        response: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub to: Option<String>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// A message claimed by a worker, with what a carrier needs to send it.
#[derive(Clone)]
pub struct ClaimedMessage {
    pub id: String,
    pub tenant_id: String,
    pub mode: Mode,
    pub to: String,
    pub from: String,
    pub body: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub created_at: Timestamp,
    pub attempts: u32,
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A claimed message's outcome, to record under the worker's lease token.
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: String,
    pub token: String,
    pub result: SubmitResult,
    pub now: Timestamp,
}

/// What became of one claimed message.
#[derive(Debug, Clone)]
pub enum SubmitResult {
    /// Accepted; one normalised carrier id per part, in order.
    Sent {
        carrier: String,
        carrier_message_ids: Vec<String>,
    },
    Retry {
        at: Timestamp,
        error: String,
    },
    Failed {
        code: String,
        message: String,
    },
    Expired,
}

/// A carrier's final word on one part, under its normalised carrier id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierReceipt {
    pub carrier: String,
    pub carrier_message_id: String,
    pub status: MessageStatus,
    /// The carrier's error, e.g. an SMPP receipt's `err:` field.
    pub error: Option<String>,
    pub received_at: Timestamp,
}

/// A message a handset sent to one of our numbers.
#[derive(Clone)]
pub struct InboundMessage {
    pub id: String,
    pub carrier: String,
    pub from: String,
    pub to: String,
    pub body: Option<String>,
    pub received_at: Timestamp,
}

/// A handset in the sandbox and what it received.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SandboxMessage {
    pub message_id: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub received_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewSandboxMessage {
    pub message_id: String,
    pub tenant_id: String,
    pub to: String,
    pub from: String,
    /// What the handset shows; kept for test keys only (`None` for live ones).
    pub body: Option<String>,
    pub received_at: Timestamp,
    pub receipt: MessageStatus,
    pub receipt_due: Timestamp,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;

    async fn count_tenants(&self) -> Result<i64>;
    async fn create_tenant(&self, id: &str, name: &str, now: Timestamp) -> Result<Tenant>;
    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool>;
    async fn create_api_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        mode: Mode,
        key_hash: &str,
        hint: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// True when a live key was revoked by this call.
    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<bool>;
    async fn authenticate(&self, key_hash: &str) -> Result<Option<AuthContext>>;

    /// Inserts a batch of messages (status queued) with their idempotency records,
    /// atomically, answering one outcome per item in order. An item whose key
    /// was used before inserts nothing and gets what was stored then. No two
    /// items of one batch share a tenant and key (the `MessageWriter` sees to it).
    async fn create_messages(&self, batch: &[PendingMessage]) -> Result<Vec<CreateOutcome>>;
    async fn get_message(&self, tenant_id: &str, id: &str) -> Result<Option<Message>>;
    async fn list_messages(&self, tenant_id: &str, filter: &MessageFilter) -> Result<Vec<Message>>;

    /// Leases up to `limit` due queued messages until `lease_until`, marked with `token`.
    async fn claim_messages(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>>;
    /// Records claimed messages' outcomes in one transaction, each only if
    /// its `token` still holds the lease; answers in order whether it did.
    async fn finish_submits(&self, items: &[Finish]) -> Result<Vec<bool>>;
    /// Gives back leases held by `token` (graceful shutdown).
    async fn release_leases(&self, token: &str) -> Result<u64>;
    /// Applies final receipts from carriers to their parts, and keeps those
    /// whose part is not recorded yet, in one transaction; true if some wait.
    async fn record_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<bool>;
    /// Only keeps receipts, for `apply_carrier_receipts` (when applying them failed).
    async fn keep_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<()>;
    /// Matches kept receipts to message parts (each receipt once); a message
    /// whose parts have all ended takes its final status. Returns how many applied.
    async fn apply_carrier_receipts(&self, now: Timestamp, limit: u32) -> Result<u64>;
    /// A mobile-originated message, kept for a later inbound feature.
    async fn record_inbound(&self, msg: &InboundMessage) -> Result<()>;

    /// Idempotent per message id: a resubmission does not deliver twice.
    async fn sandbox_deliver(&self, msg: &NewSandboxMessage) -> Result<()>;
    async fn sandbox_inbox(
        &self,
        tenant_id: &str,
        to: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<SandboxMessage>>;
    /// Applies the sandbox receipts that are due, each exactly once; returns how many.
    async fn apply_sandbox_receipts(&self, now: Timestamp, limit: u32) -> Result<u64>;

    /// Deletes idempotency records and sandbox inbox entries older than the
    /// cutoffs, and rate-limit rows that no longer hold anything back.
    async fn cleanup(
        &self,
        idempotency_before: Timestamp,
        sandbox_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64>;

    /// A setting's value, storing `value` first if it has none (first writer wins).
    async fn setting_or_init(&self, key: &str, value: &str) -> Result<String>;
    /// What a tenant's earlier request with this idempotency key stored.
    async fn find_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<(String, u16, String)>>;

    /// GCRA: admits one event for `key` if at most `period_ms / interval_ms` fit
    /// in the trailing period. `None` = admitted; `Some(ms)` = retry after.
    async fn rate_limit(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>>;
    /// Adds `pence` to a tenant's month unless that would pass `cap`; false = refused.
    async fn add_spend(&self, tenant_id: &str, month: &str, pence: i64, cap: i64) -> Result<bool>;

    /// Cancels the number's pending verification, then inserts the new one and
    /// the message carrying its code, atomically (with `idem` as in `create_messages`).
    async fn create_verification(
        &self,
        v: &StoredVerification,
        msg: &NewMessage,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome>;
    async fn get_verification(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StoredVerification>>;
    /// The number's pending verification, else its newest one.
    async fn latest_verification(
        &self,
        tenant_id: &str,
        to: &str,
    ) -> Result<Option<StoredVerification>>;
    /// Decides checks in order, each on the verification as the checks before it
    /// left it (`NotFound` for another tenant's), and keeps what changed.
    async fn check_codes(
        &self,
        checks: &[CodeCheck],
        judge: &Judge,
        cache: &VerificationCache,
    ) -> Result<Vec<Verdict>>;
    /// pending → `status` (expired, canceled).
    async fn close_verification(
        &self,
        tenant_id: &str,
        id: &str,
        status: VerificationStatus,
        now: Timestamp,
    ) -> Result<bool>;
    /// A fresh code and the message carrying it, if the verification is still
    /// pending and has been sent exactly `sends` times (no two resends race).
    async fn resend_verification(&self, resend: &Resend, msg: &NewMessage) -> Result<bool>;

    async fn create_endpoint(&self, endpoint: &StoredEndpoint) -> Result<()>;
    /// Newest first, after the `starting_after` id.
    async fn list_endpoints(
        &self,
        tenant_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEndpoint>>;
    async fn get_endpoint(&self, tenant_id: &str, id: &str) -> Result<Option<StoredEndpoint>>;
    /// Writes url, description, events, enabled and disabled_reason.
    async fn update_endpoint(&self, endpoint: &StoredEndpoint) -> Result<bool>;
    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<bool>;
    async fn rotate_endpoint_secret(&self, rotation: &Rotation) -> Result<bool>;

    /// Leases up to `limit` due deliveries until `lease_until`, marked with `token`.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records an attempt and what follows (if `token` still holds the lease),
    /// and the endpoint's health: a success clears `failing_since`, a failure
    /// sets it, and five days of failures (or a disable reason) disable it.
    async fn finish_delivery(&self, record: &AttemptRecord) -> Result<bool>;
    /// An endpoint's deliveries with their attempts, newest first.
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Makes a delivery due now (whatever its status); false if there is no such delivery.
    async fn replay_delivery(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool>;
}

/// A table `u` of `columns` (name, SQL type) read from the JSON array of objects bound as `$param`.
pub(crate) fn pg_json_rows(param: u8, columns: &[(&str, &str)]) -> String {
    let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "json_to_recordset(${param}::json) AS u({})",
        defs.join(", ")
    )
}

/// The same on SQLite (types come from the JSON values).
pub(crate) fn sqlite_json_rows(param: u8, columns: &[(&str, &str)]) -> String {
    let picks: Vec<String> = columns
        .iter()
        .map(|(n, _)| format!("value ->> '{n}' AS {n}"))
        .collect();
    format!(
        "(SELECT {} FROM json_each(${param})) AS u",
        picks.join(", ")
    )
}

/// `key IN` the `column` values of the JSON array bound as `$param`, spelled so that
/// PostgreSQL looks the keys up in their index: it cannot know how many rows a JSON
/// table has, and with stale statistics it would rather hash-join a whole table.
pub(crate) fn pg_json_keys(param: u8, column: &str) -> String {
    format!(
        "= ANY(ARRAY(SELECT {column} FROM json_to_recordset(${param}::json) AS k({column} TEXT)))"
    )
}

/// The same on SQLite.
pub(crate) fn sqlite_json_keys(param: u8, column: &str) -> String {
    format!("IN (SELECT value ->> '{column}' FROM json_each(${param}))")
}

/// A webhook endpoint as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: Option<String>,
    /// Comma-separated event types; `None` = every type.
    pub events: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Timestamp>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for StoredEndpoint {
    // Secrets never print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEndpoint")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A new signing secret; the old one keeps signing until `previous_until`.
pub struct Rotation {
    pub tenant_id: String,
    pub id: String,
    pub secret: String,
    pub previous_until: Timestamp,
    pub now: Timestamp,
}

/// A delivery claimed by a dispatcher.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub endpoint_id: String,
    pub token: String,
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub response: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub next: NextStep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Timestamp),
    /// No more attempts; with a reason, the endpoint is disabled too.
    Failed {
        disable_endpoint: Option<String>,
    },
}

/// One code check as asked (the code as typed: never logged, so no Debug).
pub struct CodeCheck {
    pub tenant_id: String,
    /// The verification's id.
    pub id: String,
    pub code: String,
    pub now: Timestamp,
}

/// Verifications as this process last read or wrote them, so that a check
/// usually costs no read. Safe when stale: a check's write applies only if the
/// row is still as the cache had it (else it is read again and decided again),
/// and what a check decides without writing (closed, malformed) rests on what
/// never changes once set (a final status, the code length).
#[derive(Default)]
pub struct VerificationCache(
    std::sync::Mutex<std::collections::HashMap<String, StoredVerification>>,
);

/// Entries the cache holds before it starts again empty.
const VERIFICATION_CACHE_MAX: usize = 100_000;

impl VerificationCache {
    pub fn get(&self, id: &str) -> Option<StoredVerification> {
        self.0
            .lock()
            .expect("verification cache lock")
            .get(id)
            .cloned()
    }

    pub fn put(&self, v: StoredVerification) {
        let mut map = self.0.lock().expect("verification cache lock");
        if map.len() >= VERIFICATION_CACHE_MAX && !map.contains_key(&v.id) {
            map.clear();
        }
        map.insert(v.id.clone(), v);
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().expect("verification cache lock").remove(id);
    }
}

/// Decides one check against its verification and changes it to match.
pub type Judge = dyn Fn(&mut StoredVerification, &CodeCheck) -> Verdict + Send + Sync;

/// What a resend changes.
pub struct Resend {
    pub tenant_id: String,
    pub id: String,
    pub sends: u32,
    pub code_hash: String,
    pub expires_at: Timestamp,
    pub now: Timestamp,
}

/// The columns `verification_from_row` reads, in SELECT order.
pub(crate) const VERIFICATION_COLUMNS: &str = "id, tenant_id, mode, to_number, status, code_hash, code_length, \
     max_attempts, attempts, sends, ttl_seconds, brand, template, app_domain, message_id, last_sent_at, \
     expires_at, created_at, updated_at";

pub(crate) fn verification_from_row<'r, R>(row: &'r R) -> Result<StoredVerification>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad = |what: &str| sqlx::Error::Decode(format!("bad stored {what}").into());
    let small = |i: usize, what: &str| -> Result<u32> {
        u32::try_from(row.try_get::<i64, _>(i)?).map_err(|_| bad(what))
    };
    let mode: String = row.try_get(2)?;
    let status: String = row.try_get(4)?;
    Ok(StoredVerification {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        mode: Mode::parse(&mode).ok_or_else(|| bad("mode"))?,
        to: row.try_get(3)?,
        status: VerificationStatus::parse(&status).ok_or_else(|| bad("verification status"))?,
        code_hash: row.try_get(5)?,
        code_length: small(6, "code_length")?,
        max_attempts: small(7, "max_attempts")?,
        attempts: small(8, "attempts")?,
        sends: small(9, "sends")?,
        ttl_seconds: small(10, "ttl_seconds")?,
        brand: row.try_get(11)?,
        template: row.try_get(12)?,
        app_domain: row.try_get(13)?,
        message_id: row.try_get(14)?,
        last_sent_at: Timestamp(row.try_get(15)?),
        expires_at: Timestamp(row.try_get(16)?),
        created_at: Timestamp(row.try_get(17)?),
        updated_at: Timestamp(row.try_get(18)?),
    })
}

/// Opens the store the URL names and runs its migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url, max_connections).await?)
    } else {
        Arc::new(PgStore::connect(url, max_connections).await?)
    };
    store.migrate().await?;
    Ok(store)
}

/// The columns `message_from_row` reads, in SELECT order.
pub(crate) const MESSAGE_COLUMNS: &str = "id, to_number, sender, mode, status, encoding, segments, \
     price_pence, reference, error_code, error_message, created_at, updated_at, history";

/// The SQL that records a status change in `messages.history`, from the SQL
/// expressions of the new status and its time: one "status:at " entry appended.
pub(crate) fn history_append(status: &str, at: &str) -> String {
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

/// Builds an API message from a row of `MESSAGE_COLUMNS` (either backend).
pub(crate) fn message_from_row<'r, R>(row: &'r R) -> Result<Message>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad = |what: &str| sqlx::Error::Decode(format!("bad stored {what}").into());
    let mode: String = row.try_get(3)?;
    let status: String = row.try_get(4)?;
    let encoding: String = row.try_get(5)?;
    Ok(Message {
        id: row.try_get(0)?,
        to: row.try_get(1)?,
        from: row.try_get(2)?,
        mode: Mode::parse(&mode).ok_or_else(|| bad("mode"))?,
        status: MessageStatus::parse(&status).ok_or_else(|| bad("status"))?,
        encoding: Encoding::parse(&encoding).ok_or_else(|| bad("encoding"))?,
        segments: u32::try_from(row.try_get::<i64, _>(6)?).map_err(|_| bad("segments"))?,
        price_pence: Pence(row.try_get(7)?),
        reference: row.try_get(8)?,
        error_code: row.try_get(9)?,
        error_message: row.try_get(10)?,
        created_at: Timestamp(row.try_get(11)?),
        updated_at: Timestamp(row.try_get(12)?),
        status_history: parse_history(Timestamp(row.try_get(11)?), &row.try_get::<String, _>(13)?)
            .ok_or_else(|| bad("history"))?,
    })
}

/// Builds a claimed message from `id, tenant_id, mode, to_number, sender, body,
/// encoding, segments, created_at, attempts` (either backend).
pub(crate) fn claimed_from_row<'r, R>(row: &'r R) -> Result<ClaimedMessage>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad = |what: &str| sqlx::Error::Decode(format!("bad stored {what}").into());
    let mode: String = row.try_get(2)?;
    let encoding: String = row.try_get(6)?;
    Ok(ClaimedMessage {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        mode: Mode::parse(&mode).ok_or_else(|| bad("mode"))?,
        to: row.try_get(3)?,
        from: row.try_get(4)?,
        // A queued message always has its body; only accepted or ended ones lose it.
        body: row
            .try_get::<Option<String>, _>(5)?
            .ok_or_else(|| bad("body"))?,
        encoding: Encoding::parse(&encoding).ok_or_else(|| bad("encoding"))?,
        segments: u32::try_from(row.try_get::<i64, _>(7)?).map_err(|_| bad("segments"))?,
        created_at: Timestamp(row.try_get(8)?),
        attempts: u32::try_from(row.try_get::<i64, _>(9)?).map_err(|_| bad("attempts"))?,
    })
}

pub(crate) fn sandbox_from_tuple(
    (message_id, to, from, body, received_at): (String, String, String, String, i64),
) -> SandboxMessage {
    SandboxMessage {
        message_id,
        to,
        from,
        body,
        received_at: Timestamp(received_at),
    }
}

/// Migrations are embedded in the binary; each backend lists its own folder's
/// files here, append-only, in order.
pub(crate) fn migrator(files: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    sqlx::migrate::Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, name, sql)| {
                sqlx::migrate::Migration::new(
                    version,
                    name.into(),
                    sqlx::migrate::MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(crate) fn regions(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
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
