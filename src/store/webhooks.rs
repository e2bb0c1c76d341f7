//! Webhook endpoints and their deliveries. (What a change fires: `outbox.rs`.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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
        .written(self)
        .await?;
        Ok(done == 1)
    }

    async fn delete_endpoint(&self, tenant_id: &TenantId, id: &EndpointId) -> Result<bool> {
        let done = sql::<D>("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(id.as_str())
            .written(self)
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
        .written(self)
        .await?;
        Ok(done == 1)
    }

    async fn claim_deliveries(
        &self,
        c: &Claim,
        busy: &[EndpointId],
    ) -> Result<Vec<ClaimedDelivery>> {
        // A claimed delivery is due again when its lease ends (if its
        // attempt is not recorded by then): claims scan the due, never the
        // deliveries under way.
        let due = |busy: u8| {
            format!(
                "FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                 AND (lease_until IS NULL OR lease_until <= $1) AND NOT (endpoint_id {})",
                D::json_keys(busy, "e"),
            )
        };
        let busy = json_param(busy.iter().map(|e| json!({"e": e.as_str()})).collect());
        let probe = || {
            sql::<D>(AssertSqlSafe(format!("SELECT 1 {} LIMIT 1", due(2))))
                .bind(c.now.millis())
                .bind(busy.clone())
        };
        if self.nothing_due(probe).await? {
            return Ok(Vec::new());
        }
        let text = format!(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_token = $3, \
               attempts = attempts + 1, next_attempt_at = $2 \
             WHERE id IN (SELECT id {} ORDER BY next_attempt_at LIMIT $4{}) \
             RETURNING id, endpoint_id, payload, attempts",
            due(5),
            D::SKIP_LOCKED,
        );
        let claim = sql::<D>(AssertSqlSafe(text))
            .bind(c.now.millis())
            .bind(c.lease_until.millis())
            .bind(&c.token)
            .bind(i64::from(c.limit))
            .bind(busy);
        let mut w = self.claim_write().await?;
        let rows: Vec<(DeliveryId, EndpointId, String, i64)> = claim.fetch_all(&mut w).await?;
        w.commit().await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Their endpoints, once for the claim rather than once a delivery.
        let ids: BTreeSet<&EndpointId> = rows.iter().map(|(_, e, _, _)| e).collect();
        let text = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id {}",
            D::json_keys(1, "e"),
        );
        let endpoints: Vec<StoredEndpoint> = sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(json_param(ids.iter().map(|e| json!({"e": e})).collect()))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        let endpoints: HashMap<EndpointId, Arc<StoredEndpoint>> = endpoints
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        let mut claimed = Vec::with_capacity(rows.len());
        for (id, endpoint_id, payload, attempts) in rows {
            // An endpoint deleted since took its deliveries with it.
            let Some(endpoint) = endpoints.get(&endpoint_id) else {
                continue;
            };
            claimed.push(ClaimedDelivery {
                id,
                endpoint: endpoint.clone(),
                payload,
                attempts: u32::try_from(attempts)
                    .map_err(|_| StoreError::Corrupt("attempts".into()))?,
            });
        }
        Ok(claimed)
    }

    async fn finish_deliveries(&self, records: &[AttemptRecord]) -> Result<Vec<bool>> {
        // One commit and a few statements for many attempts. Endpoints' rows
        // are written in one order, so two groups never wait on each other in
        // a cycle.
        let mut tx = self.pipeline_begin().await?;
        let done = finish_all::<D>(&mut tx, records).await?;
        tx.commit().await?;
        Ok(records
            .iter()
            .map(|r| done.contains(&r.delivery_id))
            .collect())
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
        .written(self)
        .await?;
        Ok(done == 1)
    }
}

