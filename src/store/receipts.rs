//! Carriers' final receipts, applied to message parts; a message whose parts
//! have all ended takes its final status.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::outbox::{MessageChange, queue_message_webhooks};
use super::rows::history_append;
use super::sql::{Db, json_param, sql};
use super::{CarrierReceipt, ReceiptStore, Result, SqlStore, StoreError};
use crate::domain::ids::{MessageId, TenantId, id_floor};
use crate::domain::message::{MessageStatus, PartEnd, Timestamp, final_status};

/// A receipt to apply: (carrier, carrier message id, status, error).
pub(super) type Matched = (String, String, String, Option<String>);

#[async_trait]
impl<D: Db> ReceiptStore for SqlStore<D> {
    async fn record_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<bool> {
        let Some(now) = receipts.iter().map(|r| r.received_at).max() else {
            return Ok(false);
        };
        let mut tx = self.pipeline_begin().await?;
        let all = receipts
            .iter()
            .map(|r| {
                let status = r.status.as_str().to_string();
                (
                    r.carrier.clone(),
                    r.carrier_message_id.clone(),
                    status,
                    r.error.clone(),
                )
            })
            .collect();
        let applied = apply_to_parts::<D>(&mut tx, all, now).await?;
        let waiting: Vec<&CarrierReceipt> = receipts
            .iter()
            .filter(|r| !applied.contains(&(r.carrier.clone(), r.carrier_message_id.clone())))
            .collect();
        keep_receipts::<D>(&mut tx, &waiting).await?;
        tx.commit().await?;
        Ok(!waiting.is_empty())
    }

    async fn keep_carrier_receipts(&self, receipts: &[CarrierReceipt]) -> Result<()> {
        let all: Vec<&CarrierReceipt> = receipts.iter().collect();
        let mut w = self.pipeline_write().await?;
        keep_receipts::<D>(&mut w, &all).await?;
        w.commit().await
    }

