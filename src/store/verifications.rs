//! OTP verifications. Codes exist here only as their keyed hash.

use std::collections::HashSet;

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::idempotency::take_key;
use super::ledger::charge_messages;
use super::outbox::verification_approved;
use super::rows::VERIFICATION_COLUMNS;
use super::sql::{Db, find_owned, json_param, sql};
use super::{
    CheckedPair, CreateOutcome, IdempotencyRecord, NewMessage, Page, Resend, Resent, Result,
    SqlStore, VerificationStore,
};
use crate::domain::ids::{TenantId, VerificationId};
use crate::domain::message::Timestamp;
use crate::domain::verification::{StoredVerification, VerificationStatus};

#[async_trait]
impl<D: Db> VerificationStore for SqlStore<D> {
    async fn create_verification(
        &self,
        v: &StoredVerification,
        msg: &NewMessage,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        let mut tx = self.begin().await?;
        // Starts for one number take turns: each cancels the one before it,
        // instead of racing into the one-pending index (or a deadlock).
        D::serialize_starts(&mut tx, &v.tenant_id, &v.to).await?;
        if let Some(used) = take_key::<D>(&mut tx, &v.tenant_id, idem, v.created_at).await? {
            return Ok(used);
        }
        if !charge_messages::<D>(&mut tx, &[msg]).await?[0] {
            return Ok(CreateOutcome::OverCap); // dropping the transaction gives the key back
        }
        // At most one live code per number.
        sql::<D>(
            "UPDATE verifications SET status = 'canceled', updated_at = $3 \
             WHERE tenant_id = $1 AND to_number = $2 AND status = 'pending'",
        )
        .bind(v.tenant_id.as_str())
        .bind(&v.to)
        .bind(v.created_at.millis())
        .execute(&mut tx)
        .await?;
        D::insert_messages(&mut tx, &[msg]).await?;
        insert::<D>(&mut tx, v).await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
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
            return write_checked::<D>(&mut *self.conn().await?, changed).await;
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
        .execute(&mut *self.conn().await?)
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

async fn insert<D: Db>(conn: &mut D::Connection, v: &StoredVerification) -> Result<()> {
    sql::<D>(
        "INSERT INTO verifications (id, tenant_id, mode, to_number, status, code_hash, \
           code_length, max_attempts, attempts, sends, ttl_seconds, brand, template, app_domain, \
           message_id, last_sent_at, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, $19)",
    )
    .bind(v.id.as_str())
    .bind(v.tenant_id.as_str())
    .bind(v.mode.as_str())
    .bind(&v.to)
    .bind(v.status.as_str())
    .bind(&v.code_hash)
    .bind(i64::from(v.code_length))
    .bind(i64::from(v.max_attempts))
    .bind(i64::from(v.attempts))
    .bind(i64::from(v.sends))
    .bind(i64::from(v.ttl_seconds))
    .bind(&v.brand)
    .bind(&v.template)
    .bind(&v.app_domain)
    .bind(v.message_id.as_str())
    .bind(v.last_sent_at.millis())
    .bind(v.expires_at.millis())
    .bind(v.created_at.millis())
    .bind(v.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
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
