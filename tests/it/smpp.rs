//! The SMPP carrier against an SMSC we did not write: node-smpp (npm `smpp`)
//! running tests/smsc/smsc.js. Live keys route to it; statuses come back from
//! its deliver_sm receipts. Its destination rules (last two digits) are in
//! tests/smsc/README.md.

use crate::common;

use std::time::{Duration, Instant};

use common::smsc::Smsc;
use common::{Backend, TestApp};
use line::carrier::{CarrierState, CarrierStatus};
use line::worker::Worker;
use serde_json::{Value, json};

const FINAL: [&str; 4] = ["delivered", "undelivered", "failed", "expired"];

/// `carrier_keys` are added to the carrier's table; a test that sets its own
/// `max_per_second` replaces the default ceiling here.
fn config(port: u16, carrier_keys: &str) -> String {
    let ceiling = match carrier_keys.contains("max_per_second") {
        true => "",
        false => "max_per_second = 5000",
    };
    format!(
        r#"
[worker]
retry_base_seconds = 1
retry_max_seconds = 2

[[carriers]]
name = "primary"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "line"
password = "secret"
window = 10
reconnect_max_seconds = 1
{ceiling}
{carrier_keys}

[routing]
default = "primary"
"#
    )
}

async fn spawn(backend: Backend, smsc: &Smsc, carrier_keys: &str) -> (TestApp, Worker) {
    let app = TestApp::spawn_with(backend, &config(smsc.port, carrier_keys)).await;
    let worker = app.line.worker();
    (app, worker)
}

fn primary(app: &TestApp) -> CarrierStatus {
    app.line
        .carriers
        .statuses()
        .into_iter()
        .find(|c| c.name == "primary")
        .unwrap()
}

fn state(app: &TestApp) -> CarrierState {
    primary(app).state
}

