//! The webhook outbox: the deliveries a change fires, written in the same
//! transaction as the change, for the dispatcher to send.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::AssertSqlSafe;

use super::rows::MESSAGE_COLUMNS;
use super::sql::{Db, json_param, sql};
use super::{Result, StoreError};
use crate::domain::ids::{DeliveryId, EndpointId, MessageId, TenantId};
use crate::domain::message::{InboundSms, Message, MessageStatus, Timestamp};
use crate::domain::verification::{StoredVerification, Verification};
use crate::domain::webhook::{EventSet, EventType, envelope};

/// Which of these tenants have an enabled endpoint (one query for a batch).
pub(super) async fn tenants_with_endpoints<'t, D: Db>(
    conn: &mut D::Connection,
    tenants: impl Iterator<Item = &'t TenantId>,
) -> Result<Vec<TenantId>> {
    let tenants: BTreeSet<&TenantId> = tenants.collect();
    let text = format!(
        "SELECT DISTINCT tenant_id FROM webhook_endpoints \
         WHERE enabled = TRUE AND tenant_id IN (SELECT u.t FROM {})",
        D::json_rows(1, &[("t", "TEXT")]),
    );
    sql::<D>(AssertSqlSafe(text))
        .bind(json_param(
            tenants.iter().map(|t| json!({"t": t})).collect(),
        ))
        .fetch_all(conn)
        .await
}

/// Queues the webhooks of a message's new status (its history already recorded).
pub(super) async fn queue_message_webhooks<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    id: &MessageId,
    status: MessageStatus,
    at: Timestamp,
) -> Result<()> {
    let Some(event) = EventType::for_message(status) else {
        return Ok(());
    };
    let endpoints = subscribed::<D>(conn, tenant_id, event).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let text = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
    let message: Message = sql::<D>(AssertSqlSafe(text))
        .bind(id.as_str())
        .fetch_one(conn)
        .await?;
    enqueue::<D>(conn, tenant_id, &endpoints, event, json(&message)?, at).await
}

/// Queues verification.approved for a verification just approved.
pub(super) async fn verification_approved<D: Db>(
    conn: &mut D::Connection,
    v: &StoredVerification,
) -> Result<()> {
    let event = EventType::VerificationApproved;
    let endpoints = subscribed::<D>(conn, &v.tenant_id, event).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let data = json(&Verification::from(v))?;
    enqueue::<D>(conn, &v.tenant_id, &endpoints, event, data, v.updated_at).await
}

fn json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(format!("webhook payload: {e}")))
}

/// Queues message.received for an inbound message that reached a tenant.
pub(super) async fn message_received<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    msg: &InboundSms,
) -> Result<()> {
    let event = EventType::MessageReceived;
    let endpoints = subscribed::<D>(conn, tenant_id, event).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    enqueue::<D>(
        conn,
        tenant_id,
        &endpoints,
        event,
        json(msg)?,
        msg.received_at,
    )
    .await
}

/// The tenant's enabled endpoints that take `event`.
async fn subscribed<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    event: EventType,
) -> Result<Vec<EndpointId>> {
    let rows: Vec<(EndpointId, Option<String>)> = sql::<D>(
        "SELECT id, events FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = TRUE",
    )
    .bind(tenant_id.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, events)| EventSet::from_column(events.as_deref()).contains(event))
        .map(|(id, _)| id)
        .collect())
}

async fn enqueue<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    endpoints: &[EndpointId],
    event: EventType,
    data: serde_json::Value,
    at: Timestamp,
) -> Result<()> {
    let payload = envelope(event, at, data);
    for endpoint in endpoints {
        sql::<D>(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, \
               status, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)",
        )
        .bind(DeliveryId::generate().as_str())
        .bind(tenant_id.as_str())
        .bind(endpoint.as_str())
        .bind(event.as_str())
        .bind(&payload)
        .bind(at.millis())
        .execute(conn)
        .await?;
    }
    Ok(())
}
