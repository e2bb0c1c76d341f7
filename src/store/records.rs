//! The records the store reads and writes, beside the domain's own types.

use std::sync::Arc;

use crate::domain::Mode;
use crate::domain::encoding::Encoding;
use crate::domain::ids::{DeliveryId, EndpointId, KeyId, MessageId, TenantId, VerificationId};
use crate::domain::message::{MessageStatus, Pence, Timestamp};
use crate::domain::number::Number;
use crate::domain::sender::Sender;
use crate::domain::verification::StoredVerification;
use crate::domain::webhook::EventSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// ISO regions this tenant may send to.
    pub allowed_regions: Vec<String>,
    /// The `from` of its messages when a request names none (else the operator's).
    pub default_sender: Option<Sender>,
    /// Its own monthly spend cap (else the operator's default).
    pub spend_cap: Option<Pence>,
}

/// Who a request acts for: resolved from an API key, or a dashboard session
/// acting in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub tenant: Tenant,
    pub mode: Mode,
}

/// An API key to store: only its hash and a hint of it.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub mode: Mode,
    pub key_hash: String,
    /// The key's first characters, to tell keys apart.
    pub hint: String,
    /// What its owner calls it ("backend", "CI"); may be empty.
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key as listed: never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKeyInfo {
    pub id: KeyId,
    pub mode: Mode,
    pub name: String,
    pub hint: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A queue claim: up to `limit` due items at `now`, leased to `token` until `lease_until`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub now: Timestamp,
    pub lease_until: Timestamp,
    pub token: String,
    pub limit: u32,
}

/// One page of a list, newest first: `limit` items older than `starting_after`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// A message to insert, fully validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub mode: Mode,
    pub to: String,
    pub from: String,
    pub body: String,
    pub body_hmac: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub price: Pence,
    /// The monthly spend cap its charge must fit under (`None`: uncapped).
    pub cap: Option<Pence>,
    pub reference: Option<String>,
    pub created_at: Timestamp,
    /// Claimed as it is queued, by the worker of the node that accepted it,
    /// which holds it in memory (`worker::Handoff`); `None`: queued for any
    /// worker's claim.
    pub lease: Option<Lease>,
}

/// The lease a message is inserted with: as a claim's, its first attempt's.
#[derive(Debug, Clone)]
pub struct Lease {
    pub token: String,
    pub until: Timestamp,
}

/// The first answer to a request with an `Idempotency-Key`, kept to answer its repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// A digest of the request's path and canonical body.
    pub request_hash: String,
    pub status: u16,
    /// The JSON body answered.
    pub body: String,
}

/// A request's idempotency record, written in the same transaction as its effect.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub response: StoredResponse,
}

/// A message waiting to be written, with its idempotency record if it has a key.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub message: NewMessage,
    pub idem: Option<IdempotencyRecord>,
}

/// A verification waiting to be started: it, the message carrying its code,
/// its idempotency record, and the limits it must fit (all or none counts it).
#[derive(Debug, Clone)]
pub struct PendingStart {
    pub verification: StoredVerification,
    pub message: NewMessage,
    pub idem: Option<IdempotencyRecord>,
    pub limits: Vec<Limit>,
}

/// One event against a GCRA counter: at most `period_ms / interval_ms` events
/// in any trailing `period_ms` under `key`.
#[derive(Debug, Clone)]
pub struct Limit {
    pub key: String,
    pub interval_ms: i64,
    pub period_ms: i64,
}

/// What became of a start.
#[derive(Debug, Clone)]
pub enum Started {
    /// Written, replayed or over the cap, as for messages.
    Outcome(CreateOutcome),
    /// `limits[limit]` is full: retry after `wait_ms`; nothing was written or counted.
    Limited { limit: usize, wait_ms: i64 },
}

#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created,
    /// The key was used before: what was stored then.
    Existing(StoredResponse),
    /// Its charge would pass the tenant's monthly spend cap: nothing was written.
    OverCap,
    /// The number asked for is rented, resting or not in the inventory: nothing was written.
    NumberTaken,
}

/// A rental to record: the number as it will be shown, and the cap its first fee must fit.
#[derive(Debug, Clone)]
pub struct NewRental {
    pub tenant_id: TenantId,
    pub number: Number,
    pub cap: Option<Pence>,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub to: Option<String>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// A message claimed by a worker, with what a carrier needs to send it.
#[derive(Clone)]
pub struct ClaimedMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub mode: Mode,
    pub to: String,
    pub from: String,
    pub body: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub created_at: Timestamp,
    pub attempts: u32,
}

/// A message inserted with a lease, as its claim would have returned it.
impl From<&NewMessage> for ClaimedMessage {
    fn from(m: &NewMessage) -> Self {
        ClaimedMessage {
            id: m.id.clone(),
            tenant_id: m.tenant_id.clone(),
            mode: m.mode,
            to: m.to.clone(),
            from: m.from.clone(),
            body: m.body.clone(),
            encoding: m.encoding,
            segments: m.segments,
            created_at: m.created_at,
            attempts: 1,
        }
    }
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
    pub id: MessageId,
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
    /// Live from carriers; test from the sandbox, for `tenant` only.
    pub mode: Mode,
    pub tenant: Option<TenantId>,
}

/// A handset in the sandbox and what it received.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SandboxMessage {
    pub message_id: MessageId,
    pub to: String,
    pub from: String,
    pub body: String,
    pub received_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewSandboxMessage {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub to: String,
    pub from: String,
    /// What the handset shows; kept for test keys only (`None` for live ones).
    pub body: Option<String>,
    pub received_at: Timestamp,
    pub receipt: MessageStatus,
    pub receipt_due: Timestamp,
}

/// A webhook endpoint as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub id: EndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    pub description: Option<String>,
    pub events: EventSet,
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

/// One day's entries of one kind in a tenant's month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// `sms`, `refund` or `number_fee`.
    pub kind: String,
    pub entries: i64,
    /// Segments charged (negative for refunds).
    pub segments: i64,
    /// Pence charged (negative for refunds).
    pub pence: Pence,
}

/// A new signing secret; the old one keeps signing until `previous_until`.
pub struct Rotation {
    pub tenant_id: TenantId,
    pub id: EndpointId,
    pub secret: String,
    pub previous_until: Timestamp,
    pub now: Timestamp,
}

/// A delivery claimed by a dispatcher.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    /// Its endpoint as the claim found it (read once for the claim's deliveries).
    pub endpoint: Arc<StoredEndpoint>,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
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

/// A verification as a code check found it (`was`) and left it (`now`).
#[derive(Debug, Clone, Copy)]
pub struct CheckedPair<'a> {
    pub was: &'a StoredVerification,
    pub now: &'a StoredVerification,
}

/// What became of a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resent {
    Sent,
    /// The verification changed meanwhile (another resend, a check): nothing was written.
    Stale,
    /// Its charge would pass the spend cap: nothing was written.
    OverCap,
}

/// What a resend changes.
pub struct Resend {
    pub tenant_id: TenantId,
    pub id: VerificationId,
    pub sends: u32,
    pub code_hash: String,
    pub expires_at: Timestamp,
    pub now: Timestamp,
}
