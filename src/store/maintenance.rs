//! The schema (migrations embedded per backend) and what ages out.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::sql::{Db, sql};
use super::{Maintenance, Result, SqlStore};
use crate::domain::ids::id_floor;
use crate::domain::message::Timestamp;

/// How long a receipt waits for its part before it is dropped.
pub(super) const UNMATCHED_RECEIPT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Messages are kept an hour longer than what refers to them: a verification
/// points at messages sent within its life (at most an hour), so one deleted
/// with its cutoff never outlives a message it refers to.
const MESSAGES_OUTLIVE_MS: i64 = 3600 * 1000;

/// What ages out under the retention: (table, its id column, the id's
/// prefix, what else a row must be, and how much longer it is kept).
const RETAINED: &[(&str, &str, &str, &str, i64)] = &[
    ("verifications", "id", "otp", "", 0),
    (
        "webhook_deliveries",
        "id",
        "whd",
        "AND status <> 'pending'",
        0,
    ),
    ("inbound_messages", "id", "mo", "", 0),
    (
        "sandbox_messages",
        "message_id",
        "msg",
        "",
        MESSAGES_OUTLIVE_MS,
    ),
    (
        "message_parts",
        "message_id",
        "msg",
        "",
        MESSAGES_OUTLIVE_MS,
    ),
    // Ended, and nothing left that refers to it (a backlog deleted in
    // batches may hold a verification the first batches did not reach).
    (
        "messages",
        "id",
        "msg",
        "AND status NOT IN ('queued', 'sent') \
         AND NOT EXISTS (SELECT 1 FROM verifications v WHERE v.message_id = messages.id) \
         AND NOT EXISTS (SELECT 1 FROM sandbox_messages s WHERE s.message_id = messages.id) \
         AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = messages.id)",
        MESSAGES_OUTLIVE_MS,
    ),
];

/// A backend's migrations, embedded in the binary: (version, name, SQL),
/// append-only, in order.
pub(super) fn migrator(files: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, name, text)| {
                sqlx::migrate::Migration::new(
                    version,
                    name.into(),
                    sqlx::migrate::MigrationType::Simple,
                    text.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[async_trait]
impl<D: Db> Maintenance for SqlStore<D>
where
    D::Connection: sqlx::migrate::Migrate,
{
    fn write_waits(&self) -> &super::WriteWaits {
        &self.waits
    }

    fn group_limit(&self) -> usize {
        D::GROUP_LIMIT
    }

    async fn migrate(&self) -> Result<()> {
        D::migrate(&self.pool).await
    }

    async fn ping(&self) -> Result<()> {
        sql::<D>("SELECT 1")
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn cleanup(
        &self,
        idempotency_before: Timestamp,
        sandbox_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let mut conn = self.pipeline_write().await?;
        let mut n = 0;
        for (text, at) in [
            (
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                idempotency_before,
            ),
            (
                "DELETE FROM sandbox_messages WHERE received_at < $1 AND receipt_done = TRUE",
                sandbox_before,
            ),
            ("DELETE FROM rate_limits WHERE tat < $1", now),
            ("DELETE FROM sessions WHERE expires_at < $1", now),
            (
                "DELETE FROM invites WHERE expires_at < $1 AND accepted_by IS NULL",
                now,
            ),
            // A receipt no part claimed within a week never will.
            (
                "DELETE FROM carrier_receipts WHERE received_at < $1",
                now.plus_ms(-UNMATCHED_RECEIPT_TTL_MS),
            ),
        ] {
            n += sql::<D>(text).bind(at.millis()).execute(&mut conn).await?;
        }
        // Parts of messages whose every part has ended are done with: a late
        // duplicate receipt for one finds nothing and ages out with the unmatched.
        n += sql::<D>(
            "DELETE FROM message_parts WHERE status IS NOT NULL AND NOT EXISTS \
               (SELECT 1 FROM message_parts o \
                WHERE o.message_id = message_parts.message_id AND o.status IS NULL)",
        )
        .execute(&mut conn)
        .await?;
        conn.commit().await?;
        Ok(n)
    }

    async fn delete_older(&self, before: Timestamp, limit: u32) -> Result<u64> {
        let mut conn = self.pipeline_write().await?;
        let mut n = 0;
        // Each table in its own short statement over its primary key, oldest
        // first: ids sort by creation time, so no scan, and no long lock.
        for &(table, id, prefix, and, longer) in RETAINED {
            let text = format!(
                "DELETE FROM {table} WHERE {id} IN \
                   (SELECT {id} FROM {table} WHERE {id} < $1 {and} ORDER BY {id} LIMIT $2)"
            );
            n += sql::<D>(AssertSqlSafe(text))
                .bind(id_floor(prefix, before.millis() - longer))
                .bind(i64::from(limit))
                .execute(&mut conn)
                .await?;
        }
        conn.commit().await?;
        Ok(n)
    }
}
