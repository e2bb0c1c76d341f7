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
            bind_rows(sqlx::query(AssertSqlSafe(text.as_str())), chunk)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// One round trip to the writer's thread: three statements, each of
    /// which writes only if the one before it did (`changes()`): the month
    /// total, if it stays under the cap; the ledger entries; the messages.
    async fn insert_charged(conn: &mut SqliteConnection, batch: &[&NewMessage]) -> Result<bool> {
        let Some(text) = CHARGED.get(batch.len().wrapping_sub(1)) else {
            return Ok(false);
        };
        let first = batch[0];
        let entries = batch
            .iter()
            .filter(|m| m.price.0 > 0)
            .map(|m| {
                json!({
                    "at": m.created_at.millis(), "p": m.price.0, "s": m.segments,
                    "m": m.id.as_str(),
                })
            })
            .collect();
        let charged = sqlx::query(AssertSqlSafe(text.as_str()))
            .bind(first.tenant_id.as_str())
            .bind(first.created_at.month())
            .bind(batch.iter().map(|m| m.price.0).sum::<i64>())
            .bind(first.cap.map(|c| c.0))
            .bind(json_param(entries));
        let written = bind_rows(charged, batch).execute(&mut *conn).await?;
        Ok(written.rows_affected() > 0)
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
static INSERTS: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
    [64, 32, 16, 8, 4, 2, 1]
        .map(|n| {
            (
                n,
                format!(
                    "INSERT INTO messages ({MESSAGE_INSERT}) VALUES {}",
                    rows(n, 1)
                ),
            )
        })
        .into()
});

/// `insert_charged`'s statements for 1 to `GROUP_LIMIT` messages. The first
/// five parameters are the tenant, the month, the sum, the cap and the ledger
/// entries; the messages' follow. Each statement names only parameters the
/// ones before it name or a run of its own (sqlx binds a statement's unnamed
/// places in turn, and stops at the first past the arguments).
static CHARGED: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (1..=<Sqlite as Db>::GROUP_LIMIT)
        .map(|n| {
            format!(
                "INSERT INTO ledger_totals (tenant_id, month, pence) SELECT ?1, ?2, ?3 \
                   WHERE ?4 IS NULL OR ?3 <= ?4 \
                 ON CONFLICT (tenant_id, month) DO UPDATE \
                   SET pence = ledger_totals.pence + excluded.pence \
                   WHERE ?4 IS NULL OR ledger_totals.pence + excluded.pence <= ?4; \
                 INSERT INTO ledger (tenant_id, month, at, kind, pence, segments, message_id) \
                   SELECT ?1, ?2, value ->> 'at', 'sms', value ->> 'p', value ->> 's', \
                     value ->> 'm' FROM json_each(?5) WHERE changes() > 0; \
                 INSERT INTO messages ({MESSAGE_INSERT}) \
                   SELECT * FROM (VALUES {}) WHERE changes() > 0",
                rows(n, 6)
            )
        })
        .collect()
});

/// The columns a new message's row sets.
const MESSAGE_INSERT: &str = "id, tenant_id, mode, to_number, sender, body, body_hmac, \
    encoding, segments, price_pence, reference, status, next_attempt_at, created_at, updated_at, \
    lease_until, lease_token, attempts";

/// `n` rows of `MESSAGE_INSERT`, 14 parameters each from `?first` (the last
/// two the lease, if any: then the first attempt is under way).
fn rows(n: usize, first: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p: Vec<String> = (0..14)
                .map(|k| format!("?{}", first + i * 14 + k))
                .collect();
            format!(
                "({}, 'queued', {at}, {at}, {at}, {until}, {token}, {token} IS NOT NULL)",
                p[..11].join(", "),
                at = p[11],
                until = p[12],
                token = p[13],
            )
        })
        .collect();
    rows.join(", ")
}

/// Binds the messages' 14 parameters each, in the order of `rows`.
fn bind_rows<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    batch: &[&'q NewMessage],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    for m in batch {
        q = q
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
    q
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
    use super::*;
    use crate::domain::Mode;
    use crate::domain::encoding::Encoding;
    use crate::domain::message::Pence;
    use crate::store::{Lease, Maintenance, TenantStore};

    /// A message's id, to, body, price, reference, created_at, lease token, attempts.
    type Row = (
        String,
        String,
        String,
        i64,
        String,
        i64,
        Option<String>,
        i64,
    );

    /// The three statements of `insert_charged` write each message with its
    /// own fields, a ledger entry for each priced one and the month's total,
    /// or, past the cap, nothing.
    #[tokio::test]
    async fn a_charged_batch_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = connect(&url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let tenant = TenantId::generate();
        store
            .create_tenant(&tenant, "t", Timestamp(0))
            .await
            .unwrap();
        let at = Timestamp(1_796_400_000_000);
        let message = |i: i64, price: i64, leased: bool| NewMessage {
            id: MessageId::generate(),
            tenant_id: tenant.clone(),
            mode: Mode::Live,
            to: format!("+4474001234{i:02}"),
            from: "Line".into(),
            body: format!("body {i}"),
            body_hmac: format!("hmac {i}"),
            encoding: Encoding::Gsm7,
            segments: 1,
            price: Pence(price),
            cap: Some(Pence(10)),
            reference: Some(format!("ref {i}")),
            created_at: Timestamp(at.0 + i),
            lease: leased.then(|| Lease {
                token: "lease_x".into(),
                until: Timestamp(at.0 + 60_000),
            }),
        };
        let batch = [
            message(0, 1, false),
            message(1, 0, true),
            message(2, 3, false),
        ];
        let mut conn = store.pool.acquire().await.unwrap();
        let all: Vec<&NewMessage> = batch.iter().collect();
        assert!(Sqlite::insert_charged(&mut conn, &all).await.unwrap());
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, to_number, body, price_pence, reference, created_at, lease_token, \
                   attempts FROM messages ORDER BY created_at",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let want: Vec<_> = batch
            .iter()
            .map(|m| {
                (
                    m.id.to_string(),
                    m.to.clone(),
                    m.body.clone(),
                    m.price.0,
                    m.reference.clone().unwrap(),
                    m.created_at.0,
                    m.lease.as_ref().map(|l| l.token.clone()),
                    i64::from(m.lease.is_some()),
                )
            })
            .collect();
        assert_eq!(rows, want);
        let ledger = || async {
            let entries: Vec<(String, i64)> =
                sqlx::query_as("SELECT message_id, pence FROM ledger ORDER BY at")
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            let total: i64 = sqlx::query_scalar("SELECT pence FROM ledger_totals")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            (entries, total)
        };
        let charged = vec![(batch[0].id.to_string(), 1), (batch[2].id.to_string(), 3)];
        assert_eq!(ledger().await, (charged.clone(), 4));
        // 4p spent: 7p more would pass the 10p cap.
        let over = [message(3, 3, false), message(4, 4, false)];
        let all: Vec<&NewMessage> = over.iter().collect();
        assert!(!Sqlite::insert_charged(&mut conn, &all).await.unwrap());
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((count, ledger().await), (3, (charged, 4)));
    }

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            super::MIGRATIONS.len()
        );
    }
}