    /// Takes up to `limit` stored receipts whose part exists (each once, even
    /// with other appliers at work) and applies them.
    async fn apply_carrier_receipts(&self, now: Timestamp, limit: u32) -> Result<u64> {
        const MATCHED: &str = "FROM carrier_receipts r JOIN message_parts p \
            ON p.carrier = r.carrier AND p.carrier_message_id = r.carrier_message_id";
        if self
            .nothing_due(|| sql::<D>(AssertSqlSafe(format!("SELECT 1 {MATCHED} LIMIT 1"))))
            .await?
        {
            return Ok(0);
        }
        let mut tx = self.pipeline_begin().await?;
        let text = format!(
            "DELETE FROM carrier_receipts WHERE id IN \
               (SELECT r.id {MATCHED} ORDER BY r.id LIMIT $1{}) \
             RETURNING carrier, carrier_message_id, status, error",
            D::CLAIM_RECEIPTS,
        );
        let matched: Vec<Matched> = sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(i64::from(limit))
            .fetch_all(&mut tx)
            .await?;
        if matched.is_empty() {
            return Ok(0);
        }
        let taken = matched.len() as u64;
        apply_to_parts::<D>(&mut tx, matched, now).await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn expire_unconfirmed(
        &self,
        accepted_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<u64> {
        let mut tx = self.pipeline_begin().await?;
        // By message id, which sorts by acceptance time: only the parts of old
        // messages are looked at, and parts that ended are cleaned every minute.
        let waiting: Vec<(String, String)> = sql::<D>(
            "SELECT carrier, carrier_message_id FROM message_parts \
             WHERE message_id < $1 AND status IS NULL ORDER BY message_id LIMIT $2",
        )
        .bind(id_floor(MessageId::PREFIX, accepted_before.millis()))
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let matched = waiting
            .into_iter()
            .map(|(car, cid)| {
                let st = MessageStatus::Expired.as_str().to_string();
                (car, cid, st, Some(NO_RECEIPT.to_string()))
            })
            .collect();
        let ended = apply_to_parts::<D>(&mut tx, matched, now).await?;
        tx.commit().await?;
        Ok(ended.len() as u64)
    }
}

/// The error of a part whose final receipt never came.
pub const NO_RECEIPT: &str = "no_receipt";

async fn keep_receipts<D: Db>(
    conn: &mut D::Connection,
    receipts: &[&CarrierReceipt],
) -> Result<()> {
    if receipts.is_empty() {
        return Ok(());
    }
    let rows = receipts
        .iter()
        .map(|r| {
            json!({"car": r.carrier, "cid": r.carrier_message_id, "st": r.status.as_str(),
                   "err": r.error, "at": r.received_at.millis()})
        })
        .collect();
    let text = format!(
        "INSERT INTO carrier_receipts (carrier, carrier_message_id, status, error, received_at) \
         SELECT u.car, u.cid, u.st, u.err, u.at FROM {}",
        D::json_rows(
            1,
            &[
                ("car", "TEXT"),
                ("cid", "TEXT"),
                ("st", "TEXT"),
                ("err", "TEXT"),
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

/// Applies receipts to their parts, set-wide, and ends the messages whose
/// parts have all ended (`final_status`). Returns the (carrier, id) of the
/// parts it ended. The touched messages are locked (where the backend can) in
/// id order, so that two appliers ending the last two parts of one message see
/// each other's part, and never wait on each other in a cycle.
pub(super) async fn apply_to_parts<D: Db>(
    conn: &mut D::Connection,
    mut matched: Vec<Matched>,
    now: Timestamp,
) -> Result<HashSet<(String, String)>> {
    // One receipt per part, in one order.
    matched.sort();
    matched.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    // One statement per (carrier, status, error): usually one or two. Each
    // looks its parts up by key, a plan no table size or statistics can turn
    // into a scan (a join with the JSON table could: seen here).
    let mut groups: BTreeMap<(&str, &str, Option<&str>), Vec<serde_json::Value>> = BTreeMap::new();
    for (car, cid, st, err) in &matched {
        groups
            .entry((car, st, err.as_deref()))
            .or_default()
            .push(json!({"cid": cid}));
    }
    let text = format!(
        "UPDATE message_parts SET status = $2, error = $3 \
         WHERE carrier = $4 AND carrier_message_id {} AND status IS NULL \
         RETURNING carrier, carrier_message_id, message_id",
        D::json_keys(1, "cid"),
    );
    let mut ended: Vec<(String, String, MessageId)> = Vec::with_capacity(matched.len());
    for ((car, st, err), cids) in groups {
        let rows: Vec<(String, String, MessageId)> = sql::<D>(AssertSqlSafe(text.clone()))
            .unprepared()
            .bind(json_param(cids))
            .bind(st)
            .bind(err)
            .bind(car)
            .fetch_all(conn)
            .await?;
        ended.extend(rows);
    }
    let mut touched: Vec<MessageId> = ended.iter().map(|(_, _, id)| id.clone()).collect();
    let ended = ended.into_iter().map(|(car, cid, _)| (car, cid)).collect();
    touched.sort();
    touched.dedup();
    if touched.is_empty() {
        return Ok(ended);
    }
    end_messages::<D>(conn, &touched, now).await?;
    Ok(ended)
}

/// Gives each of these sent messages whose parts have all ended its final
/// status, with its history and webhooks.
async fn end_messages<D: Db>(
    conn: &mut D::Connection,
    ids: &[MessageId],
    now: Timestamp,
) -> Result<()> {
    let keys = json_param(ids.iter().map(|id| json!({"mid": id})).collect());
    // The messages locked in id order, where the backend locks rows (SQLite's
    // transaction holds the file's one write lock already).
    if !D::LOCK.is_empty() {
        let text = format!(
            "SELECT id FROM messages WHERE id {} ORDER BY id{}",
            D::json_keys(1, "mid"),
            D::LOCK
        );
        sql::<D>(AssertSqlSafe(text))
            .unprepared()
            .bind(&keys)
            .execute(conn)
            .await?;
    }
    let text = format!(
        "SELECT message_id, status, error FROM message_parts WHERE message_id {} \
         ORDER BY message_id, part",
        D::json_keys(1, "mid"),
    );
    let parts: Vec<(MessageId, Option<String>, Option<String>)> = sql::<D>(AssertSqlSafe(text))
        .unprepared()
        .bind(&keys)
        .fetch_all(conn)
        .await?;
    let mut by_message: BTreeMap<&MessageId, Vec<PartEnd>> = BTreeMap::new();
    for (id, status, error) in &parts {
        let status = match status {
            None => None,
            Some(s) => Some(
                MessageStatus::parse(s).ok_or_else(|| StoreError::Corrupt("part status".into()))?,
            ),
        };
        by_message
            .entry(id)
            .or_default()
            .push((status, error.clone()));
    }
    let rows: Vec<serde_json::Value> = by_message
        .iter()
        .filter_map(|(id, parts)| {
            let (status, error) = final_status(parts)?;
            Some(json!({"mid": id, "st": status.as_str(), "err": error}))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let text = format!(
        "UPDATE messages SET status = u.st, updated_at = $2, \
           error_code = COALESCE(u.err, error_code), {} \
         FROM {} WHERE id {} AND id = u.mid AND status = 'sent' RETURNING id, tenant_id, status",
        history_append("u.st", "$2"),
        D::json_rows(1, &[("mid", "TEXT"), ("st", "TEXT"), ("err", "TEXT")]),
        D::json_keys(1, "mid"),
    );
    let changed: Vec<(MessageId, TenantId, String)> = sql::<D>(AssertSqlSafe(text))
        .unprepared()
        .bind(json_param(rows))
        .bind(now.millis())
        .fetch_all(conn)
        .await?;
    let changes = changed
        .into_iter()
        .map(|(id, tenant_id, status)| {
            Ok(MessageChange {
                id,
                tenant_id,
                status: MessageStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt("message status".into()))?,
                at: now,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    queue_message_webhooks::<D>(conn, &changes).await
}
