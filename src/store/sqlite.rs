//! SQLite: the zero-configuration single-node backend (WAL, one writer at a time).
//! SQLite has no SKIP LOCKED; a claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n)`,
//! which its single writer makes atomic.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use serde_json::json;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Executor, Sqlite};

use super::idempotency::take_key;
use super::sql::{Db, json_param};
use super::{CreateOutcome, IdempotencyRecord, NewMessage, Result, SqlStore, StoredResponse};
use crate::domain::ids::{MessageId, TenantId};
use crate::domain::message::Timestamp;
use crate::domain::verification::StoredVerification;

/// Every file of migrations/sqlite, in order (a test checks none is missing).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "otp",
        include_str!("../../migrations/sqlite/0002_otp.sql"),
    ),
    (
        3,
        "webhooks",
        include_str!("../../migrations/sqlite/0003_webhooks.sql"),
    ),
    (
        4,
        "carriers",
        include_str!("../../migrations/sqlite/0004_carriers.sql"),
    ),
    (
        5,
        "drop_messages_carrier_id",
        include_str!("../../migrations/sqlite/0005_drop_messages_carrier_id.sql"),
    ),
    (
        6,
        "history_in_messages",
        include_str!("../../migrations/sqlite/0006_history_in_messages.sql"),
    ),
    (
        7,
        "drop_hot_foreign_keys",
        include_str!("../../migrations/sqlite/0007_drop_hot_foreign_keys.sql"),
    ),
    (
        8,
        "ledger",
        include_str!("../../migrations/sqlite/0008_ledger.sql"),
    ),
    (
        9,
        "numbers",
        include_str!("../../migrations/sqlite/0009_numbers.sql"),
    ),
    (
        10,
        "inbound",
        include_str!("../../migrations/sqlite/0010_inbound.sql"),
    ),
    (
        11,
        "accounts",
        include_str!("../../migrations/sqlite/0011_accounts.sql"),
    ),
    (
        12,
        "leaseholders",
        include_str!("../../migrations/sqlite/0012_leaseholders.sql"),
    ),
    (
        13,
        "drop_verification_foreign_keys",
        include_str!("../../migrations/sqlite/0013_drop_verification_foreign_keys.sql"),
    ),
    (
        14,
        "room_for_updates",
        include_str!("../../migrations/sqlite/0014_room_for_updates.sql"),
    ),
    (
        15,
        "drop_messages_tenant_status",
        include_str!("../../migrations/sqlite/0015_drop_messages_tenant_status.sql"),
    ),
];

/// The most connections to one file: one for the writer (`writer.rs`), the
/// rest for reads. Measured in the side-by-side kit (5k messages through
/// SMPP with receipts and webhooks) when every connection wrote, 8 against
/// 16 accepted more requests at 16 clients in each of three interleaved
/// rounds and kept peak memory under 100 MB (89-95 MB, against 127 MB).
const MAX_CONNECTIONS: u32 = 8;

pub(super) async fn connect(url: &str, max_connections: u32) -> Result<SqlStore<Sqlite>> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit survives power loss, as "never lose an accepted message" needs.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Checkpoints run in `checkpoints`, not in the commit that fills the WAL.
        .pragma("wal_autocheckpoint", "0");
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.min(MAX_CONNECTIONS))
        .acquire_timeout(Duration::from_secs(10))
        // A file does not hang up: no ping (a round trip to its thread) per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    tokio::spawn(checkpoints(pool.clone()));
    Ok(SqlStore {
        claims: pool.clone(),
        writer: Some(super::writer::GroupWriter::new(pool.clone())),
        pool,
        waits: Default::default(),
    })
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the WAL back into the database file, beside the writers. SQLite
/// otherwise checkpoints inside the commit that takes the WAL past 1,000
/// pages: that request waited for a thousand page writes and two flushes
/// (p99 of 219 ms for POST /v1/otp at 16 connections). A passive checkpoint
/// takes no lock that writers wait on; it copies what no reader still needs,
/// and writers start the WAL over once all of it is copied.
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "SQLite checkpoint failed; trying again");
        }
    }
}

impl Db for Sqlite {
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = MIGRATIONS;

    async fn migrate(pool: &SqlitePool) -> Result<()> {
        super::maintenance::migrator(MIGRATIONS)
            .run(pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok(())
    }
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const LOCK: &'static str = "";
    const CLAIM_RECEIPTS: &'static str = "";
    const LOOK_FIRST: bool = true;
    const CHARGES_IN_ONE_STATEMENT: bool = false;
    /// Every job waits for the one writer's turn (`writer.rs`), so a large
    /// group holds back all the others: receipts and webhook-attempt groups
    /// held it for 5-30 ms while requests waited 15-70 ms behind them. In
    /// the kit (5k messages, six interleaved pairs) 32 against 256 took the
    /// API's p99 at 16 connections from 62-70 to 39-40 ms and from 40-49 to
    /// 34-39 ms; at 64 connections, accepts, p99 and CPU differed no more
    /// than between runs.
    const GROUP_LIMIT: usize = 32;
    const SANDBOX_DUE: &'static str = "receipt_done = 0 AND receipt_due <= $1";
    const SKIP_LOCKED: &'static str = "";

    fn executor<'c>(conn: &'c mut SqliteConnection) -> impl Executor<'c, Database = Sqlite> {
        conn
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Types come from the JSON values.
    fn json_rows(param: u8, columns: &[(&str, &str)]) -> String {
        let picks: Vec<String> = columns
            .iter()
            .map(|(n, _)| format!("value ->> '{n}' AS {n}"))
            .collect();
        format!(
            "(SELECT {} FROM json_each(${param})) AS u",
            picks.join(", ")
        )
    }

