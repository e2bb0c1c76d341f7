//! Storage: one trait per aggregate, written once over both backends
//! ([`SqlStore<D>`] for `D` = PostgreSQL or SQLite, picked by the URL scheme).
//! Every tenant-owned read or write takes the tenant first.
//!
//! Each aggregate file holds its trait's one implementation; `sql.rs` is what
//! a backend must supply; `postgres.rs` and `sqlite.rs` supply it.

mod accounts;
mod idempotency;
mod inbound;
mod leases;
mod ledger;
mod limits;
mod maintenance;
mod messages;
mod numbers;
mod outbox;
mod postgres;
mod receipts;
mod records;
mod rows;
mod sandbox;
mod sql;
mod sqlite;
mod tenants;
mod verifications;
mod webhooks;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use writer::{Flush, Turn};

use async_trait::async_trait;

use crate::domain::Mode;
use crate::domain::ids::{
    DeliveryId, EndpointId, InviteId, KeyId, MessageId, NumberId, TenantId, UserId, VerificationId,
};
use crate::domain::message::{InboundSms, Message, Pence, Timestamp};
use crate::domain::number::{AvailableNumber, Number};
use crate::domain::verification::{StoredVerification, VerificationStatus};
use crate::domain::webhook::Delivery;
use crate::infra::histogram::Histogram;

pub use accounts::{Invite, NewInvite, NewSession, NewUser, SessionContext, SignUp, User};
pub use records::*;
pub use sql::Db;

/// What went wrong in the store: a domain condition the caller can act on, or a failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (`on_constraint`: a clean client error, not a 500).
    #[error("already exists: {0}")]
    Conflict(String),
    /// A row the operation needs is not there.
    #[error("no such row")]
    NotFound,
    /// Rows kept changing under an optimistic write; trying again later may succeed.
    #[error("contention: {0}")]
    Contention(&'static str),
    /// A stored value that does not read back as its type.
    #[error("bad stored {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(sqlx::Error),
    /// A group commit's failure, shared by its writers.
    #[error(transparent)]
    Shared(SharedError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                StoreError::Conflict(d.constraint().unwrap_or("unique key").to_string())
            }
            e => StoreError::Database(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One store error handed to every caller of a failed group commit.
pub type SharedError = Arc<StoreError>;

/// A group write as a store trait method makes it (async_trait's boxed future).
pub type GroupWrite<I> = for<'a> fn(
    &'a dyn Store,
    &'a [I],
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<bool>>> + Send + 'a>,
>;

/// Writes a group at once; if that fails for another reason than the
/// database being out of reach, item by item, so that one bad item holds back
/// no other (one that fails alone is `false`). Out of reach, the whole group
/// fails, for its callers to try again. `name` says which item failed, for the log.
pub async fn write_grouped<I>(
    store: &dyn Store,
    batch: Vec<I>,
    write: GroupWrite<I>,
    name: fn(&I) -> String,
) -> std::result::Result<Vec<bool>, SharedError> {
    match write(store, &batch).await {
        Ok(done) => Ok(done),
        Err(e) if batch.len() > 1 && !e.is_unavailable() => {
            tracing::warn!(error = %e, "a group write failed; writing its items one by one");
            let mut done = Vec::with_capacity(batch.len());
            for item in &batch {
                done.push(match write(store, std::slice::from_ref(item)).await {
                    Ok(d) => d[0],
                    // Gone meanwhile: the whole group is tried again; the
                    // items written already answer that their lease is gone.
                    Err(e) if e.is_unavailable() => return Err(Arc::new(e)),
                    Err(e) => {
                        tracing::error!(item = %name(item), error = %e, "writing an item failed");
                        false
                    }
                });
            }
            Ok(done)
        }
        Err(e) => Err(Arc::new(e)),
    }
}

/// Whether a store error in `e`'s chain (alone, or shared by a group commit)
/// says the database is out of reach for now ([`StoreError::is_unavailable`]).
pub fn unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .or_else(|| cause.downcast_ref::<SharedError>().map(|s| &**s))
            .is_some_and(StoreError::is_unavailable)
    })
}

