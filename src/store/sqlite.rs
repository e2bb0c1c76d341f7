//! SQLite: the zero-configuration single-node backend (WAL, one writer at a time).
//! SQLite has no SKIP LOCKED; a claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n)`,
//! which its single writer makes atomic.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::*;

super::common::shared_queries!(
    sqlx::Sqlite,
    super::sqlite_json_rows,
    super::sqlite_json_keys,
    "",
    ""
);

/// Every file of migrations/sqlite, in order (a test checks none is missing).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "otp",
        include_str!("../../migrations/sqlite/0002_otp.sql"),
    ),
    (
        3,
        "webhooks",
        include_str!("../../migrations/sqlite/0003_webhooks.sql"),
    ),
    (
        4,
        "carriers",
        include_str!("../../migrations/sqlite/0004_carriers.sql"),
    ),
    (
        5,
        "drop_messages_carrier_id",
        include_str!("../../migrations/sqlite/0005_drop_messages_carrier_id.sql"),
    ),
    (
        6,
        "history_in_messages",
        include_str!("../../migrations/sqlite/0006_history_in_messages.sql"),
    ),
];

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, as "never lose an accepted message" needs.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // A file does not hang up: no ping (a round trip to its thread) per query.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        migrator(MIGRATIONS).run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_tenants(&self) -> Result<i64> {
        count_tenants(&self.pool).await
    }

    async fn create_tenant(&self, id: &str, name: &str, now: Timestamp) -> Result<Tenant> {
        create_tenant(&self.pool, id, name, now).await
    }

    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool> {
        tenant_exists(&self.pool, tenant_id).await
    }

    async fn create_api_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        mode: Mode,
        key_hash: &str,
        hint: &str,
        now: Timestamp,
    ) -> Result<()> {
        create_api_key(&self.pool, tenant_id, key_id, mode, key_hash, hint, now).await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<bool> {
        revoke_api_key(&self.pool, key_id, now).await
    }

    async fn authenticate(&self, key_hash: &str) -> Result<Option<AuthContext>> {
        authenticate(&self.pool, key_hash).await
    }

    async fn create_messages(&self, batch: &[PendingMessage]) -> Result<Vec<CreateOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            outcomes.push(create_one(&mut tx, &p.message, p.idem.as_ref()).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get_message(&self, tenant_id: &str, id: &str) -> Result<Option<Message>> {
        get_message(&self.pool, tenant_id, id).await
    }

    async fn list_messages(&self, tenant_id: &str, f: &MessageFilter) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ?1 \
             AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR to_number = ?3) \
             AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(f.status.map(MessageStatus::as_str))
            .bind(&f.to)
            .bind(&f.starting_after)
            .bind(i64::from(f.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn claim_messages(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>> {
        let rows = sqlx::query(
            "UPDATE messages SET lease_until = ?2, lease_token = ?3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= ?1 \
               AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY next_attempt_at LIMIT ?4) \
             RETURNING id, tenant_id, mode, to_number, sender, body, encoding, segments, created_at, attempts",
        )
        .bind(now.millis())
        .bind(lease_until.millis())
        .bind(token)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(claimed_from_row).collect()
    }

    async fn finish_submits(&self, items: &[Finish]) -> Result<Vec<bool>> {
        finish_submits(&self.pool, items).await
    }

    async fn release_leases(&self, token: &str) -> Result<u64> {
        release_leases(&self.pool, token).await
    }

    async fn record_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<bool> {
        record_carrier_receipts(&self.pool, receipts).await
    }

    async fn keep_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<()> {
        keep_carrier_receipts(&self.pool, receipts).await
    }

    async fn apply_carrier_receipts(&self, now: Timestamp, limit: u32) -> Result<u64> {
        apply_carrier_receipts(&self.pool, now, limit).await
    }

    async fn record_inbound(&self, m: &InboundMessage) -> Result<()> {
        record_inbound(&self.pool, m).await
    }

    async fn sandbox_deliver(&self, m: &NewSandboxMessage) -> Result<()> {
        sandbox_deliver(&self.pool, m).await
    }

    async fn sandbox_inbox(
        &self,
        tenant_id: &str,
        to: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<SandboxMessage>> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT message_id, to_number, sender, body, received_at FROM sandbox_messages \
             WHERE tenant_id = ?1 AND (?2 IS NULL OR to_number = ?2) AND received_at >= ?3 \
             AND body IS NOT NULL \
             ORDER BY received_at DESC, message_id DESC LIMIT 100",
        )
        .bind(tenant_id)
        .bind(to)
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(sandbox_from_tuple).collect())
    }

    async fn apply_sandbox_receipts(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "UPDATE sandbox_messages SET receipt_done = 1 WHERE message_id IN \
               (SELECT message_id FROM sandbox_messages WHERE receipt_done = 0 AND receipt_due <= $1 \
                ORDER BY receipt_due LIMIT $2) RETURNING message_id, receipt_status",
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let taken = due.len() as u64;
        apply_sandbox_due(&mut tx, due, now).await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn cleanup(
        &self,
        idempotency_before: Timestamp,
        sandbox_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        cleanup(&self.pool, idempotency_before, sandbox_before, now).await
    }

    async fn setting_or_init(&self, key: &str, value: &str) -> Result<String> {
        setting_or_init(&self.pool, key, value).await
    }

    async fn find_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<(String, u16, String)>> {
        stored_response(&self.pool, tenant_id, key).await
    }

    async fn rate_limit(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>> {
        rate_limit(&self.pool, key, now, interval_ms, period_ms).await
    }

    async fn add_spend(&self, tenant_id: &str, month: &str, pence: i64, cap: i64) -> Result<bool> {
        add_spend(&self.pool, tenant_id, month, pence, cap).await
    }

    async fn create_verification(
        &self,
        v: &StoredVerification,
        msg: &NewMessage,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        let mut tx = self.pool.begin().await?;
        if let Some(used) = take_key(&mut tx, &v.tenant_id, idem, v.created_at).await? {
            return Ok(used);
        }
        cancel_pending(&mut tx, v).await?;
        create_one(&mut tx, msg, None).await?;
        insert_verification(&mut tx, v).await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    async fn get_verification(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StoredVerification>> {
        get_verification(&self.pool, tenant_id, id).await
    }

    async fn latest_verification(
        &self,
        tenant_id: &str,
        to: &str,
    ) -> Result<Option<StoredVerification>> {
        latest_verification(&self.pool, tenant_id, to).await
    }

    async fn check_codes(
        &self,
        checks: &[CodeCheck],
        judge: &Judge,
        cache: &VerificationCache,
    ) -> Result<Vec<Verdict>> {
        check_codes(&self.pool, checks, judge, cache).await
    }

    async fn close_verification(
        &self,
        tenant_id: &str,
        id: &str,
        status: VerificationStatus,
        now: Timestamp,
    ) -> Result<bool> {
        close_verification(&self.pool, tenant_id, id, status, now).await
    }

    async fn resend_verification(&self, r: &Resend, msg: &NewMessage) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        create_one(&mut tx, msg, None).await?;
        let done = resend_update(&mut tx, r, &msg.id).await?;
        if !done {
            return Ok(false); // dropping the transaction rolls the message back
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn create_endpoint(&self, e: &StoredEndpoint) -> Result<()> {
        create_endpoint(&self.pool, e).await
    }

    async fn list_endpoints(
        &self,
        tenant_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEndpoint>> {
        list_endpoints(&self.pool, tenant_id, starting_after, limit).await
    }

    async fn get_endpoint(&self, tenant_id: &str, id: &str) -> Result<Option<StoredEndpoint>> {
        get_endpoint(&self.pool, tenant_id, id).await
    }

    async fn update_endpoint(&self, e: &StoredEndpoint) -> Result<bool> {
        update_endpoint(&self.pool, e).await
    }

    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<bool> {
        delete_endpoint(&self.pool, tenant_id, id).await
    }

    async fn rotate_endpoint_secret(&self, rotation: &Rotation) -> Result<bool> {
        rotate_endpoint_secret(&self.pool, rotation).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $4) \
             RETURNING id, tenant_id, endpoint_id, payload, attempts",
        )
        .bind(now.millis())
        .bind(lease_until.millis())
        .bind(token)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, tenant_id, endpoint_id, payload, attempts)| {
                Ok(ClaimedDelivery {
                    id,
                    tenant_id,
                    endpoint_id,
                    payload,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| sqlx::Error::Decode("bad attempts".into()))?,
                })
            })
            .collect()
    }

    async fn finish_delivery(&self, record: &AttemptRecord) -> Result<bool> {
        finish_delivery(&self.pool, record).await
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        list_deliveries(&self.pool, tenant_id, endpoint_id, starting_after, limit).await
    }

    async fn replay_delivery(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        replay_delivery(&self.pool, tenant_id, endpoint_id, id, now).await
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Inserts one message (and its idempotency record) inside the batch's transaction.
async fn create_one(
    tx: &mut Tx<'_>,
    m: &NewMessage,
    idem: Option<&IdempotencyRecord>,
) -> Result<CreateOutcome> {
    if let Some(used) = take_key(tx, &m.tenant_id, idem, m.created_at).await? {
        return Ok(used);
    }
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, mode, to_number, sender, body, body_hmac, encoding, \
               segments, price_pence, reference, status, next_attempt_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12, ?12, ?12)",
    )
    .bind(&m.id)
    .bind(&m.tenant_id)
    .bind(m.mode.as_str())
    .bind(&m.to)
    .bind(&m.from)
    .bind(&m.body)
    .bind(&m.body_hmac)
    .bind(m.encoding.as_str())
    .bind(i64::from(m.segments))
    .bind(m.price.0)
    .bind(&m.reference)
    .bind(m.created_at.millis())
    .execute(&mut **tx)
    .await?;
    Ok(CreateOutcome::Created)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            super::MIGRATIONS.len()
        );
    }
}
