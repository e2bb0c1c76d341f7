//! PostgreSQL: the production backend. Several processes share one database;
//! work is claimed with `FOR UPDATE SKIP LOCKED` so nothing is taken twice.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::*;

super::common::shared_queries!(
    sqlx::Postgres,
    super::pg_json_rows,
    super::pg_json_keys,
    " FOR UPDATE",
    " FOR UPDATE OF r SKIP LOCKED"
);

/// Every file of migrations/postgres, in order (a test checks none is missing).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "otp",
        include_str!("../../migrations/postgres/0002_otp.sql"),
    ),
    (
        3,
        "webhooks",
        include_str!("../../migrations/postgres/0003_webhooks.sql"),
    ),
    (
        4,
        "carriers",
        include_str!("../../migrations/postgres/0004_carriers.sql"),
    ),
    (
        5,
        "drop_messages_carrier_id",
        include_str!("../../migrations/postgres/0005_drop_messages_carrier_id.sql"),
    ),
    (
        6,
        "history_in_messages",
        include_str!("../../migrations/postgres/0006_history_in_messages.sql"),
    ),
    (
        7,
        "drop_hot_foreign_keys",
        include_str!("../../migrations/postgres/0007_drop_hot_foreign_keys.sql"),
    ),
];

/// The transaction a queue claim runs in. A claim must walk its due index in
/// order and stop after its batch. Planned from statistics of a shorter queue
/// (2 rows, say), a bitmap scan of every due row and a sort look as cheap, and
/// cost the whole queue per claim: 92 of the 231 message claims slower than
/// 3 ms in three 10 s runs, 215 µs a message in a run where the queue had
/// grown, and 64 of 67 slow webhook claims. Without sorts the ordered index
/// scan is the plan left.
async fn claim_tx(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_sort = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub struct PgStore {
    pool: PgPool,
}

/// A pooled connection idle longer than this is checked before use.
const IDLE_PING_SECONDS: u64 = 5;

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        // Safety nets: nothing waits forever on a lock, and a transaction left
        // idle (a bug, a stuck client) is ended by the server, not kept with its locks.
        let options = PgConnectOptions::from_str(url)?.options([
            ("lock_timeout", "10s"),
            ("idle_in_transaction_session_timeout", "30s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            // sqlx pings every connection it hands out: a round trip per query,
            // measured here as the larger part of a busy API's wait. Only a
            // connection idle for a while (the server may have restarted) is pinged.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > std::time::Duration::from_secs(IDLE_PING_SECONDS) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }
}

#[async_trait]
impl Store for PgStore {
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
        let keyed: Vec<(&NewMessage, &IdempotencyRecord)> = batch
            .iter()
            .filter_map(|p| p.idem.as_ref().map(|i| (&p.message, i)))
            .collect();
        if keyed.is_empty() {
            // The common case: one statement, atomic on its own, one round trip.
            let all: Vec<&NewMessage> = batch.iter().map(|p| &p.message).collect();
            insert_messages(&self.pool, &all).await?;
            return Ok(vec![CreateOutcome::Created; batch.len()]);
        }
        let mut tx = self.pool.begin().await?;
        // Idempotency records first: a key already taken (here or by another
        // process, whose commit ON CONFLICT waits for) inserts no message.
        let text = |f: fn(&NewMessage, &IdempotencyRecord) -> String| {
            keyed.iter().map(|(m, i)| f(m, i)).collect::<Vec<_>>()
        };
        let fresh: std::collections::HashSet<(String, String)> = sqlx::query_as(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, response, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) \
             ON CONFLICT DO NOTHING RETURNING tenant_id, key",
        )
        .bind(text(|m, _| m.tenant_id.clone()))
        .bind(text(|_, i| i.key.clone()))
        .bind(text(|_, i| i.request_hash.clone()))
        .bind(keyed.iter().map(|(_, i)| i64::from(i.status)).collect::<Vec<_>>())
        .bind(text(|_, i| i.response.clone()))
        .bind(keyed.iter().map(|(m, _)| m.created_at.millis()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let is_new = |p: &PendingMessage| match &p.idem {
            None => true,
            Some(i) => fresh.contains(&(p.message.tenant_id.clone(), i.key.clone())),
        };
        let new: Vec<&NewMessage> = batch
            .iter()
            .filter(|p| is_new(p))
            .map(|p| &p.message)
            .collect();
        insert_messages(&mut *tx, &new).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            outcomes.push(match &p.idem {
                Some(i) if !is_new(p) => {
                    let (request_hash, status, response) =
                        stored_response(&mut *tx, &p.message.tenant_id, &i.key)
                            .await?
                            .ok_or(sqlx::Error::RowNotFound)?;
                    CreateOutcome::Existing {
                        request_hash,
                        status,
                        response,
                    }
                }
                _ => CreateOutcome::Created,
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get_message(&self, tenant_id: &str, id: &str) -> Result<Option<Message>> {
        get_message(&self.pool, tenant_id, id).await
    }

    async fn list_messages(&self, tenant_id: &str, f: &MessageFilter) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR to_number = $3) \
             AND ($4::text IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
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
        let mut tx = claim_tx(&self.pool).await?;
        let rows = sqlx::query(
            "UPDATE messages SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $4 \
               FOR UPDATE SKIP LOCKED) \
             RETURNING id, tenant_id, mode, to_number, sender, body, encoding, segments, created_at, attempts",
        )
        .bind(now.millis())
        .bind(lease_until.millis())
        .bind(token)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
             WHERE tenant_id = $1 AND ($2::text IS NULL OR to_number = $2) AND received_at >= $3 \
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
            // By key: as `IN (…)` PostgreSQL hash-joined the whole table to the batch.
            "UPDATE sandbox_messages SET receipt_done = TRUE WHERE message_id = ANY(ARRAY( \
               SELECT message_id FROM sandbox_messages WHERE NOT receipt_done AND receipt_due <= $1 \
                ORDER BY receipt_due LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING message_id, receipt_status",
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
        // Starts for one number take turns: each cancels the one before it,
        // instead of racing into the one-pending index (or a deadlock).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("verification:{}:{}", v.tenant_id, v.to))
            .execute(&mut *tx)
            .await?;
        if let Some(used) = take_key(&mut tx, &v.tenant_id, idem, v.created_at).await? {
            return Ok(used);
        }
        cancel_pending(&mut tx, v).await?;
        insert_messages(&mut *tx, &[msg]).await?;
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
        insert_messages(&mut *tx, &[msg]).await?;
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
        let mut tx = claim_tx(&self.pool).await?;
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, tenant_id, endpoint_id, payload, attempts",
        )
        .bind(now.millis())
        .bind(lease_until.millis())
        .bind(token)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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

/// Inserts queued messages in one statement (their first status is `created_at`).
async fn insert_messages<'e>(db: impl sqlx::PgExecutor<'e>, new: &[&NewMessage]) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&NewMessage) -> String| new.iter().map(|m| f(m)).collect::<Vec<_>>();
    let int = |f: fn(&NewMessage) -> i64| new.iter().map(|m| f(m)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, mode, to_number, sender, body, body_hmac, encoding, \
           segments, price_pence, reference, status, next_attempt_at, created_at, updated_at) \
         SELECT id, tenant_id, mode, to_number, sender, body, body_hmac, encoding, segments, \
           price_pence, reference, 'queued', created_at, created_at, created_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[]) \
           AS t(id, tenant_id, mode, to_number, sender, body, body_hmac, encoding, segments, \
           price_pence, reference, created_at)",
    )
    .bind(text(|m| m.id.clone()))
    .bind(text(|m| m.tenant_id.clone()))
    .bind(text(|m| m.mode.as_str().to_string()))
    .bind(text(|m| m.to.clone()))
    .bind(text(|m| m.from.clone()))
    .bind(text(|m| m.body.clone()))
    .bind(text(|m| m.body_hmac.clone()))
    .bind(text(|m| m.encoding.as_str().to_string()))
    .bind(int(|m| i64::from(m.segments)))
    .bind(int(|m| m.price.0))
    .bind(new.iter().map(|m| m.reference.clone()).collect::<Vec<_>>())
    .bind(int(|m| m.created_at.millis()))
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            super::MIGRATIONS.len()
        );
    }
}
