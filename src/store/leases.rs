//! Leaseholders' heartbeats: a worker or dispatcher that stops beating (killed,
//! frozen, cut off) has its claims freed by the others within seconds.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::sql::{Db, json_param, sql};
use super::{LeaseStore, Result, SqlStore};
use crate::domain::message::Timestamp;

#[async_trait]
impl<D: Db> LeaseStore for SqlStore<D> {
    async fn heartbeat(&self, token: &str, now: Timestamp) -> Result<()> {
        sql::<D>(
            "INSERT INTO leaseholders (token, seen_at) VALUES ($1, $2) \
             ON CONFLICT (token) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(token)
        .bind(now.millis())
        .written(self)
        .await?;
        Ok(())
    }

    async fn free_silent(&self, silent_since: Timestamp) -> Result<u64> {
        // Nearly always none: one look at a table of a few rows.
        let silent: Vec<String> = sql::<D>("SELECT token FROM leaseholders WHERE seen_at < $1")
            .bind(silent_since.millis())
            .fetch_all(&mut *self.conn().await?)
            .await?;
        if silent.is_empty() {
            return Ok(0);
        }
        let mut conn = self.write().await?;
        let tokens = json_param(silent.iter().map(|t| json!({"t": t})).collect());
        let text = format!(
            "UPDATE messages SET lease_until = NULL, lease_token = NULL \
             WHERE status = 'queued' AND lease_token {}",
            D::json_keys(1, "t")
        );
        let mut freed = sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(&tokens)
            .execute(&mut conn)
            .await?;
        // A claimed delivery is due when its lease ends (`claim_deliveries`): due now instead.
        let text = format!(
            "UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL, \
               next_attempt_at = CASE WHEN next_attempt_at > $2 THEN $2 ELSE next_attempt_at END \
             WHERE status = 'pending' AND lease_token {}",
            D::json_keys(1, "t")
        );
        freed += sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(&tokens)
            .bind(silent_since.millis())
            .execute(&mut conn)
            .await?;
        // A holder that beat again meanwhile is alive and kept (its late
        // finishes are refused all the same: its leases are gone).
        let text = format!(
            "DELETE FROM leaseholders WHERE token {} AND seen_at < $2",
            D::json_keys(1, "t")
        );
        sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(&tokens)
            .bind(silent_since.millis())
            .execute(&mut conn)
            .await?;
        conn.commit().await?;
        Ok(freed)
    }

    async fn forget_leaseholder(&self, token: &str) -> Result<()> {
        sql::<D>("DELETE FROM leaseholders WHERE token = $1")
            .bind(token)
            .written(self)
            .await?;
        Ok(())
    }
}