    fn json_keys(param: u8, column: &str) -> String {
        format!("IN (SELECT value ->> '{column}' FROM json_each(${param}))")
    }

    fn text(param: u8) -> String {
        format!("${param}")
    }

    /// Many rows to a statement, in chunks of a few fixed sizes (so seven
    /// prepared statements serve every batch): each statement is a round
    /// trip to the connection's thread, and the writer waits for each.
    async fn insert_messages(conn: &mut SqliteConnection, batch: &[&NewMessage]) -> Result<()> {
        let mut rest = batch;
        while !rest.is_empty() {
            let (n, text) = INSERTS
                .iter()
                .find(|(n, _)| *n <= rest.len())
                .expect("the chunks end with one row");
            let (chunk, tail) = rest.split_at(*n);
            rest = tail;
            let mut insert = sqlx::query(AssertSqlSafe(text.as_str()));
            for m in chunk {
                insert = insert
                    .bind(m.id.as_str())
                    .bind(m.tenant_id.as_str())
                    .bind(m.mode.as_str())
                    .bind(&m.to)
                    .bind(&m.from)
                    .bind(&m.body)
                    .bind(&m.body_hmac)
                    .bind(m.encoding.as_str())
                    .bind(i64::from(m.segments))
                    .bind(m.price.0)
                    .bind(&m.reference)
                    .bind(m.created_at.millis())
                    .bind(m.lease.as_ref().map(|l| l.until.millis()))
                    .bind(m.lease.as_ref().map(|l| l.token.as_str()));
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn take_keys(
        conn: &mut SqliteConnection,
        batch: &[(&NewMessage, Option<&IdempotencyRecord>)],
    ) -> Result<Vec<Option<StoredResponse>>> {
        let mut taken = Vec::with_capacity(batch.len());
        for (m, idem) in batch {
            taken.push(
                match take_key::<Sqlite>(conn, &m.tenant_id, *idem, m.created_at).await? {
                    Some(CreateOutcome::Existing(stored)) => Some(stored),
                    _ => None,
                },
            );
        }
        Ok(taken)
    }

    async fn take_sandbox_receipts(
        conn: &mut SqliteConnection,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(MessageId, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE sandbox_messages SET receipt_done = 1 WHERE message_id IN \
               (SELECT message_id FROM sandbox_messages WHERE {} \
                ORDER BY receipt_due LIMIT $2) RETURNING message_id, receipt_status",
            Self::SANDBOX_DUE,
        )))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?)
    }

    /// One writer at a time: starts already take turns, and counters are
    /// not locked one by one.
    async fn lock_starts(
        conn: &mut SqliteConnection,
        _: &[(&TenantId, &str)],
        keys: &[&str],
    ) -> Result<HashMap<String, i64>> {
        let keys = json_param(keys.iter().map(|k| json!({"lk": k})).collect());
        // WHERE TRUE: SQLite reads `ON CONFLICT` after a bare FROM as a join's.
        sqlx::query(
            "INSERT INTO rate_limits (key, tat) SELECT value ->> 'lk', 0 FROM json_each($1) \
             WHERE TRUE ON CONFLICT DO NOTHING",
        )
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, tat FROM rate_limits WHERE key IN (SELECT value ->> 'lk' FROM json_each($1))",
        )
        .bind(&keys)
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn write_starts(
        conn: &mut SqliteConnection,
        tats: &[(String, i64)],
        messages: &[&NewMessage],
        started: &[&StoredVerification],
    ) -> Result<()> {
        for (key, tat) in tats {
            sqlx::query("UPDATE rate_limits SET tat = $2 WHERE key = $1")
                .bind(key)
                .bind(tat)
                .execute(&mut *conn)
                .await?;
        }
        for v in started {
            sqlx::query(
                "UPDATE verifications SET status = 'canceled', updated_at = $3 \
                 WHERE to_number = $2 AND tenant_id = $1 AND status = 'pending'",
            )
            .bind(v.tenant_id.as_str())
            .bind(&v.to)
            .bind(v.created_at.millis())
            .execute(&mut *conn)
            .await?;
        }
        Self::insert_messages(conn, messages).await?;
        for v in started {
            insert_verification(conn, v).await?;
        }
        Ok(())
    }
}

/// The sizes `insert_messages` splits a batch into, largest first, each with its statement.
static INSERTS: std::sync::LazyLock<Vec<(usize, String)>> =
    std::sync::LazyLock::new(|| [64, 32, 16, 8, 4, 2, 1].map(|n| (n, insert_rows(n))).into());

/// `INSERT INTO messages` of `n` rows, 14 parameters each (the last two the
/// lease, if any: then the first attempt is under way).
fn insert_rows(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p: Vec<String> = (1..=14).map(|k| format!("?{}", i * 14 + k)).collect();
            format!(
                "({}, 'queued', {at}, {at}, {at}, {until}, {token}, {token} IS NOT NULL)",
                p[..11].join(", "),
                at = p[11],
                until = p[12],
                token = p[13],
            )
        })
        .collect();
    format!(
        "INSERT INTO messages (id, tenant_id, mode, to_number, sender, body, body_hmac, encoding, \
           segments, price_pence, reference, status, next_attempt_at, created_at, updated_at, \
           lease_until, lease_token, attempts) \
         VALUES {}",
        rows.join(", ")
    )
}

async fn insert_verification(conn: &mut SqliteConnection, v: &StoredVerification) -> Result<()> {
    sqlx::query(
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            super::MIGRATIONS.len()
        );
    }
}
