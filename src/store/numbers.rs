//! Numbers: the operator's inventory and tenants' rentals, their fees in the
//! ledger, renewals charged once per due date.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::idempotency::take_key;
use super::ledger::charge_fee;
use super::rows::NUMBER_COLUMNS;
use super::sql::{Db, json_param, sql};
use super::{
    CreateOutcome, IdempotencyRecord, NewRental, NumberStore, Page, Result, SqlStore, StoreError,
};
use crate::domain::Mode;
use crate::domain::ids::{NumberId, TenantId};
use crate::domain::message::{Pence, Timestamp};
use crate::domain::number::{AvailableNumber, Number, next_renewal};

#[async_trait]
impl<D: Db> NumberStore for SqlStore<D> {
    async fn import_numbers(&self, numbers: &[(String, Pence)], now: Timestamp) -> Result<u64> {
        let mut tx = self.begin().await?;
        let rows = numbers
            .iter()
            .map(|(n, p)| json!({"n": n, "p": p.0}))
            .collect();
        let text = format!(
            "INSERT INTO numbers (number, monthly_price_pence, created_at) \
             SELECT u.n, u.p, $2 FROM {} WHERE TRUE \
             ON CONFLICT (number) DO UPDATE SET monthly_price_pence = excluded.monthly_price_pence",
            D::json_rows(1, &[("n", "TEXT"), ("p", "BIGINT")]),
        );
        let n = sql::<D>(AssertSqlSafe(text))
            .bind(json_param(rows))
            .bind(now.millis())
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn available_numbers(
        &self,
        contains: &str,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<AvailableNumber>> {
        let rows: Vec<(String, i64)> = sql::<D>(
            "SELECT number, monthly_price_pence FROM numbers \
             WHERE rental_id IS NULL AND available_from <= $1 AND number LIKE $2 \
             ORDER BY number LIMIT $3",
        )
        .bind(now.millis())
        .bind(format!("%{contains}%"))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(number, p)| AvailableNumber {
                number,
                monthly_price_pence: Pence(p),
            })
            .collect())
    }

    async fn rent_number(
        &self,
        r: &NewRental,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        let n = &r.number;
        let mut tx = self.begin().await?;
        if let Some(used) = take_key::<D>(&mut tx, &r.tenant_id, idem, n.rented_at).await? {
            return Ok(used);
        }
        // Dropping the transaction on a refusal gives the key back.
        if n.mode == Mode::Live {
            let taken = sql::<D>(
                // At the price shown: a re-import that changed it meanwhile makes this a 409.
                "UPDATE numbers SET rental_id = $1 WHERE number = $2 AND rental_id IS NULL \
                   AND available_from <= $3 AND monthly_price_pence = $4",
            )
            .bind(n.id.as_str())
            .bind(&n.number)
            .bind(n.rented_at.millis())
            .bind(n.monthly_price_pence.0)
            .execute(&mut tx)
            .await?;
            if taken == 0 {
                return Ok(CreateOutcome::NumberTaken);
            }
        }
        let inserted = sql::<D>(
            "INSERT INTO rentals (id, tenant_id, mode, number, monthly_price_pence, status, \
               rented_at, renews_at) VALUES ($1, $2, $3, $4, $5, 'rented', $6, $7)",
        )
        .bind(n.id.as_str())
        .bind(r.tenant_id.as_str())
        .bind(n.mode.as_str())
        .bind(&n.number)
        .bind(n.monthly_price_pence.0)
        .bind(n.rented_at.millis())
        .bind(n.renews_at.map(|t| t.millis()))
        .execute(&mut tx)
        .await;
        match inserted {
            // This tenant's sandbox already has it.
            Err(StoreError::Conflict(_)) => return Ok(CreateOutcome::NumberTaken),
            other => other?,
        };
        let (price, at) = (n.monthly_price_pence, n.rented_at);
        if !charge_fee::<D>(&mut tx, &r.tenant_id, &n.id, price, at, r.cap).await? {
            return Ok(CreateOutcome::OverCap);
        }
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    async fn list_numbers(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        page: &Page,
    ) -> Result<Vec<Number>> {
        let text = format!(
            "SELECT {NUMBER_COLUMNS} FROM rentals WHERE tenant_id = $1 AND mode = $2 AND id < $3 \
             ORDER BY id DESC LIMIT $4"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(mode.as_str())
            .bind(page.starting_after.as_deref().unwrap_or("~"))
            .bind(i64::from(page.limit))
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn get_number(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        id: &NumberId,
    ) -> Result<Option<Number>> {
        let text = format!(
            "SELECT {NUMBER_COLUMNS} FROM rentals WHERE tenant_id = $1 AND mode = $2 AND id = $3"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(mode.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn release_number(
        &self,
        tenant_id: &TenantId,
        id: &NumberId,
        now: Timestamp,
        rests_until: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let released = sql::<D>(
            "UPDATE rentals SET status = 'released', released_at = $3, renews_at = NULL \
             WHERE tenant_id = $1 AND id = $2 AND status = 'rented'",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(now.millis())
        .execute(&mut tx)
        .await?;
        if released == 1 {
            sql::<D>(
                "UPDATE numbers SET rental_id = NULL, available_from = $2 WHERE rental_id = $1",
            )
            .bind(id.as_str())
            .bind(rests_until.millis())
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(released == 1)
    }

    /// Each renewal in a transaction of its own: it locks one month total,
    /// so renewals never hold several tenants' totals against the create path.
    async fn renew_due(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let due: Vec<(NumberId, TenantId, i64, i64, i64)> = sql::<D>(
            "SELECT id, tenant_id, monthly_price_pence, renews_at, rented_at FROM rentals \
             WHERE status = 'rented' AND renews_at <= $1 ORDER BY renews_at, id LIMIT $2",
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        let mut renewed = 0;
        for (id, tenant, price, due_at, rented_at) in due {
            let due_at = Timestamp(due_at);
            let next = next_renewal(Timestamp(rented_at), due_at);
            let mut tx = self.begin().await?;
            // Compare-and-set on the date: another node renewing it meanwhile wins.
            let moved = sql::<D>(
                "UPDATE rentals SET renews_at = $3 \
                 WHERE id = $1 AND renews_at = $2 AND status = 'rented'",
            )
            .bind(id.as_str())
            .bind(due_at.millis())
            .bind(next.millis())
            .execute(&mut tx)
            .await?;
            if moved == 1 {
                // Owed whatever the cap: a tenant stops the fees by releasing the number.
                charge_fee::<D>(&mut tx, &tenant, &id, Pence(price), due_at, None).await?;
                tx.commit().await?;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn owns_number(&self, tenant_id: &TenantId, mode: Mode, number: &str) -> Result<bool> {
        sql::<D>(
            "SELECT EXISTS (SELECT 1 FROM rentals \
             WHERE tenant_id = $1 AND mode = $2 AND number = $3 AND status = 'rented')",
        )
        .bind(tenant_id.as_str())
        .bind(mode.as_str())
        .bind(number)
        .fetch_one(&mut *self.conn().await?)
        .await
    }
}