impl StoreError {
    /// The database is out of reach or too slow to answer (down, restarting,
    /// no free connection in time, a statement or lock timeout): worth trying
    /// again shortly, unlike a bug or a refused write.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            StoreError::Database(e) => e,
            StoreError::Shared(e) => return e.is_unavailable(),
            _ => return false,
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                // PostgreSQL: connection exceptions (08…), too many
                // connections, shutdown and recovery (57P01–57P03),
                // statement and lock timeouts; SQLite: busy or locked past
                // its busy timeout (extended codes keep the primary one in
                // their low byte).
                let sqlite = c.parse::<u32>().ok().map(|n| n & 0xff);
                c.starts_with("08")
                    || ["53300", "57P01", "57P02", "57P03", "57014", "55P03"].contains(&&*c)
                    || matches!(sqlite, Some(5 | 6))
            }),
            _ => false,
        }
    }
}

/// Everything the service stores.
pub trait Store:
    TenantStore
    + AccountStore
    + MessageStore
    + ReceiptStore
    + InboundStore
    + SandboxStore
    + VerificationStore
    + WebhookStore
    + LimitStore
    + LedgerStore
    + NumberStore
    + IdempotencyStore
    + LeaseStore
    + Maintenance
{
}

impl<D: Db> Store for SqlStore<D> where D::Connection: sqlx::migrate::Migrate {}

/// The store over one backend's connection pool.
pub struct SqlStore<D: Db> {
    pool: sqlx::Pool<D>,
    /// Where queue claims run, each one statement on its own. On PostgreSQL a
    /// few connections that never sort: a claim must walk its due index in
    /// order and stop after its batch. Planned from statistics of a shorter
    /// queue (2 rows, say), a bitmap scan of every due row and a sort look as
    /// cheap, and cost the whole queue per claim: 92 of the 231 message claims
    /// slower than 3 ms in three 10 s runs, 215 µs a message in a run where the
    /// queue had grown, and 64 of 67 slow webhook claims. Without sorts the
    /// ordered index scan is the plan left. (Before, each claim was a
    /// transaction of four statements to set that for itself.) On SQLite the
    /// one pool.
    claims: sqlx::Pool<D>,
    /// SQLite: the one writer every write goes through (see `writer`).
    /// PostgreSQL: none (its writers lock rows, not the database).
    writer: Option<Arc<writer::GroupWriter<D>>>,
    waits: Arc<WriteWaits>,
}

impl<D: Db> sql::Sql<D> {
    /// Runs this one write statement on its own, committed; the rows it changed.
    async fn written(self, store: &SqlStore<D>) -> Result<u64> {
        let mut w = store.write().await?;
        let n = self.execute(&mut w).await?;
        w.commit().await?;
        Ok(n)
    }
}

/// How long writes wait, for the operator's metrics: `start`, from asking to
/// write until the first statement can run (PostgreSQL: a pooled connection,
/// and BEGIN for a transaction; SQLite: the writer's turn and the job's
/// savepoint); `held`, from then until commit (SQLite: how long the one
/// writer was this write's); `commit`, from commit until on disk
/// (transactions and SQLite jobs; a PostgreSQL statement on its own commits
/// as it runs).
#[derive(Default)]
pub struct WriteWaits {
    pub start: Histogram,
    pub held: Histogram,
    pub commit: Histogram,
}

/// A write: committed by `commit`, undone if dropped before.
struct WriteTx<D: Db> {
    kind: TxKind<D>,
    waits: Arc<WriteWaits>,
    /// When its first statement could run.
    started: Instant,
}

