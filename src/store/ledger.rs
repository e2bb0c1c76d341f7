//! The billing ledger: charges written in the transaction of what they pay
//! for, refunds in the transaction of the change that earns them, and each
//! tenant's month total beside them, which is what the spend cap reads.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::sql::{Db, json_param, sql};
use super::{LedgerStore, NewMessage, Result, SqlStore, UsageRow};
use crate::domain::ids::{MessageId, NumberId, TenantId};
use crate::domain::message::{Pence, Timestamp};

/// Charges new messages to their tenants' months, in order, each only if it
/// fits under its cap; answers which were charged (those not may not be
/// written). Unpriced messages (test keys) pass without an entry. Each month
/// total is locked once, tenants in one order (no two groups deadlock).
pub(super) async fn charge_messages<D: Db>(
    conn: &mut D::Connection,
    messages: &[&NewMessage],
) -> Result<Vec<bool>> {
    let mut charged = vec![true; messages.len()];
    let mut groups: BTreeMap<(&TenantId, String), Vec<usize>> = BTreeMap::new();
    for (i, m) in messages.iter().enumerate() {
        if m.price.0 > 0 {
            groups
                .entry((&m.tenant_id, m.created_at.month()))
                .or_default()
                .push(i);
        }
    }
    let mut entries = Vec::new();
    for ((tenant, month), items) in groups {
        let mut total = lock_total::<D>(conn, tenant, &month).await?;
        let before = total;
        for i in items {
            let m = messages[i];
            if m.cap.is_some_and(|cap| total + m.price.0 > cap.0) {
                charged[i] = false;
                continue;
            }
            total += m.price.0;
            entries.push(json!({
                "t": tenant.as_str(), "mo": month, "at": m.created_at.millis(), "k": "sms",
                "p": m.price.0, "s": m.segments, "m": m.id.as_str(),
            }));
        }
        add_to_total::<D>(conn, tenant, &month, total - before).await?;
    }
    insert_entries::<D>(conn, entries).await?;
    Ok(charged)
}

/// Charges a number's monthly fee for the month starting `at` (a rental's start
/// or renewal date), under `cap` if one is given; false if it would pass the
/// cap. Once per rental and date: a second charge for one date is a conflict.
pub(super) async fn charge_fee<D: Db>(
    conn: &mut D::Connection,
    tenant: &TenantId,
    rental: &NumberId,
    price: Pence,
    at: Timestamp,
    cap: Option<Pence>,
) -> Result<bool> {
    if price.0 == 0 {
        return Ok(true);
    }
    let month = at.month();
    let total = lock_total::<D>(conn, tenant, &month).await?;
    if cap.is_some_and(|cap| total + price.0 > cap.0) {
        return Ok(false);
    }
    add_to_total::<D>(conn, tenant, &month, price.0).await?;
    let entry = json!({
        "t": tenant.as_str(), "mo": month, "at": at.millis(), "k": "number_fee",
        "p": price.0, "s": 0, "n": rental.as_str(),
    });
    insert_entries::<D>(conn, vec![entry]).await?;
    Ok(true)
}

/// A message's charge: (message, tenant, month, pence, segments).
type Charge = (MessageId, TenantId, String, i64, i64);

