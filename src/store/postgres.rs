//! PostgreSQL: the production backend. Several processes share one database;
//! work is claimed with `FOR UPDATE SKIP LOCKED` so nothing is taken twice.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Executor, Postgres};

use super::idempotency::stored_response;
use super::sql::Db;
use super::{IdempotencyRecord, NewMessage, Result, SqlStore, StoreError, StoredResponse};
use crate::domain::ids::{MessageId, TenantId};
use crate::domain::message::Timestamp;
use crate::domain::verification::StoredVerification;

/// Every file of migrations/postgres, in order (a test checks none is missing).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "otp",
        include_str!("../../migrations/postgres/0002_otp.sql"),
    ),
    (
        3,
        "webhooks",
        include_str!("../../migrations/postgres/0003_webhooks.sql"),
    ),
    (
        4,
        "carriers",
        include_str!("../../migrations/postgres/0004_carriers.sql"),
    ),
    (
        5,
        "drop_messages_carrier_id",
        include_str!("../../migrations/postgres/0005_drop_messages_carrier_id.sql"),
    ),
    (
        6,
        "history_in_messages",
        include_str!("../../migrations/postgres/0006_history_in_messages.sql"),
    ),
    (
        7,
        "drop_hot_foreign_keys",
        include_str!("../../migrations/postgres/0007_drop_hot_foreign_keys.sql"),
    ),
    (
        8,
        "ledger",
        include_str!("../../migrations/postgres/0008_ledger.sql"),
    ),
    (
        9,
        "numbers",
        include_str!("../../migrations/postgres/0009_numbers.sql"),
    ),
    (
        10,
        "inbound",
        include_str!("../../migrations/postgres/0010_inbound.sql"),
    ),
    (
        11,
        "accounts",
        include_str!("../../migrations/postgres/0011_accounts.sql"),
    ),
    (
        12,
        "leaseholders",
        include_str!("../../migrations/postgres/0012_leaseholders.sql"),
    ),
    (
        13,
        "drop_verification_foreign_keys",
        include_str!("../../migrations/postgres/0013_drop_verification_foreign_keys.sql"),
    ),
    (
        14,
        "room_for_updates",
        include_str!("../../migrations/postgres/0014_room_for_updates.sql"),
    ),
    (
        15,
        "drop_messages_tenant_status",
        include_str!("../../migrations/postgres/0015_drop_messages_tenant_status.sql"),
    ),
];

/// How long a request waits for a connection before it is answered 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections for queue claims (`SqlStore::claims`).
const CLAIM_CONNECTIONS: u32 = 3;

/// A pooled connection idle longer than this is checked before use.
const IDLE_PING_SECONDS: u64 = 5;

