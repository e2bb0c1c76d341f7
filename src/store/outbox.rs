//! The webhook outbox: the deliveries a change fires, written in the same
//! transaction as the change, for the dispatcher to send. A batch of changes
//! costs a few statements, whatever its size: one for the endpoints, one for
//! the objects (messages), one for the deliveries.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use sqlx::AssertSqlSafe;

use super::rows::MESSAGE_COLUMNS;
use super::sql::{Db, json_param, sql};
use super::{Result, StoreError};
use crate::domain::ids::{DeliveryId, EndpointId, MessageId, TenantId};
use crate::domain::message::{InboundSms, Message, MessageStatus, Timestamp};
use crate::domain::verification::{StoredVerification, Verification};
use crate::domain::webhook::{EventSet, EventType, envelope};

/// A message's new status, its history already recorded.
pub(super) struct MessageChange {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub status: MessageStatus,
    pub at: Timestamp,
}

/// Queues the webhooks of these messages' new statuses.
pub(super) async fn queue_message_webhooks<D: Db>(
    conn: &mut D::Connection,
    changes: &[MessageChange],
) -> Result<()> {
    let fired: Vec<(&MessageChange, EventType)> = changes
        .iter()
        .filter_map(|c| Some((c, EventType::for_message(c.status)?)))
        .collect();
    if fired.is_empty() {
        return Ok(());
    }
    let endpoints = Endpoints::of::<D>(conn, fired.iter().map(|(c, _)| &c.tenant_id)).await?;
    let fired: Vec<_> = fired
        .into_iter()
        .filter(|(c, event)| endpoints.any(&c.tenant_id, *event))
        .collect();
    if fired.is_empty() {
        return Ok(());
    }
    let text = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id {}",
        D::json_keys(1, "mid")
    );
    let keys = fired.iter().map(|(c, _)| json!({"mid": c.id})).collect();
    let messages: Vec<Message> = sql::<D>(AssertSqlSafe(text))
        .unprepared()
        .bind(json_param(keys))
        .fetch_all(conn)
        .await?;
    let messages: HashMap<&MessageId, &Message> = messages.iter().map(|m| (&m.id, m)).collect();
    let mut rows = Vec::new();
    for (c, event) in fired {
        let message = messages
            .get(&c.id)
            .ok_or_else(|| StoreError::Corrupt(format!("message {} is gone", c.id)))?;
        endpoints.deliveries(&mut rows, &c.tenant_id, event, json(message)?, c.at);
    }
    insert_deliveries::<D>(conn, rows).await
}

/// Queues verification.approved for a verification just approved.
pub(super) async fn verification_approved<D: Db>(
    conn: &mut D::Connection,
    v: &StoredVerification,
) -> Result<()> {
    let data = json(&Verification::from(v))?;
    queue_one::<D>(
        conn,
        &v.tenant_id,
        EventType::VerificationApproved,
        data,
        v.updated_at,
    )
    .await
}

/// Queues message.received for an inbound message that reached a tenant.
pub(super) async fn message_received<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    msg: &InboundSms,
) -> Result<()> {
    let event = EventType::MessageReceived;
    queue_one::<D>(conn, tenant_id, event, json(msg)?, msg.received_at).await
}

async fn queue_one<D: Db>(
    conn: &mut D::Connection,
    tenant_id: &TenantId,
    event: EventType,
    data: serde_json::Value,
    at: Timestamp,
) -> Result<()> {
    let endpoints = Endpoints::of::<D>(conn, [tenant_id].into_iter()).await?;
    let mut rows = Vec::new();
    endpoints.deliveries(&mut rows, tenant_id, event, data, at);
    insert_deliveries::<D>(conn, rows).await
}

fn json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(format!("webhook payload: {e}")))
}

/// The enabled endpoints of some tenants, with the events each takes.
struct Endpoints(Vec<(TenantId, EndpointId, EventSet)>);

impl Endpoints {
    async fn of<'t, D: Db>(
        conn: &mut D::Connection,
        tenants: impl Iterator<Item = &'t TenantId>,
    ) -> Result<Self> {
        let tenants: BTreeSet<&TenantId> = tenants.collect();
        let text = format!(
            "SELECT tenant_id, id, events FROM webhook_endpoints \
             WHERE enabled = TRUE AND tenant_id {}",
            D::json_keys(1, "t"),
        );
        let rows: Vec<(TenantId, EndpointId, Option<String>)> = sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(json_param(
                tenants.iter().map(|t| json!({"t": t})).collect(),
            ))
            .fetch_all(conn)
            .await?;
        Ok(Endpoints(
            rows.into_iter()
                .map(|(t, e, events)| (t, e, EventSet::from_column(events.as_deref())))
                .collect(),
        ))
    }

    fn subscribed<'a>(
        &'a self,
        tenant_id: &'a TenantId,
        event: EventType,
    ) -> impl Iterator<Item = &'a EndpointId> {
        self.0
            .iter()
            .filter(move |(t, _, events)| t == tenant_id && events.contains(event))
            .map(|(_, e, _)| e)
    }

    fn any(&self, tenant_id: &TenantId, event: EventType) -> bool {
        self.subscribed(tenant_id, event).next().is_some()
    }

    /// Adds a delivery row for each endpoint of the tenant that takes `event`.
    fn deliveries(
        &self,
        rows: &mut Vec<serde_json::Value>,
        tenant_id: &TenantId,
        event: EventType,
        data: serde_json::Value,
        at: Timestamp,
    ) {
        let mut endpoints = self.subscribed(tenant_id, event).peekable();
        if endpoints.peek().is_none() {
            return;
        }
        let payload = envelope(event, at, data);
        for endpoint in endpoints {
            rows.push(json!({
                "id": DeliveryId::generate(),
                "t": tenant_id,
                "e": endpoint,
                "ev": event.as_str(),
                "p": payload,
                "at": at.millis(),
            }));
        }
    }
}

/// Inserts pending deliveries, one statement for them all.
async fn insert_deliveries<D: Db>(
    conn: &mut D::Connection,
    rows: Vec<serde_json::Value>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let text = format!(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_type, payload, \
           status, next_attempt_at, created_at, updated_at) \
         SELECT u.id, u.t, u.e, u.ev, u.p, 'pending', u.at, u.at, u.at FROM {}",
        D::json_rows(
            1,
            &[
                ("id", "TEXT"),
                ("t", "TEXT"),
                ("e", "TEXT"),
                ("ev", "TEXT"),
                ("p", "TEXT"),
                ("at", "BIGINT")
            ]
        ),
    );
    sql::<D>(AssertSqlSafe(text))
        .bind(json_param(rows))
        .execute(conn)
        .await?;
    Ok(())
}