/// Gives back what these messages were charged (none reached a carrier), each
/// in the month it was charged in; nothing for one not charged or refunded
/// already. Month totals are locked in one order, as `charge_messages` does,
/// so the two never wait on each other in a cycle.
pub(super) async fn refund_messages<D: Db>(
    conn: &mut D::Connection,
    ended: &[(&MessageId, Timestamp)],
) -> Result<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let text = format!(
        "SELECT message_id, tenant_id, month, pence, segments FROM ledger \
         WHERE kind = 'sms' AND message_id {} AND NOT EXISTS \
           (SELECT 1 FROM ledger r WHERE r.kind = 'refund' AND r.message_id = ledger.message_id)",
        D::json_keys(1, "m")
    );
    let keys = ended
        .iter()
        .map(|(id, _)| json!({"m": id.as_str()}))
        .collect();
    let charges: Vec<Charge> = sql::<D>(AssertSqlSafe(text))
        .bind(json_param(keys))
        .fetch_all(conn)
        .await?;
    let at: std::collections::HashMap<&MessageId, Timestamp> = ended.iter().copied().collect();
    let mut groups: BTreeMap<(&TenantId, &str), Vec<&Charge>> = BTreeMap::new();
    for c in &charges {
        groups.entry((&c.1, c.2.as_str())).or_default().push(c);
    }
    let mut entries = Vec::new();
    for ((tenant, month), items) in groups {
        lock_total::<D>(conn, tenant, month).await?;
        add_to_total::<D>(conn, tenant, month, -items.iter().map(|c| c.3).sum::<i64>()).await?;
        for (id, _, _, pence, segments) in items {
            entries.push(json!({
                "t": tenant.as_str(), "mo": month, "at": at[id].millis(), "k": "refund",
                "p": -pence, "s": -segments, "m": id.as_str(),
            }));
        }
    }
    insert_entries::<D>(conn, entries).await
}

/// The month's total, its row locked (where the backend can) until the transaction ends.
async fn lock_total<D: Db>(
    conn: &mut D::Connection,
    tenant: &TenantId,
    month: &str,
) -> Result<i64> {
    // One statement either way: a new month's row is created at 0, an
    // existing one is locked (on PostgreSQL, as FOR UPDATE would) and read.
    sql::<D>(
        "INSERT INTO ledger_totals (tenant_id, month, pence) VALUES ($1, $2, 0) \
         ON CONFLICT (tenant_id, month) DO UPDATE SET pence = ledger_totals.pence \
         RETURNING pence",
    )
    .bind(tenant.as_str())
    .bind(month)
    .fetch_one(conn)
    .await
}

async fn add_to_total<D: Db>(
    conn: &mut D::Connection,
    tenant: &TenantId,
    month: &str,
    pence: i64,
) -> Result<()> {
    if pence != 0 {
        sql::<D>("UPDATE ledger_totals SET pence = pence + $3 WHERE tenant_id = $1 AND month = $2")
            .bind(tenant.as_str())
            .bind(month)
            .bind(pence)
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn insert_entries<D: Db>(
    conn: &mut D::Connection,
    entries: Vec<serde_json::Value>,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let text = format!(
        "INSERT INTO ledger (tenant_id, month, at, kind, pence, segments, message_id, number_id) \
         SELECT u.t, u.mo, u.at, u.k, u.p, u.s, u.m, u.n FROM {}",
        D::json_rows(
            1,
            &[
                ("t", "TEXT"),
                ("mo", "TEXT"),
                ("at", "BIGINT"),
                ("k", "TEXT"),
                ("p", "BIGINT"),
                ("s", "BIGINT"),
                ("m", "TEXT"),
                ("n", "TEXT"),
            ]
        ),
    );
    sql::<D>(AssertSqlSafe(text))
        .bind(json_param(entries))
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl<D: Db> LedgerStore for SqlStore<D> {
    async fn usage(&self, tenant_id: &TenantId, month: &str) -> Result<Vec<UsageRow>> {
        let rows: Vec<(i64, String, i64, i64, i64)> = sql::<D>(
            // Entries for messages are counted (not the opening balance a migration wrote).
            "SELECT at / 86400000, kind, COUNT(message_id), CAST(SUM(segments) AS BIGINT), \
               CAST(SUM(pence) AS BIGINT) FROM ledger \
             WHERE tenant_id = $1 AND month = $2 GROUP BY at / 86400000, kind \
             ORDER BY at / 86400000, kind",
        )
        .bind(tenant_id.as_str())
        .bind(month)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(day, kind, entries, segments, pence)| UsageRow {
                day,
                kind,
                entries,
                segments,
                pence: Pence(pence),
            })
            .collect())
    }
}
