//! The schema (migrations embedded per backend) and what ages out.

use async_trait::async_trait;
use sqlx::SqlSafeStr;

use super::sql::{Db, sql};
use super::{Maintenance, Result, SqlStore};
use crate::domain::message::Timestamp;

/// How long a receipt waits for its part before it is dropped.
pub(super) const UNMATCHED_RECEIPT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

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
    async fn migrate(&self) -> Result<()> {
        migrator(D::MIGRATIONS)
            .run(&self.pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok(())
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
        let mut conn = self.conn().await?;
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
        Ok(n)
    }
}
