//! The HTTP carrier against a real HTTP upstream on loopback (an axum server in
//! this process), its signed receipts, and routing by prefix and fallback.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Backend, TestApp};
use hmac::{Hmac, Mac};
use line::carrier::CarrierState;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "receipts-secret-0123";

/// One request the upstream received: its auth header and JSON body.
type Seen = (Option<String>, Value);

#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// By the destination's last two digits: 56 accepted, 29 throttled once,
/// 00 a server error, 22 refused.
async fn upstream(
    State(up): State<Upstream>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_string());
    let to = body["to"].as_str().unwrap().to_string();
    let n = {
        let mut seen = up.seen.lock().unwrap();
        seen.push((key, body));
        seen.iter().filter(|(_, b)| b["to"] == to).count()
    };
    match &to[to.len() - 2..] {
        "29" if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "00" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "22" => (StatusCode::UNPROCESSABLE_ENTITY, "no such subscriber").into_response(),
        _ => Json(json!({"id": format!("UP-{n}-{}", &to[to.len() - 4..])})).into_response(),
    }
}

async fn start_upstream() -> (String, Upstream) {
    let up = Upstream::default();
    let app = axum::Router::new()
        .route("/send", axum::routing::post(upstream))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, up)
}

fn http_carrier(name: &str, url: &str) -> String {
    format!(
        r#"
[[carriers]]
name = "{name}"
kind = "http"
url = "{url}"
auth_header = "X-Api-Key"
auth_value = "k-123"
receipt_secret = "{SECRET}"
"#
    )
}

/// How a test request is signed.
#[derive(Clone, Copy)]
enum Sig {
    /// Right, at the server's time.
    Good,
    /// Right, but `secs` seconds before the server's time.
    Old(i64),
    /// Right, signed at unix second `ts`.
    At(i64),
    /// Wrong.
    Bad,
}

