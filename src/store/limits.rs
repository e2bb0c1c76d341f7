//! Counters that hold across every process sharing the database.

use async_trait::async_trait;

use super::sql::{Db, sql};
use super::{LimitStore, Result, SqlStore};
use crate::domain::message::Timestamp;

#[async_trait]
impl<D: Db> LimitStore for SqlStore<D> {
    async fn rate_limit(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.conn().await?;
        // The theoretical arrival time moves on by one interval per admitted
        // event, from now at the earliest; refused if that passes the period.
        let admitted: Option<i64> = sql::<D>(
            "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (key) DO UPDATE \
             SET tat = CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 \
             WHERE CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 - $2 <= $4 \
             RETURNING tat",
        )
        .bind(key)
        .bind(now.millis())
        .bind(interval_ms)
        .bind(period_ms)
        .fetch_optional(&mut conn)
        .await?;
        if admitted.is_some() {
            return Ok(None);
        }
        let tat: i64 = sql::<D>("SELECT tat FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        Ok(Some(
            (tat.max(now.millis()) + interval_ms - period_ms - now.millis()).max(1),
        ))
    }

    async fn forget_limit(&self, key: &str) -> Result<()> {
        sql::<D>("DELETE FROM rate_limits WHERE key = $1")
            .bind(key)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
