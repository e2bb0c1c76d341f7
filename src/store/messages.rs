//! Messages and their parts, from queued to sent. (Receipts end them: `receipts.rs`.)

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::idempotency::drop_key;
use super::ledger::{charge_messages, refund_messages};
use super::outbox::{MessageChange, queue_message_webhooks};
use super::rows::{CLAIMED_COLUMNS, MESSAGE_COLUMNS, history_append};
use super::sql::{Db, find_owned, json_param, sql};
use super::{
    Claim, ClaimedMessage, CreateOutcome, Finish, MessageFilter, MessageStore, NewMessage,
    PendingMessage, Result, SqlStore, SubmitResult,
};
use crate::domain::ids::{MessageId, TenantId};
use crate::domain::message::{Message, MessageStatus, PARTLY_SENT, Timestamp};

#[async_trait]
impl<D: Db> MessageStore for SqlStore<D> {
    /// Keys first (a repeat writes nothing), then charges (what would pass a
    /// cap is refused, its key given back), then the messages.
    async fn create_messages(&self, batch: &[PendingMessage]) -> Result<Vec<CreateOutcome>> {
        let all: Vec<&NewMessage> = batch.iter().map(|p| &p.message).collect();
        let created = || Ok(vec![CreateOutcome::Created; batch.len()]);
        if batch.iter().all(|p| p.idem.is_none()) {
            if all.iter().all(|m| m.price.0 == 0) {
                let mut w = self.write().await?;
                D::insert_messages(&mut w, &all).await?;
                w.commit().await?;
                return created();
            }
            // The common live batch: one tenant, one month, no keys.
            let (first, month) = (all[0], all[0].created_at.month());
            let one = |m: &&NewMessage| {
                (&m.tenant_id, m.cap) == (&first.tenant_id, first.cap)
                    && m.created_at.month() == month
            };
            if all.iter().all(one) {
                let mut w = self.write().await?;
                let inserted = D::insert_charged(&mut w, &all).await?;
                w.commit().await?;
                if inserted {
                    return created();
                }
            }
        }
        let mut tx = self.begin().await?;
        let keyed: Vec<_> = batch
            .iter()
            .map(|p| (&p.message, p.idem.as_ref()))
            .collect();
        let taken = D::take_keys(&mut tx, &keyed).await?;
        let fresh: Vec<usize> = (0..batch.len()).filter(|&i| taken[i].is_none()).collect();
        let to_charge: Vec<&NewMessage> = fresh.iter().map(|&i| all[i]).collect();
        let charged = charge_messages::<D>(&mut tx, &to_charge).await?;
        let mut outcomes: Vec<CreateOutcome> = taken
            .into_iter()
            .map(|t| t.map_or(CreateOutcome::Created, CreateOutcome::Existing))
            .collect();
        let mut new = Vec::with_capacity(fresh.len());
        for (&i, charged) in fresh.iter().zip(charged) {
            if charged {
                new.push(all[i]);
                continue;
            }
            outcomes[i] = CreateOutcome::OverCap;
            if let Some(idem) = &batch[i].idem {
                drop_key::<D>(&mut tx, &all[i].tenant_id, &idem.key).await?;
            }
        }
        D::insert_messages(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get_message(&self, tenant_id: &TenantId, id: &MessageId) -> Result<Option<Message>> {
        let mut conn = self.conn().await?;
        find_owned::<D, _>(
            &mut conn,
            MESSAGE_COLUMNS,
            "messages",
            tenant_id,
            id.as_str(),
        )
        .await
    }

    async fn list_messages(&self, tenant_id: &TenantId, f: &MessageFilter) -> Result<Vec<Message>> {
        let text = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 \
             AND ({} IS NULL OR status = $2) AND ({} IS NULL OR to_number = $3) \
             AND ({} IS NULL OR id < $4) AND created_at >= $6 AND created_at < $7 \
             ORDER BY id DESC LIMIT $5",
            D::text(2),
            D::text(3),
            D::text(4),
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(f.status.map(MessageStatus::as_str))
            .bind(&f.to)
            .bind(&f.starting_after)
            .bind(i64::from(f.limit))
            .bind(f.since.map_or(i64::MIN, |t| t.millis()))
            .bind(f.until.map_or(i64::MAX, |t| t.millis()))
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn claim_messages(&self, c: &Claim) -> Result<Vec<ClaimedMessage>> {
        const DUE: &str = "FROM messages WHERE status = 'queued' AND next_attempt_at <= $1 \
            AND (lease_until IS NULL OR lease_until <= $1)";
        let probe =
            || sql::<D>(AssertSqlSafe(format!("SELECT 1 {DUE} LIMIT 1"))).bind(c.now.millis());
        if self.nothing_due(probe).await? {
            return Ok(Vec::new());
        }
        let text = format!(
            "UPDATE messages SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id {DUE} ORDER BY next_attempt_at LIMIT $4{}) \
             RETURNING {CLAIMED_COLUMNS}",
            D::SKIP_LOCKED,
        );
        let claim = sql::<D>(AssertSqlSafe(text))
            .bind(c.now.millis())
            .bind(c.lease_until.millis())
            .bind(&c.token)
            .bind(i64::from(c.limit));
        let mut w = self.claim_write().await?;
        let claimed = claim.fetch_all(&mut w).await?;
        w.commit().await?;
        Ok(claimed)
    }

    /// In one transaction (one flush for many); the common case, sent, in a
    /// few set-wide statements.
    async fn finish_submits(&self, items: &[Finish]) -> Result<Vec<bool>> {
        let mut tx = self.pipeline_begin().await?;
        let (sent, other): (Vec<&Finish>, Vec<&Finish>) = items
            .iter()
            .partition(|f| matches!(f.result, SubmitResult::Sent { .. }));
        let done = finish_sent::<D>(&mut tx, &sent).await?;
        let mut others: HashMap<&MessageId, bool> = HashMap::new();
        let mut refunds = Vec::new();
        for f in other {
            let ended = finish_other::<D>(&mut tx, f).await?;
            // No carrier took it: what it was charged is given back.
            let unsent = match &f.result {
                SubmitResult::Failed { code, .. } => code != PARTLY_SENT,
                SubmitResult::Expired => true,
                _ => false,
            };
            if ended && unsent {
                refunds.push((&f.id, f.now));
            }
            others.insert(&f.id, ended);
        }
        refund_messages::<D>(&mut tx, &refunds).await?;
        tx.commit().await?;
        Ok(items
            .iter()
            .map(|f| done.contains(&f.id) || others.get(&f.id).copied().unwrap_or(false))
            .collect())
    }

    async fn release_leases(&self, token: &str) -> Result<u64> {
        sql::<D>(
            "UPDATE messages SET lease_until = NULL, lease_token = NULL \
             WHERE lease_token = $1 AND status = 'queued'",
        )
        .bind(token)
        .written(self)
        .await
    }
}

/// sent: status, history, parts and webhooks for many messages at once.
/// Returns the ids whose lease still held.
async fn finish_sent<D: Db>(
    conn: &mut D::Connection,
    items: &[&Finish],
) -> Result<HashSet<MessageId>> {
    if items.is_empty() {
        return Ok(HashSet::new());
    }
    let mut rows = Vec::with_capacity(items.len());
    let mut parts = Vec::new();
    for f in items {
        let SubmitResult::Sent {
            carrier,
            carrier_message_ids,
        } = &f.result
        else {
            continue;
        };
        rows.push(json!({
            "mid": f.id, "tok": f.token, "car": carrier,
            "cid": carrier_message_ids.first(), "at": f.now.millis(),
        }));
        for (i, cid) in carrier_message_ids.iter().enumerate() {
            parts.push(json!({"carrier": carrier, "cid": cid, "id": f.id, "part": i + 1}));
        }
    }
    let text = format!(
        // SQLite's RETURNING takes only the updated table's columns, unqualified:
        // `u`'s names differ from theirs.
        // The rows are found by key. Our lease token alone says a message is
        // still queued and ours: every way out of queued clears it. A
        // `status = 'queued'` here would match messages_due's predicate, and
        // with statistics from a shorter queue PostgreSQL then hash-joins the
        // whole queue for every batch (seen: half the batches of a 10 s run).
        "UPDATE messages SET status = 'sent', carrier = u.car, carrier_message_id = u.cid, \
           error_code = NULL, error_message = NULL, body = NULL, lease_until = NULL, \
           lease_token = NULL, updated_at = u.at, {} \
         FROM {} WHERE id {} AND id = u.mid AND lease_token = u.tok \
         RETURNING id, tenant_id, updated_at",
        history_append("'sent'", "u.at"),
        D::json_rows(
            1,
            &[
                ("mid", "TEXT"),
                ("tok", "TEXT"),
                ("car", "TEXT"),
                ("cid", "TEXT"),
                ("at", "BIGINT")
            ]
        ),
        D::json_keys(1, "mid"),
    );
    let updated: Vec<(MessageId, TenantId, i64)> = sql::<D>(AssertSqlSafe(text))
        .unprepared()
        .bind(json_param(rows))
        .fetch_all(conn)
        .await?;
    let done: HashSet<MessageId> = updated.iter().map(|(id, _, _)| id.clone()).collect();
    if done.is_empty() {
        return Ok(done);
    }
    parts.retain(|p| {
        p["id"]
            .as_str()
            .is_some_and(|id| done.contains(&MessageId::from(id.to_string())))
    });
    // One row per carrier id: a carrier that repeats an id within a batch
    // (one id for every part, say) must not fail the whole batch; the last wins.
    let mut seen = HashSet::new();
    parts.reverse();
    parts.retain(|p| seen.insert((p["carrier"].to_string(), p["cid"].to_string())));
    // A carrier may reuse an id long after: the newest message takes it.
    let text = format!(
        "INSERT INTO message_parts (carrier, carrier_message_id, message_id, part) \
         SELECT u.carrier, u.cid, u.id, u.part FROM {} WHERE TRUE \
         ON CONFLICT (carrier, carrier_message_id) \
         DO UPDATE SET message_id = excluded.message_id, part = excluded.part, status = NULL, \
           error = NULL",
        D::json_rows(
            1,
            &[
                ("carrier", "TEXT"),
                ("cid", "TEXT"),
                ("id", "TEXT"),
                ("part", "BIGINT")
            ]
        ),
    );
    sql::<D>(AssertSqlSafe(text))
        .bind(json_param(parts))
        .execute(conn)
        .await?;
    let changes: Vec<MessageChange> = updated
        .into_iter()
        .map(|(id, tenant_id, at)| MessageChange {
            id,
            tenant_id,
            status: MessageStatus::Sent,
            at: Timestamp(at),
        })
        .collect();
    queue_message_webhooks::<D>(conn, &changes).await?;
    Ok(done)
}

/// Any outcome but sent (those go through `finish_sent`).
async fn finish_other<D: Db>(conn: &mut D::Connection, f: &Finish) -> Result<bool> {
    match &f.result {
        SubmitResult::Retry { at, error } => retry_later::<D>(conn, f, *at, error).await,
        SubmitResult::Failed { code, message } => {
            end_unsent::<D>(conn, f, MessageStatus::Failed, code, message).await
        }
        SubmitResult::Expired => {
            let why = "no carrier accepted the message within its validity period";
            end_unsent::<D>(conn, f, MessageStatus::Expired, "expired", why).await
        }
        SubmitResult::Sent { .. } => unreachable!("sent outcomes go through finish_sent"),
    }
}

/// A transient failure: try again at `at`, if `token` still holds the lease.
async fn retry_later<D: Db>(
    conn: &mut D::Connection,
    f: &Finish,
    at: Timestamp,
    error: &str,
) -> Result<bool> {
    let done = sql::<D>(
        "UPDATE messages SET next_attempt_at = $3, error_message = $4, lease_until = NULL, \
         lease_token = NULL, updated_at = $5 WHERE id = $1 AND lease_token = $2 AND status = 'queued'",
    )
    .bind(f.id.as_str())
    .bind(&f.token)
    .bind(at.millis())
    .bind(error)
    .bind(f.now.millis())
    .execute(conn)
    .await?;
    Ok(done == 1)
}

/// Ends a submission that no carrier took (failed, expired) if `token` still
/// holds the lease: the status, its history and its webhooks.
async fn end_unsent<D: Db>(
    conn: &mut D::Connection,
    f: &Finish,
    status: MessageStatus,
    code: &str,
    message: &str,
) -> Result<bool> {
    let text = format!(
        "UPDATE messages SET status = $3, error_code = $4, error_message = $5, body = NULL, \
           lease_until = NULL, lease_token = NULL, updated_at = $6, {} \
         WHERE id = $1 AND lease_token = $2 AND status = 'queued' RETURNING tenant_id",
        history_append("$3", "$6"),
    );
    let tenant: Option<TenantId> = sql::<D>(AssertSqlSafe(text))
        .bind(f.id.as_str())
        .bind(&f.token)
        .bind(status.as_str())
        .bind(code)
        .bind(message)
        .bind(f.now.millis())
        .fetch_optional(conn)
        .await?;
    let Some(tenant) = tenant else {
        return Ok(false);
    };
    let change = MessageChange {
        id: f.id.clone(),
        tenant_id: tenant,
        status,
        at: f.now,
    };
    queue_message_webhooks::<D>(conn, &[change]).await?;
    Ok(true)
}