pub(super) async fn connect(url: &str, max_connections: u32) -> Result<SqlStore<Postgres>> {
    // Safety nets: nothing waits forever on a lock, a transaction left
    // idle (a bug, a stuck client) is ended by the server, not kept with its
    // locks; no statement runs past the API's request timeout.
    let options = PgConnectOptions::from_str(url)?.options([
        ("lock_timeout", "10s"),
        ("statement_timeout", "10s"),
        ("idle_in_transaction_session_timeout", "30s"),
    ]);
    let pool = pool_options(max_connections)
        .connect_with(options.clone())
        .await?;
    // Claims are a few at once (the workers' and the dispatchers' of this
    // process). They commit without waiting for their flush: a claim lost in a
    // database crash leaves its row unclaimed, as it was, and it is claimed
    // again (a lease that outlived its holder would be taken over the same
    // way), so nothing is lost; at worst a message or webhook goes out twice,
    // as after any crash between sending and recording it. Everything a claim
    // leads to (sent, delivered, attempted) is committed with its flush. In
    // the kit (5k messages, 3 interleaved pairs) accepts at 16 clients went
    // from 2090/s to 2256/s and all webhooks arrived in 3.24 s, not 3.45 s.
    let claims = pool_options(CLAIM_CONNECTIONS)
        .connect_with(options.options([("enable_sort", "off"), ("synchronous_commit", "off")]))
        .await?;
    Ok(SqlStore {
        pool,
        claims,
        writer: None,
        waits: Default::default(),
    })
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // All open from the start and kept: a burst does not wait for new
        // connections (a backend forked, its statements prepared again). In
        // the kit, 5k messages at 64 clients: p99 18-20 ms against 21-29 ms
        // and 9-15% more accepted at 16 clients, in two interleaved pairs.
        .min_connections(max_connections)
        // While the database is down, requests are answered 503 within this
        // (sqlx keeps trying to connect until then), not held.
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out: a round trip per query,
        // measured here as the larger part of a busy API's wait. Only a
        // connection idle for a while (the server may have restarted) is pinged.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(IDLE_PING_SECONDS) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Db for Postgres {
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = MIGRATIONS;

    /// On a connection of its own without the statement timeout (the last
    /// `-c` of a setting wins).
    async fn migrate(pool: &PgPool) -> Result<()> {
        let options = (*pool.connect_options())
            .clone()
            .options([("statement_timeout", "0"), ("lock_timeout", "0")]);
        let unlimited = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let done = super::maintenance::migrator(MIGRATIONS)
            .run(&unlimited)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)));
        unlimited.close().await;
        done?;
        Ok(())
    }
    const BEGIN: &'static str = "BEGIN";
    const LOCK: &'static str = " FOR UPDATE";
    const CLAIM_RECEIPTS: &'static str = " FOR UPDATE OF r SKIP LOCKED";
    const LOOK_FIRST: bool = false;
    /// Transactions run side by side, so a large group holds back no one,
    /// and costs less per item: 32 against 256 here took webhooks at 64
    /// connections from 2.49 to 2.80 s, and the CPU from 0.60 to 0.72 ms a message.
    const GROUP_LIMIT: usize = 256;
    const SANDBOX_DUE: &'static str = "NOT receipt_done AND receipt_due <= $1";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    fn executor<'c>(conn: &'c mut PgConnection) -> impl Executor<'c, Database = Postgres> {
        conn
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn json_rows(param: u8, columns: &[(&str, &str)]) -> String {
        let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{n} {t}")).collect();
        format!(
            "json_to_recordset(${param}::json) AS u({})",
            defs.join(", ")
        )
    }

    /// PostgreSQL cannot know how many rows a JSON table has, and with stale
    /// statistics it would rather hash-join a whole table than look keys up.
    fn json_keys(param: u8, column: &str) -> String {
        format!(
            "= ANY(ARRAY(SELECT {column} FROM json_to_recordset(${param}::json) AS k({column} TEXT)))"
        )
    }

    fn text(param: u8) -> String {
        format!("${param}::text")
    }

    async fn insert_messages(conn: &mut PgConnection, batch: &[&NewMessage]) -> Result<()> {
        insert_messages(conn, batch).await
    }

    /// One statement, atomic on its own: one round trip for the common case.
    async fn insert_charged(conn: &mut PgConnection, batch: &[&NewMessage]) -> Result<bool> {
        insert_charged(conn, batch).await
    }

    async fn take_keys(
        conn: &mut PgConnection,
        batch: &[(&NewMessage, Option<&IdempotencyRecord>)],
    ) -> Result<Vec<Option<StoredResponse>>> {
        take_keys(conn, batch).await
    }

    async fn take_sandbox_receipts(
        conn: &mut PgConnection,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(MessageId, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            // By key: as `IN (…)` PostgreSQL hash-joined the whole table to the batch.
            "UPDATE sandbox_messages SET receipt_done = TRUE WHERE message_id = ANY(ARRAY( \
               SELECT message_id FROM sandbox_messages WHERE {} \
                ORDER BY receipt_due LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING message_id, receipt_status",
            Self::SANDBOX_DUE,
        )))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?)
    }

    /// One statement: advisory locks per number, in the order of their hashes,
    /// then the counters in key order (upserted, so that a counter another
    /// transaction has just created is read as it committed it): two
    /// transactions never wait on each other in a cycle.
    async fn lock_starts(
        conn: &mut PgConnection,
        numbers: &[(&TenantId, &str)],
        keys: &[&str],
    ) -> Result<HashMap<String, i64>> {
        let numbers: Vec<String> = numbers
            .iter()
            .map(|(tenant_id, to)| format!("verification:{tenant_id}:{to}"))
            .collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH a AS (SELECT count(pg_advisory_xact_lock(h)::text) AS n FROM ( \
               SELECT DISTINCT hashtextextended(k, 0) AS h FROM UNNEST($1::text[]) AS k ORDER BY h) AS s), \
             l AS (INSERT INTO rate_limits (key, tat) SELECT k, 0 FROM UNNEST($2::text[]) AS k ORDER BY k \
               ON CONFLICT (key) DO UPDATE SET tat = rate_limits.tat RETURNING key, tat) \
             SELECT key, tat FROM l WHERE (SELECT n FROM a) >= 0",
        )
        .bind(numbers)
        .bind(keys)
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// One statement: the counters, the cancellations, then the messages with
    /// the verifications. The inserts wait on the cancellations (their
    /// `count`): the one-pending index is checked as each row goes in, and a
    /// data-modifying `WITH` nothing reads would run last. The pending rows are
    /// locked in id order, the order the code-check writer locks them in (by
    /// its `id = ANY(…)` lookup): the two never wait on each other in a cycle.
    async fn write_starts(
        conn: &mut PgConnection,
        tats: &[(String, i64)],
        messages: &[&NewMessage],
        started: &[&StoredVerification],
    ) -> Result<()> {
        if tats.is_empty() && started.is_empty() {
            return Ok(());
        }
        let v =
            |f: fn(&StoredVerification) -> String| started.iter().map(|v| f(v)).collect::<Vec<_>>();
        let n =
            |f: fn(&StoredVerification) -> i64| started.iter().map(|v| f(v)).collect::<Vec<_>>();
        // $1-$14 the messages (`ROWS`), $15-$33 the verifications, $34-$35 the counters.
        let text = format!(
            "WITH l AS (UPDATE rate_limits SET tat = c.tat FROM UNNEST($34::text[], $35::bigint[]) AS c(k, tat) \
               WHERE key = ANY($34) AND key = c.k), \
             p AS (SELECT v.id, c.at FROM verifications v \
               JOIN UNNEST($16::text[], $18::text[], $32::bigint[]) AS c(t, tn, at) \
                 ON v.to_number = c.tn AND v.tenant_id = c.t \
               WHERE v.to_number = ANY($18) AND v.status = 'pending' ORDER BY v.id FOR UPDATE OF v), \
             x AS (UPDATE verifications SET status = 'canceled', updated_at = p.at FROM p \
               WHERE verifications.id = ANY(ARRAY(SELECT id FROM p)) AND verifications.id = p.id RETURNING 1), \
             u AS ({ROWS}), m AS ({INSERT_ROWS}) \
             INSERT INTO verifications (id, tenant_id, mode, to_number, status, code_hash, \
               code_length, max_attempts, attempts, sends, ttl_seconds, brand, template, app_domain, \
               message_id, last_sent_at, expires_at, created_at, updated_at) \
             SELECT * FROM UNNEST($15::text[], $16::text[], $17::text[], $18::text[], $19::text[], \
               $20::text[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], \
               $26::text[], $27::text[], $28::text[], $29::text[], $30::bigint[], $31::bigint[], \
               $32::bigint[], $33::bigint[]) WHERE (SELECT count(*) FROM x) >= 0"
        );
        bind_rows(sqlx::query(sqlx::AssertSqlSafe(text)), messages)
            .bind(v(|v| v.id.to_string()))
            .bind(v(|v| v.tenant_id.to_string()))
            .bind(v(|v| v.mode.as_str().to_string()))
            .bind(v(|v| v.to.clone()))
            .bind(v(|v| v.status.as_str().to_string()))
            .bind(v(|v| v.code_hash.clone()))
            .bind(n(|v| i64::from(v.code_length)))
            .bind(n(|v| i64::from(v.max_attempts)))
            .bind(n(|v| i64::from(v.attempts)))
            .bind(n(|v| i64::from(v.sends)))
            .bind(n(|v| i64::from(v.ttl_seconds)))
            .bind(v(|v| v.brand.clone()))
            .bind(
                started
                    .iter()
                    .map(|v| v.template.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                started
                    .iter()
                    .map(|v| v.app_domain.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(v(|v| v.message_id.to_string()))
            .bind(n(|v| v.last_sent_at.millis()))
            .bind(n(|v| v.expires_at.millis()))
            .bind(n(|v| v.created_at.millis()))
            .bind(n(|v| v.updated_at.millis()))
            .bind(tats.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .bind(tats.iter().map(|(_, t)| *t).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Records a batch's idempotency keys in one statement: `Some` with what a key
/// stored before for each item whose key was used (here or by another process,
/// whose commit ON CONFLICT waits for).
async fn take_keys(
    conn: &mut PgConnection,
    batch: &[(&NewMessage, Option<&IdempotencyRecord>)],
) -> Result<Vec<Option<StoredResponse>>> {
    let mut keyed: Vec<(&NewMessage, &IdempotencyRecord)> = batch
        .iter()
        .filter_map(|(m, i)| i.map(|i| (*m, i)))
        .collect();
    // Keys locked in one order: two batches never wait on each other in a cycle.
    keyed.sort_by(|a, b| (&a.0.tenant_id, &a.1.key).cmp(&(&b.0.tenant_id, &b.1.key)));
    if keyed.is_empty() {
        return Ok(vec![None; batch.len()]);
    }
    let text = |f: fn(&NewMessage, &IdempotencyRecord) -> String| {
        keyed.iter().map(|(m, i)| f(m, i)).collect::<Vec<_>>()
    };
    let fresh: std::collections::HashSet<(String, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, response, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) \
         ON CONFLICT DO NOTHING RETURNING tenant_id, key",
    )
    .bind(text(|m, _| m.tenant_id.to_string()))
    .bind(text(|_, i| i.key.clone()))
    .bind(text(|_, i| i.response.request_hash.clone()))
    .bind(keyed.iter().map(|(_, i)| i64::from(i.response.status)).collect::<Vec<_>>())
    .bind(text(|_, i| i.response.body.clone()))
    .bind(keyed.iter().map(|(m, _)| m.created_at.millis()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let mut taken = Vec::with_capacity(batch.len());
    for (m, idem) in batch {
        taken.push(match idem {
            Some(i) if !fresh.contains(&(m.tenant_id.to_string(), i.key.clone())) => Some(
                stored_response::<Postgres>(conn, &m.tenant_id, &i.key)
                    .await?
                    .ok_or(StoreError::NotFound)?,
            ),
            _ => None,
        });
    }
    Ok(taken)
}

/// Inserts queued messages in one statement (their first status is `created_at`).
/// The messages of a batch as a table `u`, from the fourteen arrays `bind_rows` binds.
const ROWS: &str = "SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], \
    $12::bigint[], $13::bigint[], $14::text[]) AS u(id, tenant_id, mode, to_number, sender, body, \
    body_hmac, encoding, segments, price_pence, reference, created_at, lease_until, lease_token)";

/// Inserts `u`'s rows as queued messages (their first status at `created_at`);
/// one with a lease has its first attempt under way.
const INSERT_ROWS: &str = "INSERT INTO messages (id, tenant_id, mode, to_number, sender, body, \
    body_hmac, encoding, segments, price_pence, reference, status, next_attempt_at, created_at, \
    updated_at, lease_until, lease_token, attempts) SELECT id, tenant_id, mode, to_number, sender, \
    body, body_hmac, encoding, segments, price_pence, reference, 'queued', created_at, created_at, \
    created_at, lease_until, lease_token, CASE WHEN lease_token IS NULL THEN 0 ELSE 1 END FROM u";

/// Inserts queued messages in one statement.
async fn insert_messages(conn: &mut PgConnection, new: &[&NewMessage]) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let text = format!("WITH u AS ({ROWS}) {INSERT_ROWS}");
    bind_rows(sqlx::query(sqlx::AssertSqlSafe(text)), new)
        .execute(conn)
        .await?;
    Ok(())
}

/// One tenant's priced messages of one month, their ledger entries and the
/// month total in one statement, if the total stays under the cap: one round
/// trip, as for test keys, instead of a transaction of six. False if they do
/// not all fit (then nothing was written).
async fn insert_charged(conn: &mut PgConnection, new: &[&NewMessage]) -> Result<bool> {
    let first = new[0];
    let text = format!(
        "WITH u AS ({ROWS}), t AS ( \
           INSERT INTO ledger_totals (tenant_id, month, pence) \
           SELECT $15, $16, $17::bigint WHERE $18::bigint IS NULL OR $17::bigint <= $18 \
           ON CONFLICT (tenant_id, month) DO UPDATE SET pence = ledger_totals.pence + excluded.pence \
           WHERE $18::bigint IS NULL OR ledger_totals.pence + excluded.pence <= $18 RETURNING 1), \
         l AS (INSERT INTO ledger (tenant_id, month, at, kind, pence, segments, message_id) \
           SELECT tenant_id, $16, created_at, 'sms', price_pence, segments, id FROM u \
           WHERE price_pence > 0 AND EXISTS (SELECT 1 FROM t)) \
         {INSERT_ROWS} WHERE EXISTS (SELECT 1 FROM t)"
    );
    let inserted = bind_rows(sqlx::query(sqlx::AssertSqlSafe(text)), new)
        .bind(first.tenant_id.as_str())
        .bind(first.created_at.month())
        .bind(new.iter().map(|m| m.price.0).sum::<i64>())
        .bind(first.cap.map(|c| c.0))
        .execute(conn)
        .await?;
    Ok(inserted.rows_affected() > 0)
}

fn bind_rows<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    new: &[&NewMessage],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let text = |f: fn(&NewMessage) -> String| new.iter().map(|m| f(m)).collect::<Vec<_>>();
    let int = |f: fn(&NewMessage) -> i64| new.iter().map(|m| f(m)).collect::<Vec<_>>();
    q.bind(text(|m| m.id.to_string()))
        .bind(text(|m| m.tenant_id.to_string()))
        .bind(text(|m| m.mode.as_str().to_string()))
        .bind(text(|m| m.to.clone()))
        .bind(text(|m| m.from.clone()))
        .bind(text(|m| m.body.clone()))
        .bind(text(|m| m.body_hmac.clone()))
        .bind(text(|m| m.encoding.as_str().to_string()))
        .bind(int(|m| i64::from(m.segments)))
        .bind(int(|m| m.price.0))
        .bind(new.iter().map(|m| m.reference.clone()).collect::<Vec<_>>())
        .bind(int(|m| m.created_at.millis()))
        .bind(
            new.iter()
                .map(|m| m.lease.as_ref().map(|l| l.until.millis()))
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|m| m.lease.as_ref().map(|l| l.token.clone()))
                .collect::<Vec<_>>(),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            super::MIGRATIONS.len()
        );
    }
}
