//! Test harness: a real server on port 0 over a fresh database (PostgreSQL or
//! SQLite), with a clock the test moves and a worker the test drives.

pub mod pg;
pub mod smsc;

use std::time::Duration;

use line::Line;
use line::config::Config;
use line::domain::ids::new_id;
use line::infra::clock::Clock;
use line::infra::shutdown::{ShutdownTrigger, channel};
use serde_json::Value;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Where the test PostgreSQL is (a database we may create others from).
pub fn pg_admin_url() -> String {
    std::env::var("LINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database for one test; returns its URL.
pub async fn fresh_database(backend: Backend, dir: &tempfile::TempDir) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("line.db").display()),
        Backend::Postgres => {
            let admin = pg_admin_url();
            let name = new_id("line_test");
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("PostgreSQL must be running at LINE_TEST_DATABASE_URL (see README)");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').expect("database url has a path").0;
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub line: Line,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub tenant_id: line::domain::ids::TenantId,
    pub test_key: String,
    pub live_key: String,
    pub database_url: String,
    owns_database: bool,
    trigger: ShutdownTrigger,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, "").await
    }

    /// `extra` is TOML layered over the defaults.
    pub async fn spawn_with(backend: Backend, extra: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(backend, &dir).await;
        Self::spawn_on(backend, database_url, dir, extra).await
    }

    /// A second server process on this one's database (its own tenant).
    pub async fn sibling(&self, extra: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut app = Self::spawn_on(self.backend, self.database_url.clone(), dir, extra).await;
        // Share the first server's tenant and keys so both act for one tenant.
        app.tenant_id = self.tenant_id.clone();
        app.test_key = self.test_key.clone();
        app.live_key = self.live_key.clone();
        app.owns_database = false;
        app
    }

    async fn spawn_on(
        backend: Backend,
        database_url: String,
        dir: tempfile::TempDir,
        extra: &str,
    ) -> TestApp {
        // The API only: tests drive the worker themselves, deterministically.
        let config = Config::from_toml(&format!(
            "database_url = \"{database_url}\"\nrole = \"api\"\ndatabase_max_connections = 8\n{extra}"
        ))
        .unwrap();
        let clock = Clock::default();
        let line = Line::open(config, clock.clone()).await.unwrap();
        let first = line.create_tenant("Acme").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (trigger, shutdown) = channel();
        let server = {
            let line = line.clone();
            tokio::spawn(async move { line.serve(listener, shutdown).await })
        };
        TestApp {
            backend,
            base,
            line,
            clock,
            client: reqwest::Client::new(),
            tenant_id: first.tenant.id,
            test_key: first.test_key.expose().to_string(),
            live_key: first.live_key.expose().to_string(),
            database_url,
            owns_database: true,
            trigger,
            server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    /// A POST with an `Idempotency-Key`; also whether the answer says it is a replay.
    pub async fn post_keyed(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> (u16, Value, bool) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .unwrap();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let (status, value) = decode(resp).await;
        (status, value, replayed)
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    /// POST /v1/sms with a test key; asserts 202 and returns the message.
    pub async fn send(&self, to: &str, body: &str) -> Value {
        let (status, msg) = self
            .post(
                "/v1/sms",
                &self.test_key,
                &serde_json::json!({"to": to, "body": body}),
            )
            .await;
        assert_eq!(status, 202, "{msg}");
        msg
    }

    /// Runs worker passes until one finds nothing due.
    pub async fn drain(&self) {
        let worker = self.line.worker();
        for _ in 0..100 {
            if worker.run_once().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the queue did not drain");
    }

    /// Moves time on (receipts, leases, expiry) and drains the queue.
    pub async fn advance_and_drain(&self, by: Duration) {
        self.clock.advance(by);
        self.drain().await;
    }

    /// Reads one optional text column straight from the database (test-only SQL).
    pub async fn sql_text(&self, sql: &str) -> Option<String> {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Stops the server (gracefully) and drops a PostgreSQL test database.
    /// Databases of tests that panicked are dropped by `.ci/run`.
    /// Every row of every table as text: what a dump of the database would show.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                for t in tables {
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT CAST(t AS text) FROM {t} t"
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    out.push_str(&format!("== {t}\n{}\n", rows.join("\n")));
                }
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                let tables: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                for t in tables {
                    let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT name FROM pragma_table_info('{t}')"
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    let expr = cols
                        .iter()
                        .map(|c| format!("quote(\"{c}\")"))
                        .collect::<Vec<_>>()
                        .join(" || ',' || ");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT {expr} FROM \"{t}\""
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    out.push_str(&format!("== {t}\n{}\n", rows.join("\n")));
                }
            }
        }
        out
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.server.await.unwrap().unwrap();
        if self.backend == Backend::Postgres && self.owns_database {
            drop(self.line);
            drop_database(&self.database_url).await;
        }
    }
}

/// Drops the PostgreSQL test database at `url` (made by `fresh_database`).
pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts a 429 `rate_limited` answer and returns its Retry-After in seconds.
pub async fn assert_rate_limited(resp: reqwest::Response) -> u64 {
    let retry_after = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, err) = decode(resp).await;
    assert_problem(status, &err, 429, "rate_limited");
    retry_after
}

/// Asserts the one error shape and returns it.
pub fn assert_problem(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(body["type"], format!("urn:line:problem:{code}"), "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(
        body["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{body}"
    );
}

/// One `#[tokio::test]` per scenario and backend, in modules `postgres` and
/// `sqlite` (so `cargo test postgres::` runs one backend). A scenario takes
///
/// - `app:` a `TestApp` on a fresh database;
/// - `app with CONFIG in group:` the same with the TOML `CONFIG` layered
///   over the defaults, as `group::postgres::…` and `group::sqlite::…`;
/// - `backend:` the `Backend`, for scenarios that build their own server.
macro_rules! backends {
    (app: $($name:ident),* $(,)?) => {
        backends!(@each (|b| crate::common::TestApp::spawn(b)), $($name),*);
    };
    (app with $extra:ident in $group:ident: $($name:ident),* $(,)?) => {
        mod $group {
            use super::*;
            backends!(@each (|b| crate::common::TestApp::spawn_with(b, super::$extra)), $($name),*);
        }
    };
    (backend: $($name:ident),* $(,)?) => {
        backends!(@each (|b| async move { b }), $($name),*);
    };
    (@each $make:tt, $($name:ident),*) => {
        backends!(@one postgres, Postgres, $make, $($name),*);
        backends!(@one sqlite, Sqlite, $make, $($name),*);
    };
    (@one $module:ident, $backend:ident, ($make:expr), $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let make = $make;
                    super::$name(make(crate::common::Backend::$backend).await).await
                }
            )*
        }
    };
}