async fn wait_for_state(app: &TestApp, want: CarrierState) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while state(app) != want {
        assert!(
            Instant::now() < deadline,
            "carrier still {:?}, not {want:?}",
            state(app)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_live(app: &TestApp, to: &str, body: &str) -> String {
    let (status, msg) = app
        .post("/v1/sms", &app.live_key, &json!({"to": to, "body": body}))
        .await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_string()
}

async fn message(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/sms/{id}"), &app.live_key).await.1
}

/// Runs worker passes (the SMSC answers in real time) until every message is final.
async fn until_final(app: &TestApp, worker: &Worker, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        worker.run_once().await.unwrap();
        let mut msgs = Vec::new();
        for id in ids {
            msgs.push(message(app, id).await);
        }
        if msgs
            .iter()
            .all(|m| FINAL.contains(&m["status"].as_str().unwrap()))
        {
            return msgs;
        }
        let statuses: Vec<&Value> = msgs.iter().map(|m| &m["status"]).collect();
        assert!(Instant::now() < deadline, "not final in time: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn history(msg: &Value) -> Vec<&str> {
    msg["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect()
}

async fn receipts_map_to_statuses(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let cases = [
        ("+447400123456", "delivered"),
        ("+447400123491", "undelivered"),
        ("+447400123492", "failed"),
        ("+447400123493", "expired"),
        ("+447400123494", "failed"), // ESME_RINVDSTADR on submit: permanent
        ("+447400123496", "delivered"), // the receipt overtakes the submit_sm_resp
        ("+447400123497", "delivered"), // ENROUTE first changes nothing
    ];
    let mut ids = Vec::new();
    for (i, (to, _)) in cases.iter().enumerate() {
        ids.push(send_live(&app, to, &format!("case {i}")).await);
    }
    let msgs = until_final(&app, &worker, &ids).await;
    for ((to, want), msg) in cases.iter().zip(&msgs) {
        assert_eq!(msg["status"], *want, "{to}: {msg}");
    }
    // Each change once, in order: no duplicate from the ENROUTE or the race.
    assert_eq!(history(&msgs[0]), ["queued", "sent", "delivered"]);
    assert_eq!(history(&msgs[5]), ["queued", "sent", "delivered"]);
    assert_eq!(history(&msgs[6]), ["queued", "sent", "delivered"]);
    assert_eq!(msgs[1]["error_code"], "UNDELIV:001");
    assert_eq!(msgs[4]["error_code"], "ESME_RINVDSTADR");
    assert_eq!(history(&msgs[4]), ["queued", "failed"]);

    // What the SMSC saw: our addressing and a request for final receipts.
    let accepted = smsc.accepted();
    assert_eq!(accepted.len(), 6, "the 94 case is refused, not accepted");
    let first = accepted
        .iter()
        .find(|a| a["destination_addr"] == "447400123456")
        .unwrap();
    assert_eq!(
        (
            first["dest_addr_ton"].as_u64(),
            first["dest_addr_npi"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(first["source_addr"], "Line");
    assert_eq!(
        (
            first["source_addr_ton"].as_u64(),
            first["source_addr_npi"].as_u64()
        ),
        (Some(5), Some(0))
    );
    assert_eq!(first["registered_delivery"], 1);
    assert_eq!(first["data_coding"], 0);
    assert_eq!(first["text"], "case 0");
    // Bodies are erased once the carrier has them.
    assert!(!app.dump().await.contains("case 0"));
    app.stop().await;
}

/// An E.164 sender goes as TON 1/NPI 1; hex ids in submit_sm_resp meet decimal
/// ids in text receipts, and the hex ids of receipted_message_id TLVs.
async fn hex_ids_and_text_receipts(backend: Backend) {
    hex_ids(backend, "0").await;
    hex_ids(backend, "1").await;
}

async fn hex_ids(backend: Backend, tlv: &str) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[("SMSC_ID_FORMAT", "hex"), ("SMSC_TLV", tlv)]).await;
    let (app, worker) = spawn(
        backend,
        &smsc,
        "submit_id_base = \"hex\"\nreceipt_id_base = \"decimal\"",
    )
    .await;
    wait_for_state(&app, CarrierState::Bound).await;
    // A number as `from` must be one the tenant rents.
    crate::numbers::rent_live(&app, "+447400000001").await;
    let (status, msg) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "+447400123456", "body": "hex", "from": "+447400000001"}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    let ids = vec![
        msg["id"].as_str().unwrap().to_string(),
        send_live(&app, "+447400123491", "hex undelivered").await,
    ];
    let msgs = until_final(&app, &worker, &ids).await;
    assert_eq!(msgs[0]["status"], "delivered");
    assert_eq!(msgs[1]["status"], "undelivered");
    let accepted = smsc.accepted();
    let e164 = accepted
        .iter()
        .find(|a| a["destination_addr"] == "447400123456")
        .unwrap();
    assert_eq!(e164["source_addr"], "447400000001");
    assert_eq!(
        (
            e164["source_addr_ton"].as_u64(),
            e164["source_addr_npi"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_ne!(
        e164["message_id"], e164["receipt_id"],
        "the SMSC spells the id two ways"
    );
    app.stop().await;
}

/// Upper-case zero-padded ids answered, lower-case unpadded ids in receipts.
async fn padded_upper_case_ids(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[("SMSC_ID_FORMAT", "HEX0")]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let ids = vec![send_live(&app, "+447400123456", "padded").await];
    assert_eq!(
        until_final(&app, &worker, &ids).await[0]["status"],
        "delivered"
    );
    app.stop().await;
}

/// 100 Cyrillic letters and an emoji: two UCS-2 parts with one reference, one delivered status.
async fn multipart_ucs2(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let body = format!("{}😀", "ж".repeat(100));
    let id = send_live(&app, "+447400123456", &body).await;
    let msg = &until_final(&app, &worker, std::slice::from_ref(&id)).await[0];
    assert_eq!(msg["status"], "delivered");
    assert_eq!(msg["segments"], 2);
    assert_eq!(history(msg), ["queued", "sent", "delivered"]);
    let parts = smsc.accepted();
    assert_eq!(parts.len(), 2);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["data_coding"], 8);
        assert_eq!(p["esm_class"].as_u64().unwrap() & 0x40, 0x40, "UDHI set");
        assert_eq!(p["udh"]["total"], 2);
        assert_eq!(p["udh"]["seq"], i + 1);
        assert_eq!(p["udh"]["ref"], parts[0]["udh"]["ref"]);
    }
    let text = format!(
        "{}{}",
        parts[0]["text"].as_str().unwrap(),
        parts[1]["text"].as_str().unwrap()
    );
    assert_eq!(text, body);
    app.stop().await;
}

/// A wrong password: the carrier is down, messages wait; once the SMSC takes
/// our password the supervisor rebinds and they go.
async fn bind_failure_then_recovery(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smsc.log");
    let mut smsc = Smsc::start_on(0, &log, &[("SMSC_PASSWORD", "other")]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Down).await;
    let id = send_live(&app, "+447400123456", "waits").await;
    worker.run_once().await.unwrap();
    assert_eq!(message(&app, &id).await["status"], "queued");
    let (_, ready) = app.get("/readyz", "").await;
    let primary = ready["carriers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "primary")
        .unwrap()
        .clone();
    assert_eq!(primary["state"], "down", "{ready}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("line_carrier_errors_total{carrier=\"primary\",kind=\"smpp\",error=\"bind ESME_RBINDFAIL\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("line_carrier_up{carrier=\"primary\",kind=\"smpp\"} 0"),
        "{metrics}"
    );

    // The SMSC comes back on the same port with our password.
    let port = smsc.port;
    drop(smsc);
    smsc = Smsc::start_on(port, &log, &[]).await;
    wait_for_state(&app, CarrierState::Bound).await;
    let msg = &until_final(&app, &worker, std::slice::from_ref(&id)).await[0];
    assert_eq!(msg["status"], "delivered");
    assert_eq!(smsc.accepted().len(), 1);
    app.stop().await;
}

/// ESME_RTHROTTLED twice: the carrier pauses, the message waits and then goes.
async fn throttling_slows_down_then_sends(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let id = send_live(&app, "+447400123495", "slow down").await;
    worker.run_once().await.unwrap();
    let status = primary(&app);
    assert!(status.throttled, "{status:?}");
    assert_eq!(message(&app, &id).await["status"], "queued");
    let msg = &until_final(&app, &worker, std::slice::from_ref(&id)).await[0];
    assert_eq!(msg["status"], "delivered");
    let status = primary(&app);
    assert_eq!(status.errors.get("ESME_RTHROTTLED"), Some(&2), "{status:?}");
    assert_eq!(smsc.accepted().len(), 1);
    app.stop().await;
}

/// `max_per_second` spaces submissions out, measured by the SMSC's clock: 21
/// parts at 20 per second span at least a second, although the window (10)
/// and the worker (one batch) would send them all at once.
async fn rate_ceiling_spaces_submissions(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[]).await;
    let (app, worker) = spawn(backend, &smsc, "max_per_second = 20").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let mut ids = Vec::new();
    for i in 0..21 {
        ids.push(send_live(&app, "+447400123456", &format!("paced {i}")).await);
    }
    until_final(&app, &worker, &ids).await;
    let times: Vec<i64> = smsc
        .accepted()
        .iter()
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(times.len(), 21);
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    // 20 intervals of 50 ms; a turn may go up to 1 ms early (the timer's
    // resolution), and the two clocks read the same instants a little apart.
    assert!(span >= 950, "21 parts at 20/s arrived within {span} ms");
    app.stop().await;
}

/// The SMSC dies with submissions outstanding and comes back: every message
/// is accepted by an SMSC exactly once (counted on its side) and ends delivered.
async fn smsc_killed_mid_load(backend: Backend) {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smsc.log");
    let mut smsc = Smsc::start_on(0, &log, &[("SMSC_DIE_AFTER", "70")]).await;
    let (app, worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(send_live(&app, "+447400123456", &format!("load {i}")).await);
    }
    let worker = std::sync::Arc::new(worker);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = {
        let (worker, stop) = (worker.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if worker.run_once().await.unwrap() == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    smsc.exited().await;
    assert_eq!(smsc.accepted().len(), 70, "it died after 70");
    smsc = Smsc::start_on(smsc.port, &log, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = app
            .sql_text("SELECT CAST(COUNT(*) AS TEXT) FROM messages WHERE status = 'delivered'")
            .await
            .unwrap();
        if delivered == N.to_string() {
            break;
        }
        if Instant::now() > deadline {
            let concat = match backend {
                Backend::Postgres => "string_agg(status || ':' || n, ',')",
                Backend::Sqlite => "GROUP_CONCAT(status || ':' || n)",
            };
            let by_status = app
                .sql_text(&format!("SELECT {concat} FROM (SELECT status, CAST(COUNT(*) AS TEXT) AS n FROM messages GROUP BY status) s"))
                .await;
            let unmatched = app
                .sql_text("SELECT CAST(COUNT(*) AS TEXT) FROM carrier_receipts")
                .await;
            panic!(
                "only {delivered} of {N} delivered: {by_status:?}, unmatched receipts {unmatched:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    driver.await.unwrap();
    let mut seen = std::collections::HashMap::new();
    for part in smsc.accepted() {
        *seen
            .entry(part["text"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), N, "every message reached the SMSC");
    assert!(seen.values().all(|&n| n == 1), "none twice: {seen:?}");
    app.stop().await;
}

/// A message a handset sends us is acknowledged and kept, never an error.
async fn mobile_originated_is_recorded(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(dir.path(), &[("SMSC_MO_ON_BIND", "STOP")]).await;
    let (app, _worker) = spawn(backend, &smsc, "").await;
    wait_for_state(&app, CarrierState::Bound).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = app
            .sql_text(
                "SELECT MAX(from_number || ' ' || to_number || ' ' || body) FROM inbound_messages",
            )
            .await;
        if let Some(row) = row {
            assert_eq!(row, "+447400123456 +447700900001 STOP");
            break;
        }
        assert!(Instant::now() < deadline, "no inbound message recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

/// An MO deliver_sm to a number the tenant rents reaches it (listed as
/// inbound); the simulator sends one on each bind.
async fn mobile_originated_reaches_the_renting_tenant(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = Smsc::start(
        dir.path(),
        &[("SMSC_MO_ON_BIND", "HELP"), ("SMSC_MO_TO", "447400000002")],
    )
    .await;
    let extra = format!("{}\n{}", config(smsc.port, ""), crate::webhooks::PRIVATE_OK);
    let app = TestApp::spawn_with(backend, &extra).await;
    // Rented before the carrier binds (binding starts with the first worker).
    crate::numbers::rent_live(&app, "+447400000002").await;
    let (receiver, secret) = crate::webhooks::receive_inbound(&app).await;
    let _worker = app.line.worker();
    wait_for_state(&app, CarrierState::Bound).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.get("/v1/sms?direction=inbound", &app.live_key).await;
        if let Some(mo) = list["data"].as_array().unwrap().first() {
            assert_eq!(
                (mo["from"].as_str(), mo["to"].as_str(), mo["body"].as_str()),
                (Some("+447400123456"), Some("+447400000002"), Some("HELP"))
            );
            let data = crate::webhooks::one_signed_inbound(&app, &receiver, &secret).await;
            assert_eq!(&data, mo);
            break;
        }
        assert!(Instant::now() < deadline, "no inbound message listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

backends!(
    backend:
    mobile_originated_reaches_the_renting_tenant,
    receipts_map_to_statuses,
    hex_ids_and_text_receipts,
    padded_upper_case_ids,
    multipart_ucs2,
    bind_failure_then_recovery,
    throttling_slows_down_then_sends,
    rate_ceiling_spaces_submissions,
    smsc_killed_mid_load,
    mobile_originated_is_recorded,
);
