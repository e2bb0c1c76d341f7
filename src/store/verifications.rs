//! OTP verifications. Codes exist here only as their keyed hash.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::idempotency::drop_key;
use super::ledger::charge_messages;
use super::limits::decide_limits;
use super::outbox::verification_approved;
use super::rows::VERIFICATION_COLUMNS;
use super::sql::{Db, find_owned, json_param, sql};
use super::{
    CheckedPair, CreateOutcome, Limit, NewMessage, Page, PendingStart, Resend, Resent, Result,
    SqlStore, Started, VerificationStore,
};
use crate::domain::ids::{TenantId, VerificationId};
use crate::domain::message::Timestamp;
use crate::domain::verification::{StoredVerification, VerificationStatus};

#[async_trait]
impl<D: Db> VerificationStore for SqlStore<D> {
    async fn create_verifications(
        &self,
        now: Timestamp,
        batch: &[PendingStart],
    ) -> Result<Vec<Started>> {
        let mut tx = self.begin().await?;
        let keyed: Vec<_> = batch
            .iter()
            .map(|p| (&p.message, p.idem.as_ref()))
            .collect();
        let taken = D::take_keys(&mut tx, &keyed).await?;
        let mut outcomes: Vec<Option<Started>> = taken
            .into_iter()
            .map(|t| t.map(|stored| Started::Outcome(CreateOutcome::Existing(stored))))
            .collect();
        // A repeated request is answered as the first was, counted by no limit.
        let fresh_slots: Vec<usize> = (0..batch.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let fresh: Vec<&PendingStart> = fresh_slots.iter().map(|&i| &batch[i]).collect();
        let numbers: Vec<_> = fresh
            .iter()
            .map(|p| (&p.verification.tenant_id, p.verification.to.as_str()))
            .collect();
        let keys: BTreeSet<&str> = fresh
            .iter()
            .flat_map(|p| p.limits.iter().map(|l| l.key.as_str()))
            .collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        // Starts for one number take turns: each cancels the one before it,
        // instead of racing into the one-pending index (or a deadlock).
        let tats = D::lock_starts(&mut tx, &numbers, &keys).await?;
        let limits: Vec<&[Limit]> = fresh.iter().map(|p| p.limits.as_slice()).collect();
        let (decided, tats) = decide_limits(tats, now, &limits);
        let mut admitted = Vec::with_capacity(fresh.len());
        for (&i, refused) in fresh_slots.iter().zip(decided) {
            match refused {
                None => admitted.push(i),
                Some((limit, wait_ms)) => outcomes[i] = Some(Started::Limited { limit, wait_ms }),
            }
        }
        let messages: Vec<&NewMessage> = admitted.iter().map(|&i| &batch[i].message).collect();
        let charged = charge_messages::<D>(&mut tx, &messages).await?;
        let mut new = Vec::with_capacity(admitted.len());
        for (&i, charged) in admitted.iter().zip(charged) {
            outcomes[i] = Some(Started::Outcome(if charged {
                new.push(i);
                CreateOutcome::Created
            } else {
                CreateOutcome::OverCap
            }));
        }
        // Refused after their keys were taken: the keys are given back.
        for (p, outcome) in batch.iter().zip(&outcomes) {
            let refused = matches!(
                outcome,
                Some(Started::Limited { .. } | Started::Outcome(CreateOutcome::OverCap))
            );
            if let (true, Some(idem)) = (refused, &p.idem) {
                drop_key::<D>(&mut tx, &p.verification.tenant_id, &idem.key).await?;
            }
        }
        let messages: Vec<&NewMessage> = new.iter().map(|&i| &batch[i].message).collect();
        let started: Vec<&StoredVerification> =
            new.iter().map(|&i| &batch[i].verification).collect();
        D::write_starts(&mut tx, &tats, &messages, &started).await?;
        tx.commit().await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every start was decided"))
            .collect())
    }

    async fn get_verification(
        &self,
        tenant_id: &TenantId,
        id: &VerificationId,
    ) -> Result<Option<StoredVerification>> {
        let mut conn = self.conn().await?;
        let (columns, table) = (VERIFICATION_COLUMNS, "verifications");
        find_owned::<D, _>(&mut conn, columns, table, tenant_id, id.as_str()).await
    }

