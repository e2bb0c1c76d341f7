//! Faults survived: a worker that dies holding claims, a node killed and
//! restarted, receipts that never come, and what ages out.

use crate::common;
use crate::retries::worker;
use crate::webhooks::{PRIVATE_OK, Receiver, create, dispatch};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use line::store::Claim;
use line::worker::heartbeat::Heartbeat;
use serde_json::{Value, json};

/// A public address: deliveries are queued for it, never attempted here.
const PUBLIC: &str = "https://93.184.216.34/hooks/line";
const HOUR: Duration = Duration::from_secs(3600);

fn heartbeat(app: &TestApp, tokens: &[&str]) -> Heartbeat {
    Heartbeat::new(
        app.line.store.clone(),
        app.clock.clone(),
        &app.line.config.worker,
        tokens.iter().map(|t| t.to_string()).collect(),
    )
}

async fn claim_deliveries(app: &TestApp, token: &str) -> usize {
    let now = app.clock.now();
    let claim = Claim {
        now,
        lease_until: now.plus_ms(60_000),
        token: token.into(),
        limit: 100,
    };
    app.line
        .store
        .claim_deliveries(&claim, &[])
        .await
        .unwrap()
        .len()
}

/// A worker and a dispatcher die holding claims (messages and a webhook): a
/// live worker's heartbeat frees them once they have been silent for
/// `presumed_dead_ms` (4 s), long before their 60 s lease, and not before.
async fn a_silent_worker_loses_its_claims_in_seconds(app: TestApp) {
    create(&app, json!({"url": PUBLIC, "events": ["message.sent"]})).await;
    app.send("+447700900001", "first").await;
    app.drain().await;
    for i in 0..5 {
        app.send("+447700900002", &format!("queued {i}")).await;
    }
    let dead = app.line.worker();
    heartbeat(&app, &[dead.lease_token(), "lease_deadhooks"])
        .run_once()
        .await
        .unwrap();
    let held = dead.claim().await.unwrap();
    assert_eq!(held.len(), 5);
    assert_eq!(claim_deliveries(&app, "lease_deadhooks").await, 1);

    let live = app.line.worker();
    let beat = heartbeat(&app, &[live.lease_token()]);
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(beat.run_once().await.unwrap(), 0, "3 s of silence is alive");
    assert!(live.claim().await.unwrap().is_empty());
    app.clock.advance(Duration::from_millis(1100));
    assert_eq!(
        beat.run_once().await.unwrap(),
        6,
        "5 messages and 1 delivery"
    );
    assert_eq!(live.claim().await.unwrap().len(), 5);
    assert_eq!(claim_deliveries(&app, "lease_live").await, 1);
    // The dead worker's late outcome is refused: its lease is gone.
    dead.process(held[0].clone()).await.unwrap();
    let status = app
        .sql_text(&format!(
            "SELECT status FROM messages WHERE id = '{}'",
            held[0].id
        ))
        .await;
    assert_eq!(status.as_deref(), Some("queued"));
    app.stop().await;
}

