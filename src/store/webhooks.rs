//! Webhook endpoints and their deliveries. (What a change fires: `outbox.rs`.)

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::idempotency::take_key;
use super::rows::ENDPOINT_COLUMNS;
use super::sql::{Db, find_owned, json_param, sql};
use super::{
    AttemptRecord, Claim, ClaimedDelivery, CreateOutcome, IdempotencyRecord, NextStep, Page,
    Result, Rotation, SqlStore, StoreError, StoredEndpoint, WebhookStore,
};
use crate::domain::ids::{DeliveryId, EndpointId, TenantId};
use crate::domain::message::Timestamp;
use crate::domain::webhook::{
    Delivery, DeliveryAttempt, DeliveryStatus, EventType, disable_reason,
};

/// Without a cursor, "~" sorts after every id.
fn cursor(page: &Page) -> &str {
    page.starting_after.as_deref().unwrap_or("~")
}

#[async_trait]
impl<D: Db> WebhookStore for SqlStore<D> {
    async fn create_endpoint(
        &self,
        e: &StoredEndpoint,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        let mut tx = self.begin().await?;
        if let Some(used) = take_key::<D>(&mut tx, &e.tenant_id, idem, e.created_at).await? {
            return Ok(used);
        }
        sql::<D>(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, secret, \
               enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.id.as_str())
        .bind(e.tenant_id.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(e.events.to_column())
        .bind(&e.secret)
        .bind(e.enabled)
        .bind(e.created_at.millis())
        .bind(e.updated_at.millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    async fn list_endpoints(
        &self,
        tenant_id: &TenantId,
        page: &Page,
    ) -> Result<Vec<StoredEndpoint>> {
        let text = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(cursor(page))
            .bind(i64::from(page.limit))
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn get_endpoint(
        &self,
        tenant_id: &TenantId,
        id: &EndpointId,
    ) -> Result<Option<StoredEndpoint>> {
        let mut conn = self.conn().await?;
        let (columns, table) = (ENDPOINT_COLUMNS, "webhook_endpoints");
        find_owned::<D, _>(&mut conn, columns, table, tenant_id, id.as_str()).await
    }

    async fn update_endpoint(&self, e: &StoredEndpoint) -> Result<bool> {
        let done = sql::<D>(
            "UPDATE webhook_endpoints SET url = $3, description = $4, events = $5, enabled = $6, \
               disabled_reason = $7, updated_at = $8 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(e.tenant_id.as_str())
        .bind(e.id.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(e.events.to_column())
        .bind(e.enabled)
        .bind(&e.disabled_reason)
        .bind(e.updated_at.millis())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done == 1)
    }

    async fn delete_endpoint(&self, tenant_id: &TenantId, id: &EndpointId) -> Result<bool> {
        let done = sql::<D>("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(id.as_str())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(done == 1)
    }

    async fn rotate_endpoint_secret(&self, r: &Rotation) -> Result<bool> {
        let done = sql::<D>(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $4, \
               secret = $3, updated_at = $5 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(r.tenant_id.as_str())
        .bind(r.id.as_str())
        .bind(&r.secret)
        .bind(r.previous_until.millis())
        .bind(r.now.millis())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done == 1)
    }

    async fn claim_deliveries(
        &self,
        c: &Claim,
        busy: &[EndpointId],
    ) -> Result<Vec<ClaimedDelivery>> {
        let text = format!(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_token = $3, \
               attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' \
               AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
               AND NOT (endpoint_id {}) ORDER BY next_attempt_at LIMIT $4{}) \
             RETURNING id, tenant_id, endpoint_id, payload, attempts",
            D::json_keys(5, "e"),
            D::SKIP_LOCKED,
        );
        let busy = busy.iter().map(|e| json!({"e": e.as_str()})).collect();
        let claim = sql::<D>(AssertSqlSafe(text))
            .bind(c.now.millis())
            .bind(c.lease_until.millis())
            .bind(&c.token)
            .bind(i64::from(c.limit))
            .bind(json_param(busy));
        let rows: Vec<(DeliveryId, TenantId, EndpointId, String, i64)> =
            D::claim(&self.pool, claim).await?;
        rows.into_iter()
            .map(|(id, tenant_id, endpoint_id, payload, attempts)| {
                Ok(ClaimedDelivery {
                    id,
                    tenant_id,
                    endpoint_id,
                    payload,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| StoreError::Corrupt("attempts".into()))?,
                })
            })
            .collect()
    }

    async fn finish_deliveries(&self, records: &[AttemptRecord]) -> Result<Vec<bool>> {
        // One commit for many attempts. Endpoints' rows (written when one is
        // failing) are taken in one order, so two groups never wait on each
        // other in a cycle.
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| records[a].endpoint_id.cmp(&records[b].endpoint_id));
        let mut tx = self.begin().await?;
        let mut done = vec![false; records.len()];
        for i in order {
            done[i] = finish_one::<D>(&mut tx, &records[i]).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn list_deliveries(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        page: &Page,
    ) -> Result<Vec<Delivery>> {
        let mut conn = self.conn().await?;
        let rows: Vec<(DeliveryId, String, String, i64, i64, i64)> = sql::<D>(
            "SELECT id, event_type, status, next_attempt_at, created_at, updated_at \
             FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND id < $3 \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(cursor(page))
        .bind(i64::from(page.limit))
        .fetch_all(&mut conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, event_type, status, next, created_at, updated_at) in rows {
            let attempts: Vec<(i64, Option<i64>, Option<String>, i64, Option<String>)> = sql::<D>(
                "SELECT at, status_code, response, duration_ms, error FROM webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(id.as_str())
            .fetch_all(&mut conn)
            .await?;
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt("delivery status".into()))?;
            out.push(Delivery {
                event_type: EventType::parse(&event_type)
                    .ok_or_else(|| StoreError::Corrupt("event type".into()))?,
                next_attempt_at: (status == DeliveryStatus::Pending).then_some(Timestamp(next)),
                id,
                status,
                created_at: Timestamp(created_at),
                updated_at: Timestamp(updated_at),
                attempts: attempts
                    .into_iter()
                    .map(|(at, code, response, duration_ms, error)| DeliveryAttempt {
                        at: Timestamp(at),
                        status_code: code.and_then(|c| u16::try_from(c).ok()),
                        response,
                        duration_ms,
                        error,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    async fn replay_delivery(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sql::<D>(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, \
               lease_until = NULL, lease_token = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(id.as_str())
        .bind(now.millis())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done == 1)
    }
}

/// One attempt and what follows it, in `tx`.
async fn finish_one<D: Db>(tx: &mut D::Connection, r: &AttemptRecord) -> Result<bool> {
    let (status, next_at) = match &r.next {
        NextStep::Succeeded => (DeliveryStatus::Succeeded, r.at),
        NextStep::RetryAt(at) => (DeliveryStatus::Pending, *at),
        NextStep::Failed { .. } => (DeliveryStatus::Failed, r.at),
    };
    let done = sql::<D>(
        "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, lease_until = NULL, \
           lease_token = NULL, updated_at = $5 \
         WHERE id = $1 AND lease_token = $2 AND status = 'pending'",
    )
    .bind(r.delivery_id.as_str())
    .bind(&r.token)
    .bind(status.as_str())
    .bind(next_at.millis())
    .bind(r.at.millis())
    .execute(&mut *tx)
    .await?;
    if done == 0 {
        return Ok(false);
    }
    sql::<D>(
        "INSERT INTO webhook_attempts (delivery_id, at, status_code, response, duration_ms, \
           error) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(r.delivery_id.as_str())
    .bind(r.at.millis())
    .bind(r.status_code.map(i64::from))
    .bind(&r.response)
    .bind(r.duration_ms)
    .bind(&r.error)
    .execute(&mut *tx)
    .await?;
    if r.next == NextStep::Succeeded {
        // Only a recovering endpoint is written: deliveries to a healthy one
        // (run side by side) must not queue on its row lock.
        sql::<D>(
            "UPDATE webhook_endpoints SET failing_since = NULL \
             WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(r.endpoint_id.as_str())
        .execute(&mut *tx)
        .await?;
    } else {
        let since: Option<Option<i64>> = sql::<D>(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) \
             WHERE id = $1 RETURNING failing_since",
        )
        .bind(r.endpoint_id.as_str())
        .bind(r.at.millis())
        .fetch_optional(&mut *tx)
        .await?;
        let asked = match &r.next {
            NextStep::Failed { disable_endpoint } => disable_endpoint.as_deref(),
            _ => None,
        };
        let since = since.flatten().map(Timestamp);
        if let Some(reason) = disable_reason(asked, since, r.at) {
            sql::<D>(
                "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, \
                   updated_at = $3 WHERE id = $1 AND enabled = TRUE",
            )
            .bind(r.endpoint_id.as_str())
            .bind(reason)
            .bind(r.at.millis())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(true)
}