enum TxKind<D: Db> {
    /// PostgreSQL: a transaction.
    Tx(sqlx::Transaction<'static, D>),
    /// PostgreSQL: a connection, each statement committed on its own.
    Auto(sqlx::pool::PoolConnection<D>),
    /// SQLite: a job in the writer's group.
    Job(writer::Job<D>),
}

impl<D: Db> std::ops::Deref for WriteTx<D> {
    type Target = D::Connection;
    fn deref(&self) -> &D::Connection {
        match &self.kind {
            TxKind::Tx(tx) => tx,
            TxKind::Auto(conn) => conn,
            TxKind::Job(job) => job,
        }
    }
}

impl<D: Db> std::ops::DerefMut for WriteTx<D> {
    fn deref_mut(&mut self) -> &mut D::Connection {
        match &mut self.kind {
            TxKind::Tx(tx) => tx,
            TxKind::Auto(conn) => conn,
            TxKind::Job(job) => job,
        }
    }
}

impl<D: Db> WriteTx<D> {
    /// Returns once the writes are committed.
    pub(super) async fn commit(self) -> Result<()> {
        let asked = Instant::now();
        self.waits.held.observe(asked - self.started);
        match self.kind {
            TxKind::Tx(tx) => tx.commit().await?,
            TxKind::Auto(_) => return Ok(()),
            TxKind::Job(job) => job.commit().await?,
        }
        self.waits.commit.observe(asked.elapsed());
        Ok(())
    }
}

impl<D: Db> SqlStore<D> {
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<D>> {
        Ok(self.pool.acquire().await?)
    }

    /// A connection for a queue claim (see `claims`), to read on.
    async fn claim_conn(&self) -> Result<sqlx::pool::PoolConnection<D>> {
        Ok(self.claims.acquire().await?)
    }

    /// Whether a queue claim can stop before it writes: on SQLite
    /// (`Db::LOOK_FIRST`), when `probe` (a `SELECT 1 … LIMIT 1` of what the
    /// claim would take) finds nothing; on PostgreSQL never, and no query.
    async fn nothing_due(&self, probe: impl FnOnce() -> sql::Sql<D>) -> Result<bool> {
        if !D::LOOK_FIRST {
            return Ok(false);
        }
        Ok(!probe().finds(&mut *self.claim_conn().await?).await?)
    }

    /// Statements that write, each committed on its own (PostgreSQL), or
    /// a job in the writer's group (SQLite): either way done at `commit`.
    /// For a request, which waits on it (see `writer::Turn`).
    async fn write(&self) -> Result<WriteTx<D>> {
        self.write_on(&self.pool, Flush::Now, Turn::Request).await
    }

    /// `write`, for the pipeline: on SQLite requests' writes go first.
    async fn pipeline_write(&self) -> Result<WriteTx<D>> {
        self.write_on(&self.pool, Flush::Now, Turn::Pipeline).await
    }

    /// A queue claim's write (see `claims`), as `pipeline_write`, but its
    /// commit does not wait for the disk: a claim lost in a crash leaves its
    /// rows unclaimed, as they were (see `connect` in postgres.rs).
    async fn claim_write(&self) -> Result<WriteTx<D>> {
        self.write_on(&self.claims, Flush::Later, Turn::Pipeline)
            .await
    }

    async fn write_on(&self, pool: &sqlx::Pool<D>, flush: Flush, turn: Turn) -> Result<WriteTx<D>> {
        let asked = Instant::now();
        let kind = match &self.writer {
            Some(writer) => TxKind::Job(writer.job(flush, turn).await?),
            None => TxKind::Auto(pool.acquire().await?),
        };
        Ok(self.started(kind, asked))
    }

    /// A write transaction (a job in the writer's group on SQLite), for a request.
    async fn begin(&self) -> Result<WriteTx<D>> {
        self.begin_for(Turn::Request).await
    }

    /// `begin`, for the pipeline: on SQLite requests' writes go first.
    async fn pipeline_begin(&self) -> Result<WriteTx<D>> {
        self.begin_for(Turn::Pipeline).await
    }