/// A carrier that takes a message and never sends its final receipt: 72 h
/// later the message is `expired` with error code `no_receipt`, and its
/// webhook is queued; it stays charged (the carrier took it).
async fn a_receipt_that_never_comes_expires_the_message(app: TestApp) {
    let hook = create(&app, json!({"url": PUBLIC, "events": ["message.expired"]})).await;
    let (status, msg) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "+447400123456", "body": "hello"}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    let id = msg["id"].as_str().unwrap();
    let worker = worker(&app, vec![]);
    worker.run_once().await.unwrap();
    let read = || async { app.get(&format!("/v1/sms/{id}"), &app.live_key).await.1 };
    assert_eq!(read().await["status"], "sent");
    app.clock.advance(71 * HOUR);
    worker.cleanup().await.unwrap();
    assert_eq!(read().await["status"], "sent", "71 h: still waiting");
    app.clock.advance(2 * HOUR);
    worker.cleanup().await.unwrap();
    let msg = read().await;
    assert_eq!(msg["status"], "expired", "{msg}");
    assert_eq!(msg["error_code"], "no_receipt", "{msg}");
    let history: Vec<&str> = msg["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["queued", "sent", "expired"]);
    let (_, deliveries) = app
        .get(
            &format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(deliveries["data"][0]["event_type"], "message.expired");
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 1);
    let (_, usage) = app.get("/v1/usage", &app.live_key).await;
    assert_eq!(usage["total_pence"], 1, "{usage}");
    app.stop().await;
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.sql_text(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// After the retention (90 days) messages, verifications, inbound messages
/// and webhook deliveries are deleted; the ledger, and so the bill, stays.
async fn old_records_age_out_and_the_ledger_stays(app: TestApp) {
    let month = app.clock.now().month();
    let (url, receiver) = Receiver::start().await;
    create(&app, json!({"url": url})).await;
    let (status, _) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "+447400123456", "body": "live"}),
        )
        .await;
    assert_eq!(status, 202);
    worker(&app, vec![]).run_once().await.unwrap();
    let (status, otp) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900001"}))
        .await;
    assert_eq!(status, 201, "{otp}");
    let (status, n) = app
        .post(
            "/v1/numbers",
            &app.test_key,
            &json!({"number": "+447700900123"}),
        )
        .await;
    assert_eq!(status, 201, "{n}");
    let reply = json!({"from": "07700 900001", "to": "+447700900123", "body": "YES"});
    let (status, _) = app.post("/v1/sandbox/inbound", &app.test_key, &reply).await;
    assert_eq!(status, 201);
    app.advance_and_drain(Duration::from_millis(1100)).await;
    // The live message's receipt never comes: it ends (and its webhook goes) first.
    let cleaner = app.line.worker();
    app.clock.advance(73 * HOUR);
    cleaner.cleanup().await.unwrap();
    while dispatch(&app).await > 0 {}
    assert!(
        receiver.count() >= 4,
        "sent, delivered, received, expired: {}",
        receiver.count()
    );
    let tables = [
        "messages",
        "verifications",
        "inbound_messages",
        "webhook_deliveries",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(count(&app, t).await);
    }
    assert!(before.iter().all(|&n| n > 0), "{before:?}");
    let ledger = count(&app, "ledger").await;
    assert!(ledger >= 1, "the live message's charge");
    let (_, usage) = app
        .get(&format!("/v1/usage?period={month}"), &app.live_key)
        .await;
    assert_eq!(usage["total_pence"], 1, "{usage}");

    app.clock.advance(86 * 24 * HOUR);
    cleaner.cleanup().await.unwrap();
    for (t, n) in tables.iter().zip(&before) {
        assert_eq!(count(&app, t).await, *n, "{t} kept within 90 days");
    }
    app.clock.advance(24 * HOUR + 2 * HOUR);
    cleaner.cleanup().await.unwrap();
    for t in tables {
        assert_eq!(count(&app, t).await, 0, "{t} after 90 days");
    }
    assert_eq!(count(&app, "webhook_attempts").await, 0);
    assert_eq!(count(&app, "ledger").await, ledger);
    let (_, later) = app
        .get(&format!("/v1/usage?period={month}"), &app.live_key)
        .await;
    assert_eq!(later["total_pence"], usage["total_pence"], "{later}");
    app.stop().await;
}

backends!(
    app: a_silent_worker_loses_its_claims_in_seconds,
    a_receipt_that_never_comes_expires_the_message,
);

backends!(
    app with PRIVATE_OK in aging: old_records_age_out_and_the_ledger_stays,
);