fn sign(ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_receipt(app: &TestApp, carrier: &str, body: &str, sig: Sig) -> (u16, Value) {
    post_signed(app, &format!("/v1/carriers/{carrier}/receipts"), body, sig).await
}

async fn post_signed(app: &TestApp, path: &str, body: &str, sig: Sig) -> (u16, Value) {
    let now = app.clock.now().millis() / 1000;
    let (ts, signature) = match sig {
        Sig::Good => (now, sign(now, body)),
        Sig::Old(secs) => (now - secs, sign(now - secs, body)),
        Sig::At(ts) => (ts, sign(ts, body)),
        Sig::Bad => (now, "sha256=00".to_string()),
    };
    let resp = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("x-line-timestamp", ts.to_string())
        .header("x-line-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    common::decode(resp).await
}

async fn send_live(app: &TestApp, to: &str) -> String {
    let (status, msg) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": to, "body": "Your code is 123456"}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_string()
}

async fn message(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/sms/{id}"), &app.live_key).await.1
}

async fn http_upstream_and_signed_receipts(backend: Backend) {
    let (url, up) = start_upstream().await;
    let app = TestApp::spawn_with(
        backend,
        &format!(
            "{}\n[routing]\ndefault = \"up\"\n",
            http_carrier("up", &url)
        ),
    )
    .await;
    let ok = send_live(&app, "+447400123456").await;
    let throttled = send_live(&app, "+447400123429").await;
    let broken = send_live(&app, "+447400123400").await;
    let refused = send_live(&app, "+447400123422").await;
    app.drain().await;

    assert_eq!(message(&app, &ok).await["status"], "sent");
    let failed = message(&app, &refused).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_code"], "http_422");
    // Four charged when accepted; the one the carrier refused is given back.
    let period = &failed["created_at"].as_str().unwrap()[..7];
    let (_, u) = app
        .get(&format!("/v1/usage?period={period}"), &app.live_key)
        .await;
    assert_eq!(
        (
            u["sms_pence"].as_i64(),
            u["refunds_pence"].as_i64(),
            u["total_pence"].as_i64()
        ),
        (Some(4), Some(1), Some(3)),
        "{u}"
    );
    assert_eq!(
        message(&app, &broken).await["status"],
        "queued",
        "5xx is retried"
    );
    assert_eq!(
        message(&app, &throttled).await["status"],
        "queued",
        "429 waits"
    );
    {
        let seen = up.seen.lock().unwrap();
        let (key, body) = seen.iter().find(|(_, b)| b["id"] == ok.as_str()).unwrap();
        assert_eq!(key.as_deref(), Some("k-123"));
        assert_eq!(body["body"], "Your code is 123456");
        assert_eq!(body["encoding"], "gsm7");
        assert_eq!(body["segments"], 1);
    }
    // Once Retry-After has passed, the throttled message goes.
    app.advance_and_drain(Duration::from_secs(2)).await;
    assert_eq!(message(&app, &throttled).await["status"], "sent");

    // The upstream's id was "UP-1-3456"; it reports in lower case: ids are normalised.
    let receipt = r#"{"id": "up-1-3456", "status": "delivered"}"#;
    let (status, body) = post_receipt(&app, "up", receipt, Sig::Bad).await;
    common::assert_problem(status, &body, 401, "unauthorized");
    // Signed six minutes ago: refused, as a captured request replayed later would be.
    let (status, body) = post_receipt(&app, "up", receipt, Sig::Old(360)).await;
    common::assert_problem(status, &body, 401, "unauthorized");
    let ts = app.clock.now().millis() / 1000 - 240;
    let four_minutes_ago = Sig::At(ts);
    let (status, _) = post_receipt(&app, "up", receipt, four_minutes_ago).await;
    assert_eq!(status, 204);
    // The very same signed request again: refused.
    let (status, body) = post_receipt(&app, "up", receipt, four_minutes_ago).await;
    common::assert_problem(status, &body, 401, "unauthorized");
    assert!(
        body["detail"].as_str().unwrap().contains("before"),
        "{body}"
    );
    // Nor in another spelling of the same MAC.
    let upper = format!(
        "sha256={}",
        sign(ts, receipt)["sha256=".len()..].to_uppercase()
    );
    let resp = app
        .client
        .post(app.url("/v1/carriers/up/receipts"))
        .header("content-type", "application/json")
        .header("x-line-timestamp", ts.to_string())
        .header("x-line-signature", upper)
        .body(receipt.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = common::decode(resp).await;
    common::assert_problem(status, &body, 401, "unauthorized");
    app.drain().await;
    let delivered = message(&app, &ok).await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");

    // A batch, with an interim status (ignored) and an undelivered one.
    let batch = r#"[{"id": "UP-2-3429", "status": "enroute"}, {"id": "UP-2-3429", "status": "undelivered", "error": "absent subscriber"}]"#;
    let (status, _) = post_receipt(&app, "up", batch, Sig::Good).await;
    assert_eq!(status, 204);
    app.drain().await;
    let undelivered = message(&app, &throttled).await;
    assert_eq!(undelivered["status"], "undelivered", "{undelivered}");
    assert_eq!(undelivered["error_code"], "absent subscriber");

    let bad = r#"{"id": "x", "status": "teleported"}"#;
    let (status, body) = post_receipt(&app, "up", bad, Sig::Good).await;
    common::assert_problem(status, &body, 422, "invalid_receipt");
    let (status, body) = post_receipt(&app, "nope", receipt, Sig::Good).await;
    common::assert_problem(status, &body, 401, "unauthorized");
    app.stop().await;
}

async fn wait_until_down(app: &TestApp, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = app
            .line
            .carriers
            .statuses()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
            .state;
        if state == CarrierState::Down {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The default route's SMPP carrier cannot connect: its fallback takes the
/// messages; a prefix route picks its own carrier.
async fn fallback_and_prefix_routes(backend: Backend) {
    let (url, up) = start_upstream().await;
    // Nothing listens on port 9 of loopback: the SMPP carrier stays down.
    let config = format!(
        r#"
[[carriers]]
name = "smsc"
kind = "smpp"
host = "127.0.0.1"
port = 9
system_id = "line"
password = "secret"
{}
{}
[routing]
default = "smsc"
fallback = "backup"
[routing.prefixes]
"+447400123" = "direct"
"#,
        http_carrier("backup", &url),
        http_carrier("direct", &url.replace("/send", "/send?direct")),
    );
    let app = TestApp::spawn_with(backend, &config).await;
    let worker = app.line.worker();
    wait_until_down(&app, "smsc").await;
    let by_prefix = send_live(&app, "+447400123456").await;
    let by_fallback = send_live(&app, "+447500123456").await;
    worker.run_once().await.unwrap();
    assert_eq!(message(&app, &by_prefix).await["status"], "sent");
    assert_eq!(message(&app, &by_fallback).await["status"], "sent");
    assert_eq!(up.seen.lock().unwrap().len(), 2);
    let statuses = app.line.carriers.statuses();
    let submits = |name: &str| statuses.iter().find(|c| c.name == name).unwrap().submits;
    assert_eq!(
        (submits("smsc"), submits("backup"), submits("direct")),
        (0, 1, 1)
    );
    app.stop().await;
}

/// A handset's message through the HTTP carrier's signed inbound callback
/// reaches the tenant renting the number; one to a number nobody rents is
/// kept for the operator only; a wrong signature is refused.
async fn inbound_through_the_http_carrier(backend: Backend) {
    let (url, _up) = start_upstream().await;
    let config = format!(
        "{}\n[routing]\ndefault = \"up\"\n",
        http_carrier("up", &url)
    );
    let app = TestApp::spawn_with(backend, &config).await;
    crate::numbers::rent_live(&app, "+447400000002").await;
    let body = r#"[{"from": "+447400123456", "to": "+447400000002", "body": "STOP"},
                   {"from": "+447400123456", "to": "+447400000003", "body": "nobody's"}]"#;
    let (status, err) = post_signed(&app, "/v1/carriers/up/inbound", body, Sig::Bad).await;
    assert_eq!(status, 401, "{err}");
    let (status, err) = post_signed(&app, "/v1/carriers/up/inbound", body, Sig::Good).await;
    assert_eq!(status, 204, "{err}");
    let (_, list) = app.get("/v1/sms?direction=inbound", &app.live_key).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(
        (data[0]["to"].as_str(), data[0]["body"].as_str()),
        (Some("+447400000002"), Some("STOP"))
    );
    let kept = app
        .sql_text("SELECT MAX(body) FROM inbound_messages WHERE tenant_id IS NULL")
        .await;
    assert_eq!(kept.as_deref(), Some("nobody's"));
    let (status, err) = post_signed(&app, "/v1/carriers/up/inbound", "{}", Sig::Good).await;
    assert_eq!(status, 422, "{err}");
    app.stop().await;
}

backends!(
    backend:
    inbound_through_the_http_carrier,
    http_upstream_and_signed_receipts,
    fallback_and_prefix_routes
);