    async fn begin_for(&self, turn: Turn) -> Result<WriteTx<D>> {
        let asked = Instant::now();
        let kind = match &self.writer {
            Some(writer) => TxKind::Job(writer.job(Flush::Now, turn).await?),
            None => TxKind::Tx(self.pool.begin_with(D::BEGIN).await?),
        };
        Ok(self.started(kind, asked))
    }

    fn started(&self, kind: TxKind<D>, asked: Instant) -> WriteTx<D> {
        let started = Instant::now();
        self.waits.start.observe(started - asked);
        WriteTx {
            kind,
            waits: self.waits.clone(),
            started,
        }
    }
}

/// Opens the store the URL names and runs its migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(sqlite::connect(url, max_connections).await?)
    } else {
        Arc::new(postgres::connect(url, max_connections).await?)
    };
    store.migrate().await?;
    Ok(store)
}

/// Tenants, their API keys, and service-wide settings (`tenants.rs`).
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn count_tenants(&self) -> Result<i64>;
    async fn create_tenant(&self, id: &TenantId, name: &str, now: Timestamp) -> Result<Tenant>;
    async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool>;
    async fn create_api_key(&self, key: &NewApiKey) -> Result<()>;
    /// A tenant's keys, newest first, revoked ones too.
    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKeyInfo>>;
    /// True when a live key was revoked by this call. `None` = any tenant's
    /// (the operator's command line).
    async fn revoke_api_key(
        &self,
        tenant_id: Option<&TenantId>,
        key_id: &KeyId,
        now: Timestamp,
    ) -> Result<bool>;
    /// The key's tenant and mode; notes when it was last used (to the minute).
    async fn authenticate(&self, key_hash: &str, now: Timestamp) -> Result<Option<AuthContext>>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    /// Writes name, allowed regions, default sender and spend cap.
    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool>;
    /// A setting's value, storing `value` first if it has none (first writer wins).
    async fn setting_or_init(&self, key: &str, value: &str) -> Result<String>;
}

/// Dashboard users, sessions and invitations (`accounts.rs`).
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// A tenant, its owner and a first key in one transaction; `Conflict` if
    /// the e-mail address is taken.
    async fn sign_up(&self, sign_up: &SignUp) -> Result<()>;
    /// A user by e-mail address, with their password hash.
    async fn credentials(&self, email: &str) -> Result<Option<NewUser>>;
    async fn user_credentials(&self, tenant_id: &TenantId, id: &UserId) -> Result<Option<NewUser>>;
    async fn list_users(&self, tenant_id: &TenantId) -> Result<Vec<User>>;
    /// Sets the hash and ends the user's sessions except `keep_session`.
    async fn set_password(
        &self,
        tenant_id: &TenantId,
        id: &UserId,
        password_hash: &str,
        keep_session: &str,
    ) -> Result<bool>;
    /// Removes a user from the team, ends their sessions and drops the
    /// invitations they made that are still open.
    async fn remove_user(&self, tenant_id: &TenantId, id: &UserId, now: Timestamp) -> Result<bool>;
    /// Withdraws an open invitation.
    async fn revoke_invite(&self, tenant_id: &TenantId, id: &InviteId) -> Result<bool>;
    async fn create_session(&self, session: &NewSession) -> Result<()>;
    /// A live session by its token's hash, with its user and tenant.
    async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionContext>>;
    async fn end_session(&self, token_hash: &str) -> Result<()>;
    async fn create_invite(&self, invite: &NewInvite) -> Result<()>;
    /// Invitations not yet accepted nor expired, newest first.
    async fn list_invites(&self, tenant_id: &TenantId, now: Timestamp) -> Result<Vec<Invite>>;
    /// An open invitation by its token's hash.
    async fn invite(&self, token_hash: &str, now: Timestamp) -> Result<Option<Invite>>;
    /// Adds `user` if the invitation is still open (at `user.created_at`),
    /// once; `Conflict` if the e-mail address is taken.
    async fn accept_invite(&self, token_hash: &str, user: &NewUser) -> Result<bool>;
}