/// An HTTP upstream that holds every request open while `hang` is set, then
/// accepts; it records the message id of every submission.
#[derive(Clone, Default)]
struct Upstream {
    hang: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn start_upstream() -> (String, Upstream) {
    let up = Upstream::default();
    up.hang.store(true, Ordering::SeqCst);
    let state = up.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let up = state.clone();
            async move {
                let id = body["id"].as_str().unwrap().to_string();
                up.seen.lock().unwrap().push(id.clone());
                if up.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                axum::Json(json!({"id": format!("up-{id}")}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, up)
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

struct Node {
    child: tokio::process::Child,
    base: String,
}

async fn start_node(
    dir: &std::path::Path,
    config: &std::path::Path,
    database_url: &str,
    role: &str,
) -> Node {
    let addr = free_addr();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_line"))
        .args(["serve", "--role", role])
        .current_dir(dir)
        .env("LINE_CONFIG", config)
        .env("LINE_DATABASE_URL", database_url)
        .env("LINE_LISTEN", &addr)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Node { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("line serve did not start");
}

/// `kill -9` of a node whose worker holds claims (its upstream has every
/// submission open), then a restart: every message is sent again within
/// seconds (not the 60 s lease), each submitted at most twice (once in flight
/// at the crash, once after).
async fn a_killed_node_takes_its_work_back_in_seconds(backend: Backend) {
    killed_node(backend, false).await
}

/// Two nodes on PostgreSQL; one holding claims is killed (-9): the other
/// sends its messages within seconds, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_takes_a_killed_nodes_work_in_seconds() {
    killed_node(Backend::Postgres, true).await
}

/// `survivor`: a second node runs beside the one killed, and is not restarted.
async fn killed_node(backend: Backend, survivor: bool) {
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database(backend, &dir).await;
    let (upstream, up) = start_upstream().await;
    let config = dir.path().join("line.toml");
    std::fs::write(
        &config,
        format!(
            "[[carriers]]\nname = \"up\"\nkind = \"http\"\nurl = \"{upstream}\"\n\
             receipt_secret = \"receipts-secret-0123\"\n[routing]\ndefault = \"up\"\n"
        ),
    )
    .unwrap();
    let key = live_key(&config, &database_url).await;

    // The API alone takes the messages, so that the next node claims them
    // all in one batch and holds every one of them open at its upstream.
    let mut api = start_node(dir.path(), &config, &database_url, "api").await;
    send_live(&api, &key, N, "code").await;
    sigterm(&mut api).await;
    let mut node = start_node(dir.path(), &config, &database_url, "all").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.seen.lock().unwrap().len() < N {
        assert!(
            Instant::now() < deadline,
            "submissions never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The survivor is up before the kill and finds nothing to claim.
    let other = match survivor {
        true => Some(start_node(dir.path(), &config, &database_url, "all").await),
        false => None,
    };
    node.child.kill().await.unwrap(); // SIGKILL: no lease is given back
    up.hang.store(false, Ordering::SeqCst);

    let restarted = Instant::now();
    let mut node = match other {
        Some(node) => node,
        None => start_node(dir.path(), &config, &database_url, "all").await,
    };
    while count_where(backend, &database_url, "status = 'sent'").await < N as i64 {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the claims never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = restarted.elapsed();
    // SQLite (one node) takes its claims back at start; PostgreSQL once the
    // dead node's heartbeat is 4 s old (then up to a beat and a poll).
    let bound = match backend {
        Backend::Sqlite => Duration::from_secs(3),
        Backend::Postgres => Duration::from_secs(7),
    };
    println!("{backend:?}, survivor {survivor}: all {N} sent again {took:?} after the kill");
    assert!(took < bound, "all sent again {took:?} after the restart");
    let seen = up.seen.lock().unwrap().clone();
    let mut ids = seen.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
    let thrice: Vec<(usize, &String)> = seen
        .iter()
        .enumerate()
        .filter(|(_, id)| seen.iter().filter(|s| s == id).count() > 2)
        .collect();
    assert_eq!(
        seen.len(),
        2 * N,
        "each at most twice: in flight at the crash, then again; {thrice:?}"
    );
    sigterm(&mut node).await;
    if backend == Backend::Postgres {
        common::drop_database(&database_url).await;
    }
}

/// A tenant made with `line tenant create`; its live key.
async fn live_key(config: &std::path::Path, database_url: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_line"))
        .args(["tenant", "create", "--name", "Acme"])
        .env("LINE_CONFIG", config)
        .env("LINE_DATABASE_URL", database_url)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("line_live_"))
        .unwrap()
        .to_string()
}

/// `n` live messages through `node`, each "<prefix> <i>"; all must be 202.
async fn send_live(node: &Node, key: &str, n: usize, prefix: &str) {
    let client = reqwest::Client::new();
    for i in 0..n {
        let resp = client
            .post(format!("{}/v1/sms", node.base))
            .bearer_auth(key)
            .json(&json!({"to": "+447400123456", "body": format!("{prefix} {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
}

async fn sigterm(node: &mut Node) {
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &node.child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = node.child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

mod restart {
    use super::*;
    backends!(
        backend: a_killed_node_takes_its_work_back_in_seconds,
        sigterm_drains_the_window_and_unbinds,
    );
}

/// One answer the load got: status, how long it took, the message id (2xx),
/// and for a 503 whether it was the problem+json with Retry-After.
type Answer = (u16, Duration, Option<String>, bool);

/// PostgreSQL crashes under load and comes back: meanwhile the API answers
/// 503 `service_unavailable` fast (problem+json, Retry-After) and `/readyz`
/// is 503; afterwards the API accepts again, and the worker and dispatcher
/// (left alone) deliver every message that was answered 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_answered_503_and_nothing_is_lost() {
    let pg = common::pg::OwnPostgres::start();
    let config = line::config::Config::from_toml(&format!(
        "database_url = \"{}\"\ndatabase_max_connections = 8\n[sandbox]\nreceipt_delay_ms = 100\n",
        pg.url()
    ))
    .unwrap();
    let line = line::Line::open(config, line::infra::clock::Clock::default())
        .await
        .unwrap();
    let key = line.create_tenant("Acme").await.unwrap().test_key;
    let key = key.expose().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (trigger, shutdown) = line::infra::shutdown::channel();
    let server = {
        let line = line.clone();
        tokio::spawn(async move { line.serve(listener, shutdown).await })
    };
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let load: Vec<_> = (0..4)
        .map(|n| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            let (stop, answers) = (stop.clone(), answers.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let started = Instant::now();
                    let resp = client
                        .post(format!("{base}/v1/sms"))
                        .bearer_auth(&key)
                        .json(&json!({"to": "+447700900001", "body": format!("load {n}/{i}")}))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status().as_u16();
                    let problem = resp.headers().get("content-type").map(|v| v.as_bytes())
                        == Some(b"application/problem+json".as_slice())
                        && resp.headers().contains_key("retry-after");
                    let body: Value = resp.json().await.unwrap();
                    let ok = problem && body["code"] == "service_unavailable";
                    let id = body["id"].as_str().map(str::to_string);
                    answers
                        .lock()
                        .unwrap()
                        .push((status, started.elapsed(), id, ok));
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    let ready = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.crash();
    let crashed_at = answers.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ready(client.clone(), base.clone()).await, 503);
    pg.resume();
    let resumed_at = answers.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(ready(client.clone(), base.clone()).await, 200);

    let answers = answers.lock().unwrap().clone();
    let unavailable: Vec<&Answer> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(!unavailable.is_empty(), "no 503 during the outage");
    assert!(
        unavailable.iter().all(|a| a.3),
        "503s are problem+json service_unavailable with Retry-After"
    );
    let others: Vec<u16> = answers
        .iter()
        .map(|a| a.0)
        .filter(|s| *s != 202 && *s != 503)
        .collect();
    assert!(others.is_empty(), "only 202 or 503: {others:?}");
    let outage = &answers[crashed_at..resumed_at];
    let slowest = outage.iter().map(|a| a.1).max().unwrap();
    // A request may wait for a connection twice (1 s each) before its 503.
    assert!(
        slowest < Duration::from_millis(3500),
        "an answer in the outage took {slowest:?}"
    );
    assert!(
        answers[resumed_at..].iter().any(|a| a.0 == 202),
        "accepting again after the database came back"
    );
    let accepted: Vec<String> = answers.iter().filter_map(|a| a.2.clone()).collect();
    println!(
        "outage: {} answers while the database was down, slowest {slowest:?}; {} 503s and {} accepted in all",
        outage.len(),
        unavailable.len(),
        accepted.len()
    );

    // The worker and dispatcher were left alone through it all.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE status = 'delivered' AND id = ANY($1)",
        )
        .bind(&accepted)
        .fetch_one(&mut db)
        .await
        .unwrap();
        if delivered == accepted.len() as i64 {
            break;
        }
        if Instant::now() > deadline {
            let left: Vec<(String, String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT id, status, lease_until, attempts FROM messages \
                 WHERE status <> 'delivered' AND id = ANY($1)",
            )
            .bind(&accepted)
            .fetch_all(&mut db)
            .await
            .unwrap();
            panic!(
                "{delivered} of {} accepted messages delivered; {left:?}",
                accepted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    trigger.trigger();
    server.await.unwrap().unwrap();
}

/// A request held past `limits.request_timeout_seconds` (here by a write lock
/// another process keeps on the SQLite file) is answered 503 in time, and the
/// service goes on once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_too_long_is_answered_503() {
    use sqlx::Connection;
    let app = TestApp::spawn_with(Backend::Sqlite, "[limits]\nrequest_timeout_seconds = 1\n").await;
    let mut other = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = Instant::now();
    let resp = app
        .client
        .post(app.url("/v1/sms"))
        .bearer_auth(&app.test_key)
        .json(&json!({"to": "+447700900001", "body": "hello"}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(resp.headers().contains_key("retry-after"));
    let (status, err) = common::decode(resp).await;
    common::assert_problem(status, &err, 503, "service_unavailable");
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    app.send("+447700900001", "after").await;
    app.stop().await;
}

/// SIGTERM under load, with submissions in the SMPP window: the node stops
/// within its bound, every part the SMSC accepted has its outcome recorded,
/// no claim is left behind, the session is unbound; started again, it sends
/// the rest, and the SMSC never sees a message twice.
async fn sigterm_drains_the_window_and_unbinds(backend: Backend) {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database(backend, &dir).await;
    let smsc = common::smsc::Smsc::start(dir.path(), &[("SMSC_RECEIPT_DELAY_MS", "100")]).await;
    let config = dir.path().join("line.toml");
    std::fs::write(
        &config,
        format!(
            "[[carriers]]\nname = \"primary\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             system_id = \"line\"\npassword = \"secret\"\nwindow = 10\nmax_per_second = 20\n\
             [routing]\ndefault = \"primary\"\n",
            smsc.port
        ),
    )
    .unwrap();
    let key = live_key(&config, &database_url).await;
    let mut node = start_node(dir.path(), &config, &database_url, "all").await;
    send_live(&node, &key, N, "drain").await;
    // 20 a second: well under way, far from done.
    let deadline = Instant::now() + Duration::from_secs(20);
    while smsc.accepted().len() < 15 {
        assert!(Instant::now() < deadline, "the SMSC got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    sigterm(&mut node).await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
    let taken = smsc.accepted().len() as i64;
    assert!(taken < N as i64, "all {taken} were sent before the stop");
    let recorded = count_where(backend, &database_url, "status IN ('sent', 'delivered')").await;
    assert_eq!(recorded, taken, "every part the SMSC took is recorded");
    let held = count_where(
        backend,
        &database_url,
        "status = 'queued' AND lease_until IS NOT NULL",
    )
    .await;
    assert_eq!(held, 0, "no claim is left behind");
    let deadline = Instant::now() + Duration::from_secs(5);
    while smsc.stat("unbinds") < 1 {
        assert!(Instant::now() < deadline, "the session was not unbound");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut node = start_node(dir.path(), &config, &database_url, "all").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_where(backend, &database_url, "status = 'delivered'").await < N as i64 {
        assert!(
            Instant::now() < deadline,
            "the rest was not sent after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut texts: Vec<String> = smsc
        .accepted()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    texts.dedup();
    assert_eq!(
        smsc.accepted().len(),
        N,
        "each message reached the SMSC once"
    );
    assert_eq!(texts.len(), N);
    sigterm(&mut node).await;
    if backend == Backend::Postgres {
        common::drop_database(&database_url).await;
    }
}

async fn count_where(backend: Backend, url: &str, condition: &str) -> i64 {
    use sqlx::Connection;
    let q = format!("SELECT COUNT(*) FROM messages WHERE {condition}");
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }
}
