//! Messages handsets sent to tenants' numbers: kept for the tenant renting the
//! number, with its webhook in the same transaction; kept for the operator
//! alone when nobody rents it.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::outbox::message_received;
use super::sql::{Db, sql};
use super::{InboundMessage, InboundStore, Page, Result, SqlStore};
use crate::domain::Mode;
use crate::domain::ids::{NumberId, TenantId};
use crate::domain::message::{InboundSms, Timestamp};

#[async_trait]
impl<D: Db> InboundStore for SqlStore<D> {
    async fn record_inbound(&self, m: &InboundMessage) -> Result<Option<InboundSms>> {
        let mut tx = self.begin().await?;
        // A sandbox message is for the tenant that sent it; a carrier's for whoever rents the number.
        let text = format!(
            "SELECT id, tenant_id FROM rentals WHERE number = $1 AND mode = $2 \
               AND status = 'rented' AND ({} IS NULL OR tenant_id = $3)",
            D::text(3)
        );
        let owner: Option<(NumberId, TenantId)> = sql::<D>(AssertSqlSafe(text))
            .bind(&m.to)
            .bind(m.mode.as_str())
            .bind(m.tenant.as_ref().map(|t| t.as_str()))
            .fetch_optional(&mut tx)
            .await?;
        sql::<D>(
            "INSERT INTO inbound_messages (id, carrier, from_number, to_number, body, received_at, \
               tenant_id, number_id, mode) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&m.id)
        .bind(&m.carrier)
        .bind(&m.from)
        .bind(&m.to)
        .bind(m.body.as_deref())
        .bind(m.received_at.millis())
        .bind(owner.as_ref().map(|(_, t)| t.as_str()))
        .bind(owner.as_ref().map(|(n, _)| n.as_str()))
        .bind(m.mode.as_str())
        .execute(&mut tx)
        .await?;
        let reached = match owner {
            None => None,
            Some((number_id, tenant)) => {
                let msg = InboundSms {
                    id: m.id.clone(),
                    direction: "inbound".into(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    number_id,
                    body: m.body.clone().unwrap_or_default(),
                    received_at: m.received_at,
                };
                message_received::<D>(&mut tx, &tenant, &msg).await?;
                Some(msg)
            }
        };
        tx.commit().await?;
        Ok(reached)
    }

    async fn list_inbound(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
        page: &Page,
    ) -> Result<Vec<InboundSms>> {
        let rows: Vec<(String, String, String, NumberId, Option<String>, i64)> = sql::<D>(
            "SELECT id, from_number, to_number, number_id, body, received_at FROM inbound_messages \
             WHERE tenant_id = $1 AND mode = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id.as_str())
        .bind(mode.as_str())
        .bind(page.starting_after.as_deref().unwrap_or("~"))
        .bind(i64::from(page.limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, from, to, number_id, body, at)| InboundSms {
                id,
                direction: "inbound".into(),
                from,
                to,
                number_id,
                body: body.unwrap_or_default(),
                received_at: Timestamp(at),
            })
            .collect())
    }
}