/// Messages and their parts, from queued to sent (`messages.rs`).
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Inserts a batch of messages (status queued) with their idempotency records,
    /// atomically, answering one outcome per item in order. An item whose key
    /// was used before inserts nothing and gets what was stored then. No two
    /// items of one batch share a tenant and key (the message writer sees to it).
    async fn create_messages(&self, batch: &[PendingMessage]) -> Result<Vec<CreateOutcome>>;
    async fn get_message(&self, tenant_id: &TenantId, id: &MessageId) -> Result<Option<Message>>;
    async fn list_messages(
        &self,
        tenant_id: &TenantId,
        filter: &MessageFilter,
    ) -> Result<Vec<Message>>;
    /// Leases up to `limit` due queued messages until `lease_until`, marked with `token`.
    async fn claim_messages(&self, claim: &Claim) -> Result<Vec<ClaimedMessage>>;
    /// Records claimed messages' outcomes in one transaction, each only if
    /// its `token` still holds the lease; answers in order whether it did.
    async fn finish_submits(&self, items: &[Finish]) -> Result<Vec<bool>>;
    /// Gives back leases held by `token` (graceful shutdown).
    async fn release_leases(&self, token: &str) -> Result<u64>;
}

/// Carriers' final receipts (`receipts.rs`).
#[async_trait]
pub trait ReceiptStore: Send + Sync + 'static {
    /// Applies final receipts to their parts, and keeps those whose part is
    /// not recorded yet, in one transaction; true if some wait.
    async fn record_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<bool>;
    /// Only keeps receipts, for `apply_carrier_receipts` (when applying them failed).
    async fn keep_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<()>;
    /// Matches kept receipts to message parts (each receipt once); a message
    /// whose parts have all ended takes its final status. Returns how many applied.
    async fn apply_carrier_receipts(&self, now: Timestamp, limit: u32) -> Result<u64>;
    /// Ends up to `limit` parts of messages accepted before `accepted_before`
    /// that still wait for their final receipt, as `expired` with error
    /// `no_receipt`; their messages end (with webhooks) as receipts would end them.
    async fn expire_unconfirmed(
        &self,
        accepted_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<u64>;
}

/// Messages handsets sent to tenants' numbers (`inbound.rs`).
#[async_trait]
pub trait InboundStore: Send + Sync + 'static {
    /// Keeps a mobile-originated message for the tenant renting its `to`
    /// number (in its mode), with its message.received webhook, and answers it
    /// as that tenant sees it; kept for the operator alone (`None`) if nobody does.
    async fn record_inbound(&self, msg: &InboundMessage) -> Result<Option<InboundSms>>;
    /// A tenant's inbound messages in one mode, newest first.
    async fn list_inbound(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        page: &Page,
    ) -> Result<Vec<InboundSms>>;
}

/// The sandbox carrier's handsets (`sandbox.rs`).
#[async_trait]
pub trait SandboxStore: Send + Sync + 'static {
    /// Idempotent per message id: a resubmission does not deliver twice.
    async fn sandbox_deliver(&self, msg: &NewSandboxMessage) -> Result<()>;
    async fn sandbox_inbox(
        &self,
        tenant_id: &TenantId,
        to: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<SandboxMessage>>;
    /// Applies the sandbox receipts that are due, each exactly once; returns how many.
    async fn apply_sandbox_receipts(&self, now: Timestamp, limit: u32) -> Result<u64>;
}