/// Records the attempts whose `token` still holds the lease, and what
/// follows each; the deliveries recorded.
async fn finish_all<D: Db>(
    tx: &mut D::Connection,
    records: &[AttemptRecord],
) -> Result<HashSet<DeliveryId>> {
    let rows = records
        .iter()
        .map(|r| {
            let (status, next_at) = match &r.next {
                NextStep::Succeeded => (DeliveryStatus::Succeeded, r.at),
                NextStep::RetryAt(at) => (DeliveryStatus::Pending, *at),
                NextStep::Failed { .. } => (DeliveryStatus::Failed, r.at),
            };
            json!({
                "did": r.delivery_id,
                "tok": r.token,
                "st": status.as_str(),
                "nxt": next_at.millis(),
                "at": r.at.millis(),
            })
        })
        .collect();
    // SQLite's RETURNING takes only the updated table's columns, unqualified.
    let text = format!(
        "UPDATE webhook_deliveries SET status = u.st, next_attempt_at = u.nxt, \
           lease_until = NULL, lease_token = NULL, updated_at = u.at \
         FROM {} WHERE id {} AND id = u.did AND lease_token = u.tok AND status = 'pending' \
         RETURNING id",
        D::json_rows(
            1,
            &[
                ("did", "TEXT"),
                ("tok", "TEXT"),
                ("st", "TEXT"),
                ("nxt", "BIGINT"),
                ("at", "BIGINT")
            ]
        ),
        D::json_keys(1, "did"),
    );
    let done: Vec<DeliveryId> = sql::<D>(AssertSqlSafe(text))
        .unprepared()
        .bind(json_param(rows))
        .fetch_all(&mut *tx)
        .await?;
    let done: HashSet<DeliveryId> = done.into_iter().collect();
    let recorded: Vec<&AttemptRecord> = records
        .iter()
        .filter(|r| done.contains(&r.delivery_id))
        .collect();
    if recorded.is_empty() {
        return Ok(done);
    }
    let attempts = recorded
        .iter()
        .map(|r| {
            json!({
                "did": r.delivery_id,
                "at": r.at.millis(),
                "code": r.status_code,
                "resp": r.response,
                "dur": r.duration_ms,
                "err": r.error,
            })
        })
        .collect();
    let text = format!(
        "INSERT INTO webhook_attempts (delivery_id, at, status_code, response, duration_ms, \
           error) SELECT u.did, u.at, u.code, u.resp, u.dur, u.err FROM {}",
        D::json_rows(
            1,
            &[
                ("did", "TEXT"),
                ("at", "BIGINT"),
                ("code", "BIGINT"),
                ("resp", "TEXT"),
                ("dur", "BIGINT"),
                ("err", "TEXT")
            ]
        ),
    );
    sql::<D>(AssertSqlSafe(text))
        .bind(json_param(attempts))
        .execute(&mut *tx)
        .await?;
    // Each endpoint's health, endpoint by endpoint in one order, its
    // attempts in the order they came.
    let mut by_endpoint: BTreeMap<&EndpointId, Vec<&AttemptRecord>> = BTreeMap::new();
    for r in recorded {
        by_endpoint.entry(&r.endpoint_id).or_default().push(r);
    }
    for (endpoint, attempts) in by_endpoint {
        let mut cleared = false;
        for r in attempts {
            if r.next == NextStep::Succeeded {
                if !cleared {
                    endpoint_succeeded::<D>(tx, endpoint).await?;
                }
                cleared = true;
            } else {
                endpoint_failed::<D>(tx, r).await?;
                cleared = false;
            }
        }
    }
    Ok(done)
}

/// A success: a failing endpoint recovers. Only a recovering endpoint is
/// written: deliveries to a healthy one must not queue on its row lock.
async fn endpoint_succeeded<D: Db>(tx: &mut D::Connection, endpoint: &EndpointId) -> Result<()> {
    sql::<D>(
        "UPDATE webhook_endpoints SET failing_since = NULL \
         WHERE id = $1 AND failing_since IS NOT NULL",
    )
    .bind(endpoint.as_str())
    .execute(tx)
    .await?;
    Ok(())
}

/// A failed attempt: the endpoint is failing since then (if it was not
/// already), and is disabled if the failure or its duration says so.
async fn endpoint_failed<D: Db>(tx: &mut D::Connection, r: &AttemptRecord) -> Result<()> {
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
        .execute(tx)
        .await?;
    }
    Ok(())
}
