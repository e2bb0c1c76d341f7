//! The sandbox carrier's handsets: what they received, and the receipts they
//! send back when due (applied to parts like any carrier's).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::receipts::apply_to_parts;
use super::rows::SANDBOX_COLUMNS;
use super::sql::{Db, json_param, sql};
use super::{NewSandboxMessage, Result, SandboxMessage, SandboxStore, SqlStore};
use crate::domain::ids::{MessageId, TenantId};
use crate::domain::message::Timestamp;

/// How long a receipt that came before its submission's record waits to be tried again.
const EARLY_RECEIPT_WAIT_MS: i64 = 500;

#[async_trait]
impl<D: Db> SandboxStore for SqlStore<D> {
    async fn sandbox_deliver(&self, m: &NewSandboxMessage) -> Result<()> {
        // A resubmission (after a worker died) re-arms the receipt but adds no second copy.
        sql::<D>(
            "INSERT INTO sandbox_messages (message_id, tenant_id, to_number, sender, body, \
               received_at, receipt_status, receipt_due) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (message_id) \
             DO UPDATE SET receipt_done = FALSE, receipt_due = excluded.receipt_due",
        )
        .bind(m.message_id.as_str())
        .bind(m.tenant_id.as_str())
        .bind(&m.to)
        .bind(&m.from)
        .bind(&m.body)
        .bind(m.received_at.millis())
        .bind(m.receipt.as_str())
        .bind(m.receipt_due.millis())
        .written(self)
        .await?;
        Ok(())
    }

    async fn sandbox_inbox(
        &self,
        tenant_id: &TenantId,
        to: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<SandboxMessage>> {
        let text = format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandbox_messages \
             WHERE tenant_id = $1 AND ({} IS NULL OR to_number = $2) AND received_at >= $3 \
               AND body IS NOT NULL \
             ORDER BY received_at DESC, message_id DESC LIMIT 100",
            D::text(2),
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(to)
            .bind(since.millis())
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn apply_sandbox_receipts(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let probe = || {
            let due = format!(
                "SELECT 1 FROM sandbox_messages WHERE {} LIMIT 1",
                D::SANDBOX_DUE
            );
            sql::<D>(AssertSqlSafe(due)).bind(now.millis())
        };
        if self.nothing_due(probe).await? {
            return Ok(0);
        }
        let mut tx = self.pipeline_begin().await?;
        let due = D::take_sandbox_receipts(&mut tx, now, limit).await?;
        let taken = due.len() as u64;
        if !due.is_empty() {
            let status: HashMap<MessageId, String> = due.into_iter().collect();
            let text = format!(
                "SELECT carrier, carrier_message_id, message_id FROM message_parts \
                 WHERE message_id {}",
                D::json_keys(1, "mid"),
            );
            let ids = status.keys().map(|id| json!({"mid": id})).collect();
            let parts: Vec<(String, String, MessageId)> = sql::<D>(AssertSqlSafe(text))
                .unprepared()
                .bind(json_param(ids))
                .fetch_all(&mut tx)
                .await?;
            // A receipt due before its submission is recorded (the worker is
            // retrying that write, say) waits for it, as a carrier's would;
            // `sent` too: the record may have committed since the parts were read.
            let early: Vec<serde_json::Value> = status
                .keys()
                .filter(|id| !parts.iter().any(|(_, _, p)| p == *id))
                .map(|id| json!({"mid": id}))
                .collect();
            if !early.is_empty() {
                let text = format!(
                    "UPDATE sandbox_messages SET receipt_done = FALSE, receipt_due = $2 \
                     WHERE message_id {} AND EXISTS (SELECT 1 FROM messages m \
                       WHERE m.id = sandbox_messages.message_id AND m.status IN ('queued', 'sent'))",
                    D::json_keys(1, "mid"),
                );
                sql::<D>(AssertSqlSafe(text))
                    .unprepared()
                    .bind(json_param(early))
                    .bind(now.plus_ms(EARLY_RECEIPT_WAIT_MS).millis())
                    .execute(&mut tx)
                    .await?;
            }
            let matched = parts
                .into_iter()
                .map(|(carrier, cid, id)| (carrier, cid, status[&id].clone(), None))
                .collect();
            apply_to_parts::<D>(&mut tx, matched, now).await?;
        }
        tx.commit().await?;
        Ok(taken)
    }
}