/// OTP verifications (`verifications.rs`).
#[async_trait]
pub trait VerificationStore: Send + Sync + 'static {
    /// Starts verifications in one transaction: each whose limits admit it
    /// at `now` (`decide_limits`) and whose message fits the spend cap cancels its
    /// number's pending verification and is inserted with the message carrying
    /// its code (with `idem` as in `create_messages`). No two items of one
    /// batch share a tenant and key, or a tenant and number (the start writer
    /// sees to it). A start the spend cap refuses still counts against its
    /// limits (as before starts were grouped); one a limit refuses counts
    /// against none.
    async fn create_verifications(
        &self,
        now: Timestamp,
        batch: &[PendingStart],
    ) -> Result<Vec<Started>>;
    async fn get_verification(
        &self,
        tenant_id: &TenantId,
        id: &VerificationId,
    ) -> Result<Option<StoredVerification>>;
    /// Verifications by id, whatever their tenant (the caller checks it).
    async fn get_verifications(&self, ids: &[&VerificationId]) -> Result<Vec<StoredVerification>>;
    /// A tenant's verifications, newest first, after the `starting_after` id.
    async fn list_verifications(
        &self,
        tenant_id: &TenantId,
        page: &Page,
    ) -> Result<Vec<StoredVerification>>;
    /// The number's pending verification, else its newest one.
    async fn latest_verification(
        &self,
        tenant_id: &TenantId,
        to: &str,
    ) -> Result<Option<StoredVerification>>;
    /// Writes checked verifications (`was` → `now`), each only if it is still
    /// as `was`, with verification.approved for each approval written; the ids written.
    async fn write_checks(&self, changed: &[CheckedPair<'_>]) -> Result<HashSet<VerificationId>>;
    /// pending → `status` (expired, canceled).
    async fn close_verification(
        &self,
        tenant_id: &TenantId,
        id: &VerificationId,
        status: VerificationStatus,
        now: Timestamp,
    ) -> Result<bool>;
    /// A fresh code and the message carrying it, if the verification is still
    /// pending and has been sent exactly `sends` times (no two resends race).
    async fn resend_verification(&self, resend: &Resend, msg: &NewMessage) -> Result<Resent>;
}

/// Webhook endpoints and their deliveries (`webhooks.rs`; the outbox in `outbox.rs`).
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Inserts an endpoint with its idempotency record (as `create_messages` does).
    async fn create_endpoint(
        &self,
        endpoint: &StoredEndpoint,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome>;
    /// Newest first, after the `starting_after` id.
    async fn list_endpoints(
        &self,
        tenant_id: &TenantId,
        page: &Page,
    ) -> Result<Vec<StoredEndpoint>>;
    async fn get_endpoint(
        &self,
        tenant_id: &TenantId,
        id: &EndpointId,
    ) -> Result<Option<StoredEndpoint>>;
    /// Writes url, description, events, enabled and disabled_reason.
    async fn update_endpoint(&self, endpoint: &StoredEndpoint) -> Result<bool>;
    async fn delete_endpoint(&self, tenant_id: &TenantId, id: &EndpointId) -> Result<bool>;
    async fn rotate_endpoint_secret(&self, rotation: &Rotation) -> Result<bool>;
    /// Leases up to `limit` due deliveries until `lease_until`, marked with `token`,
    /// each with its endpoint. None of the `busy` endpoints' (at their in-flight
    /// limit in this process).
    async fn claim_deliveries(
        &self,
        claim: &Claim,
        busy: &[EndpointId],
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records attempts and what follows each (if its `token` still holds the
    /// lease), and the endpoints' health (see `domain::webhook::EndpointHealth`),
    /// in one transaction; per record, whether it was recorded.
    async fn finish_deliveries(&self, records: &[AttemptRecord]) -> Result<Vec<bool>>;
    /// An endpoint's deliveries with their attempts, newest first.
    async fn list_deliveries(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        page: &Page,
    ) -> Result<Vec<Delivery>>;
    /// Makes a delivery due now (whatever its status); false if there is no such delivery.
    async fn replay_delivery(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<bool>;
}

/// Counters that hold across every process sharing the database (`limits.rs`).
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// GCRA: admits one event for `key` if at most `period_ms / interval_ms` fit
    /// in the trailing period. `None` = admitted; `Some(ms)` = retry after.
    async fn rate_limit(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>>;
    /// Forgets `key`'s events (what they stood for did not happen after all).
    async fn forget_limit(&self, key: &str) -> Result<()>;
}

/// The billing ledger (`ledger.rs`; charges are written with what they pay for).
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// A tenant's month from the ledger, summed by UTC day and kind of entry.
    async fn usage(&self, tenant_id: &TenantId, month: &str) -> Result<Vec<UsageRow>>;
}

/// Numbers: the inventory and tenants' rentals (`numbers.rs`).
#[async_trait]
pub trait NumberStore: Send + Sync + 'static {
    /// Adds numbers to the inventory (or sets their price), all or none; how many.
    async fn import_numbers(&self, numbers: &[(String, Pence)], now: Timestamp) -> Result<u64>;
    /// Inventory numbers free now whose E.164 contains `contains`, in order.
    async fn available_numbers(
        &self,
        contains: &str,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<AvailableNumber>>;
    /// Rents a number and charges its first month (under the cap), atomically,
    /// with its idempotency record: `Unavailable` if another rental holds it
    /// (or it rests after a release, or is not in the inventory).
    async fn rent_number(
        &self,
        rental: &NewRental,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome>;
    /// A tenant's rentals in one mode, newest first.
    async fn list_numbers(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        page: &Page,
    ) -> Result<Vec<Number>>;
    async fn get_number(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        id: &NumberId,
    ) -> Result<Option<Number>>;
    /// Ends a rental; its number rests until `rests_until`. False if it was not rented.
    async fn release_number(
        &self,
        tenant_id: &TenantId,
        id: &NumberId,
        now: Timestamp,
        rests_until: Timestamp,
    ) -> Result<bool>;
    /// Charges the monthly fee of up to `limit` rentals due, each once per due
    /// date whatever other nodes do, and moves their date a month on; how many.
    async fn renew_due(&self, now: Timestamp, limit: u32) -> Result<u64>;
    /// Whether the tenant rents this number now (it may send from it).
    async fn owns_number(&self, tenant_id: &TenantId, mode: Mode, number: &str) -> Result<bool>;
}

/// Idempotency records (`idempotency.rs`; written with their effects elsewhere).
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// What a tenant's earlier request with this idempotency key stored.
    async fn find_idempotency(
        &self,
        tenant_id: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>>;
}

/// Heartbeats of the workers and dispatchers that hold leases (`leases.rs`).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// The holder of `token` is alive at `now`.
    async fn heartbeat(&self, token: &str, now: Timestamp) -> Result<()>;
    /// Frees the claims (messages and webhook deliveries) of every holder
    /// silent since before `silent_since`, and forgets those holders; how many claims.
    async fn free_silent(&self, silent_since: Timestamp) -> Result<u64>;
    /// A holder that stopped cleanly (its leases already given back).
    async fn forget_leaseholder(&self, token: &str) -> Result<()>;
}

/// The schema and what ages out (`maintenance.rs`).
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// Deletes idempotency records and sandbox inbox entries older than the
    /// cutoffs, and rate-limit rows that no longer hold anything back.
    async fn cleanup(
        &self,
        idempotency_before: Timestamp,
        sandbox_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64>;
    /// Deletes up to `limit` rows of messages, verifications, inbound messages
    /// and webhook deliveries made before `before` (the ledger is kept), in
    /// short statements; how many. Messages still in the pipeline are kept.
    async fn delete_older(&self, before: Timestamp, limit: u32) -> Result<u64>;
    /// How long writes have waited since the store was opened.
    fn write_waits(&self) -> &WriteWaits;
    /// The most items one group commit (`infra::batch`) writes on this backend.
    fn group_limit(&self) -> usize;
}