    async fn list_verifications(
        &self,
        tenant_id: &TenantId,
        page: &Page,
    ) -> Result<Vec<StoredVerification>> {
        let text = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE tenant_id = $1 \
             AND ({} IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            D::text(2)
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(&page.starting_after)
            .bind(i64::from(page.limit))
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn get_verifications(&self, ids: &[&VerificationId]) -> Result<Vec<StoredVerification>> {
        let text = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE id {}",
            D::json_keys(1, "vid")
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(json_param(
                ids.iter().map(|id| json!({"vid": id.as_str()})).collect(),
            ))
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn latest_verification(
        &self,
        tenant_id: &TenantId,
        to: &str,
    ) -> Result<Option<StoredVerification>> {
        let text = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE tenant_id = $1 \
               AND to_number = $2 \
             ORDER BY (status = 'pending') DESC, created_at DESC, id DESC LIMIT 1"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(to)
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    /// No BEGIN, lock or COMMIT unless an approval queues a webhook.
    async fn write_checks(&self, changed: &[CheckedPair<'_>]) -> Result<HashSet<VerificationId>> {
        if changed.is_empty() {
            return Ok(HashSet::new());
        }
        let approved = |c: &&CheckedPair| c.now.status == VerificationStatus::Approved;
        if !changed.iter().any(|c| approved(&c)) {
            let mut w = self.write().await?;
            let written = write_checked::<D>(&mut w, changed).await?;
            w.commit().await?;
            return Ok(written);
        }
        let mut tx = self.begin().await?;
        let written = write_checked::<D>(&mut tx, changed).await?;
        for c in changed.iter().filter(approved) {
            if written.contains(&c.now.id) {
                verification_approved::<D>(&mut tx, c.now).await?;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn close_verification(
        &self,
        tenant_id: &TenantId,
        id: &VerificationId,
        status: VerificationStatus,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sql::<D>(
            "UPDATE verifications SET status = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(now.millis())
        .written(self)
        .await?;
        Ok(done == 1)
    }

    async fn resend_verification(&self, r: &Resend, msg: &NewMessage) -> Result<Resent> {
        let mut tx = self.begin().await?;
        if !charge_messages::<D>(&mut tx, &[msg]).await?[0] {
            return Ok(Resent::OverCap);
        }
        D::insert_messages(&mut tx, &[msg]).await?;
        let done = sql::<D>(
            "UPDATE verifications SET code_hash = $3, sends = sends + 1, last_sent_at = $4, \
               expires_at = $5, message_id = $6, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND sends = $7",
        )
        .bind(r.tenant_id.as_str())
        .bind(r.id.as_str())
        .bind(&r.code_hash)
        .bind(r.now.millis())
        .bind(r.expires_at.millis())
        .bind(msg.id.as_str())
        .bind(i64::from(r.sends))
        .execute(&mut tx)
        .await?;
        if done != 1 {
            return Ok(Resent::Stale); // dropping the transaction rolls the message back
        }
        tx.commit().await?;
        Ok(Resent::Sent)
    }
}

/// Writes checked verifications, each only if it is still as read; the ids written.
async fn write_checked<D: Db>(
    conn: &mut D::Connection,
    changed: &[CheckedPair<'_>],
) -> Result<HashSet<VerificationId>> {
    let rows = changed
        .iter()
        .map(|CheckedPair { was, now: v }| {
            json!({
                "vid": v.id, "st": v.status.as_str(), "n": v.attempts, "at": v.updated_at.millis(),
                "wst": was.status.as_str(), "wn": was.attempts, "wh": was.code_hash,
            })
        })
        .collect();
    // The old status is compared with `u.wst`, not a constant 'pending':
    // with one, stale statistics had PostgreSQL scan the whole pending index (seen here).
    let text = format!(
        "UPDATE verifications SET status = u.st, attempts = u.n, updated_at = u.at \
         FROM {} WHERE id {} AND id = u.vid \
           AND status = u.wst AND attempts = u.wn AND code_hash = u.wh \
         RETURNING id",
        D::json_rows(
            1,
            &[
                ("vid", "TEXT"),
                ("st", "TEXT"),
                ("n", "BIGINT"),
                ("at", "BIGINT"),
                ("wst", "TEXT"),
                ("wn", "BIGINT"),
                ("wh", "TEXT"),
            ]
        ),
        D::json_keys(1, "vid"),
    );
    let written: Vec<VerificationId> = sql::<D>(AssertSqlSafe(text))
        .bind(json_param(rows))
        .fetch_all(conn)
        .await?;
    Ok(written.into_iter().collect())
}
