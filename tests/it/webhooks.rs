//! Webhook endpoints: create, list, read, change, rotate, delete, and the SSRF
//! guard, on PostgreSQL and SQLite.

use crate::common;

use common::{TestApp, assert_problem};
use serde_json::{Value, json};

/// A public address given as a literal, so no DNS is needed.
const PUBLIC: &str = "https://93.184.216.34/hooks/line";

pub async fn create(app: &TestApp, body: Value) -> Value {
    let (status, e) = app.post("/v1/webhooks", &app.test_key, &body).await;
    assert_eq!(status, 201, "{e}");
    e
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .patch(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&app.test_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    common::decode(resp).await
}

async fn delete(app: &TestApp, key: &str, id: &str) -> u16 {
    let resp = app
        .client
        .delete(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

/// One key, one endpoint: a repeat gets the first answer (its secret too).
async fn endpoint_creation_is_idempotent(app: TestApp) {
    let body = json!({"url": PUBLIC, "description": "once"});
    let (s1, first, r1) = app
        .post_keyed("/v1/webhooks", &app.test_key, "e-1", &body)
        .await;
    let (s2, second, r2) = app
        .post_keyed("/v1/webhooks", &app.test_key, "e-1", &body)
        .await;
    assert_eq!(
        (s1, s2, r1, r2),
        (201, 201, false, true),
        "{first} {second}"
    );
    assert_eq!(first, second);
    assert!(first["secret"].as_str().unwrap().starts_with("whsec_"));
    let other = json!({"url": PUBLIC, "description": "twice"});
    let (status, err, _) = app
        .post_keyed("/v1/webhooks", &app.test_key, "e-1", &other)
        .await;
    assert_problem(status, &err, 422, "idempotency_key_reused");
    let (_, list) = app.get("/v1/webhooks", &app.test_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}

async fn endpoints_are_managed_and_secrets_shown_once(app: TestApp) {
    let e = create(&app, json!({"url": PUBLIC, "description": "prod"})).await;
    let id = e["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wh_"));
    assert!(e["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(e["events"], Value::Null);
    assert_eq!(e["enabled"], true);
    let (_, got) = app.get(&format!("/v1/webhooks/{id}"), &app.test_key).await;
    assert!(
        got.get("secret").is_none(),
        "the secret is shown on create only: {got}"
    );
    assert_eq!(got["description"], "prod");

    let other = create(&app, json!({"url": PUBLIC, "events": ["message.delivered", "message.failed", "message.delivered"]})).await;
    assert_eq!(
        other["events"],
        json!(["message.delivered", "message.failed"])
    );
    let (_, page) = app.get("/v1/webhooks?limit=1", &app.test_key).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["id"], other["id"], "newest first");
    let (_, rest) = app
        .get(
            &format!(
                "/v1/webhooks?starting_after={}",
                other["id"].as_str().unwrap()
            ),
            &app.test_key,
        )
        .await;
    assert_eq!(rest["data"][0]["id"], id.as_str());
    assert_eq!(rest["has_more"], false);
    assert!(rest["data"][0].get("secret").is_none());

    // Change the event filter, then back to all; pause and re-enable.
    let (status, changed) = patch(&app, &id, json!({"events": ["verification.approved"]})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["events"], json!(["verification.approved"]));
    assert_eq!(changed["description"], "prod", "untouched fields stay");
    let (_, all) = patch(&app, &id, json!({"events": null})).await;
    assert_eq!(all["events"], Value::Null);
    let (_, paused) = patch(&app, &id, json!({"enabled": false})).await;
    assert_eq!(
        (
            paused["enabled"].clone(),
            paused["disabled_reason"].is_string()
        ),
        (json!(false), true)
    );
    let (_, back) = patch(&app, &id, json!({"enabled": true})).await;
    assert_eq!(
        (back["enabled"].clone(), back["disabled_reason"].clone()),
        (json!(true), Value::Null)
    );

    // Rotation: a new secret, shown once.
    let resp = app
        .client
        .post(app.url(&format!("/v1/webhooks/{id}/rotate-secret")))
        .bearer_auth(&app.test_key)
        .send()
        .await
        .unwrap();
    let (status, rotated) = common::decode(resp).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["secret"], e["secret"]);

    // Another tenant sees none of it.
    let stranger = app.line.create_tenant("Other").await.unwrap();
    let key = stranger.test_key.expose();
    let (status, err) = app.get(&format!("/v1/webhooks/{id}"), key).await;
    assert_problem(status, &err, 404, "not_found");
    let (_, theirs) = app.get("/v1/webhooks", key).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    assert_eq!(delete(&app, key, &id).await, 404);

    assert_eq!(delete(&app, &app.test_key, &id).await, 204);
    let (status, _) = app.get(&format!("/v1/webhooks/{id}"), &app.test_key).await;
    assert_eq!(status, 404);
    assert_eq!(delete(&app, &app.test_key, &id).await, 404);
    app.stop().await;
}

async fn bad_endpoints_are_refused(app: TestApp) {
    // The SSRF guard, with webhooks.allow_private_addresses off (the default).
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
        "ftp://93.184.216.34/hook",
        "not a url",
        "https://user:pass@93.184.216.34/hook",
    ] {
        let (status, err) = app
            .post("/v1/webhooks", &app.test_key, &json!({"url": url}))
            .await;
        assert_problem(status, &err, 422, "invalid_webhook_url");
        assert_eq!(err["param"], "url", "{url}");
    }
    for (body, param) in [
        (
            json!({"url": PUBLIC, "events": ["message.lost"]}),
            "events[0]",
        ),
        (json!({"url": PUBLIC, "events": []}), "events"),
        (
            json!({"url": PUBLIC, "description": "d".repeat(201)}),
            "description",
        ),
        (json!({"url": PUBLIC, "colour": "red"}), "colour"),
    ] {
        let (status, err) = app.post("/v1/webhooks", &app.test_key, &body).await;
        assert_problem(status, &err, 422, "invalid_request");
        assert_eq!(err["param"], param, "{body}");
    }
    // A change of URL passes the same guard.
    let e = create(&app, json!({"url": PUBLIC})).await;
    let (status, err) = patch(
        &app,
        e["id"].as_str().unwrap(),
        json!({"url": "http://192.168.1.1/"}),
    )
    .await;
    assert_problem(status, &err, 422, "invalid_webhook_url");
    let (_, list) = app.get("/v1/webhooks", &app.test_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["url"], PUBLIC);
    app.stop().await;
}

backends!(
    app:
    endpoint_creation_is_idempotent,
    delivery_time_guard_refuses_internal_addresses,
    endpoints_are_managed_and_secrets_shown_once,
    bad_endpoints_are_refused
);

async fn private_addresses_are_allowed_when_configured(app: TestApp) {
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
    ] {
        create(&app, json!({"url": url})).await;
    }
    app.stop().await;
}

// ---- Delivery: a real HTTP receiver on loopback, signatures checked by the
// official Python `standardwebhooks` package. ----

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::HeaderMap;

pub const PRIVATE_OK: &str = "[webhooks]\nallow_private_addresses = true";

/// A scripted answer: status and an optional Retry-After.
type Answer = (u16, Option<&'static str>);

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answers to give, first to last (status, Retry-After); then 200.
    script: Arc<Mutex<Vec<Answer>>>,
}

impl Receiver {
    pub async fn start() -> (String, Receiver) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.got.lock().unwrap().push((headers, body));
                    let next = {
                        let mut script = state.script.lock().unwrap();
                        (!script.is_empty()).then(|| script.remove(0))
                    };
                    let (status, retry_after) = next.unwrap_or((200, None));
                    let mut response = axum::response::Response::new(axum::body::Body::from("ok"));
                    *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
                    if let Some(secs) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", secs.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, receiver)
    }

    fn bodies(&self) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// Verifies a received webhook with the Python Standard Webhooks library.
pub fn python_verifies(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let ok = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "standardwebhooks",
            ])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install standardwebhooks");
    });
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| (h.to_string(), json!(headers[*h].to_str().unwrap())))
            .collect();
    let input = json!({"secret": secret, "body": body, "headers": headers}).to_string();
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json\nfrom standardwebhooks.webhooks import Webhook\nd = json.load(sys.stdin)\nWebhook(d['secret']).verify(d['body'], d['headers'])",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

pub async fn dispatch(app: &TestApp) -> usize {
    app.line.dispatcher().run_once().await.unwrap()
}

async fn every_status_change_arrives_once_signed(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    let all = create(&app, json!({"url": url})).await;
    let secret = all["secret"].as_str().unwrap().to_string();
    let (url2, only_delivered) = Receiver::start().await;
    create(&app, json!({"url": url2, "events": ["message.delivered"]})).await;

    for to in ["+447700900001", "+447700900900", "+447700900950"] {
        app.send(to, "hello").await;
    }
    app.drain().await;
    app.advance_and_drain(Duration::from_millis(1100)).await;
    let v = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900123"}))
        .await
        .1;
    app.drain().await;
    let (_, inbox) = app
        .get("/v1/sandbox/messages?to=%2B447700900123", &app.test_key)
        .await;
    let body = inbox["data"][0]["body"].as_str().unwrap();
    let code: String = body
        .split(" code is ")
        .nth(1)
        .unwrap()
        .chars()
        .take(6)
        .collect();
    let (_, r) = app
        .post(
            &format!("/v1/otp/{}/verify", v["id"].as_str().unwrap()),
            &app.test_key,
            &json!({"code": code}),
        )
        .await;
    assert_eq!(r["status"], "approved");
    while dispatch(&app).await > 0 {}

    let mut types: Vec<String> = receiver
        .bodies()
        .iter()
        .map(|b| b["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            // 900001 sent and delivered; 900900 sent and undelivered; 900950
            // rejected; the OTP's SMS sent (its receipt is not due yet); approved.
            "message.delivered",
            "message.failed",
            "message.sent",
            "message.sent",
            "message.sent",
            "message.undelivered",
            "verification.approved"
        ]
    );
    for b in receiver.bodies() {
        assert!(b["timestamp"].is_string());
        let want = b["type"].as_str().unwrap().split('.').nth(1).unwrap();
        assert_eq!(
            b["data"]["status"], want,
            "data is the object as of the event: {b}"
        );
    }
    let got = receiver.got.lock().unwrap().clone();
    let mut ids: Vec<&str> = got
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        got.len(),
        "one webhook-id per event and endpoint"
    );
    for (headers, body) in &got {
        assert!(
            python_verifies(&secret, headers, body),
            "signature did not verify: {body}"
        );
        assert!(!python_verifies(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            headers,
            body
        ));
    }
    let delivered: Vec<String> = only_delivered
        .bodies()
        .iter()
        .map(|b| b["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, ["message.delivered"]);
    app.stop().await;
}

async fn retries_follow_the_schedule_and_gone_disables(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    receiver
        .script
        .lock()
        .unwrap()
        .extend([(429, Some("60")), (500, None), (200, None)]);
    let e = create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    app.send("+447700900001", "hello").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 1); // 429 with Retry-After 60: longer than the 5 s step
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(dispatch(&app).await, 0, "Retry-After is honoured");
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(dispatch(&app).await, 1); // 500: next in 300 s ± 20%
    app.clock.advance(Duration::from_secs(230));
    assert_eq!(
        dispatch(&app).await,
        0,
        "not before the schedule's 300 s ± 20%"
    );
    app.clock.advance(Duration::from_secs(131));
    assert_eq!(dispatch(&app).await, 1); // 200
    app.clock.advance(Duration::from_secs(100_000));
    assert_eq!(
        dispatch(&app).await,
        0,
        "a delivered event is not sent again"
    );
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|(h, b)| h["webhook-id"] == got[0].0["webhook-id"] && *b == got[0].1)
    );
    let attempts = app
        .sql_text("SELECT CAST(COUNT(*) AS TEXT) FROM webhook_attempts")
        .await;
    assert_eq!(attempts.as_deref(), Some("3"));

    // 410 Gone: no more attempts, and the endpoint is disabled.
    receiver.script.lock().unwrap().push((410, None));
    app.send("+447700900001", "again").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 1);
    app.clock.advance(Duration::from_secs(100_000));
    assert_eq!(dispatch(&app).await, 0);
    let (_, ep) = app
        .get(
            &format!("/v1/webhooks/{}", e["id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(ep["enabled"], false);
    assert!(ep["disabled_reason"].as_str().unwrap().contains("410"));
    // While disabled nothing is queued for it; re-enabled, it receives again.
    app.send("+447700900001", "while disabled").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 0);
    let (_, ep) = patch(&app, e["id"].as_str().unwrap(), json!({"enabled": true})).await;
    assert_eq!(ep["enabled"], true);
    app.send("+447700900001", "back").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(receiver.count(), 5);
    app.stop().await;
}

async fn rotation_signs_with_both_secrets_for_a_day(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    let e = create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    let old = e["secret"].as_str().unwrap().to_string();
    let resp = app
        .client
        .post(app.url(&format!(
            "/v1/webhooks/{}/rotate-secret",
            e["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.test_key)
        .send()
        .await
        .unwrap();
    let new = common::decode(resp).await.1["secret"]
        .as_str()
        .unwrap()
        .to_string();
    app.send("+447700900001", "hello").await;
    app.drain().await;
    dispatch(&app).await;
    let (headers, body) = receiver.got.lock().unwrap()[0].clone();
    assert_eq!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(python_verifies(&old, &headers, &body));
    assert!(python_verifies(&new, &headers, &body));
    app.stop().await;
}

async fn a_dispatcher_killed_mid_delivery_loses_nothing(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    app.send("+447700900001", "hello").await;
    app.drain().await;
    // A dispatcher claims the delivery and dies before sending it.
    let now = app.clock.now();
    let claimed = app
        .line
        .store
        .claim_deliveries(
            &line::store::Claim {
                now,
                lease_until: now.plus_ms(60_000),
                token: "dead".into(),
                limit: 10,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(dispatch(&app).await, 0, "its lease holds");
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(receiver.count(), 1);
    app.stop().await;
}

async fn deliveries_are_listed_with_attempts_and_replayed(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    receiver
        .script
        .lock()
        .unwrap()
        .extend([(500, None), (200, None)]);
    let e = create(
        &app,
        json!({"url": url, "events": ["message.sent", "message.delivered"]}),
    )
    .await;
    let id = e["id"].as_str().unwrap();
    app.send("+447700900001", "hello").await;
    app.drain().await;
    // One at a time, so that the receiver's script answers each as meant
    // (deliveries to one endpoint run side by side, in no set order).
    assert_eq!(dispatch(&app).await, 1); // sent: 500
    app.advance_and_drain(Duration::from_millis(1100)).await;
    assert_eq!(dispatch(&app).await, 1); // delivered: 200
    let (status, list) = app
        .get(&format!("/v1/webhooks/{id}/deliveries"), &app.test_key)
        .await;
    assert_eq!(status, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let sent = data
        .iter()
        .find(|d| d["event_type"] == "message.sent")
        .unwrap();
    assert_eq!(sent["status"], "pending");
    assert!(sent["next_attempt_at"].is_string());
    assert_eq!(sent["attempts"][0]["status_code"], 500);
    assert_eq!(sent["attempts"][0]["response"], "ok");
    let delivered = data
        .iter()
        .find(|d| d["event_type"] == "message.delivered")
        .unwrap();
    assert_eq!(delivered["status"], "succeeded");
    assert_eq!(delivered["attempts"].as_array().unwrap().len(), 1);
    let (_, page) = app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?limit=1"),
            &app.test_key,
        )
        .await;
    assert_eq!(page["has_more"], true);

    // Replay the one that succeeded: it is sent again now, with the same id and body.
    let replay = format!(
        "/v1/webhooks/{id}/deliveries/{}/retry",
        delivered["id"].as_str().unwrap()
    );
    let (status, _) = app.post(&replay, &app.test_key, &json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(dispatch(&app).await, 1);
    let got = receiver.got.lock().unwrap().clone();
    let replayed: Vec<_> = got
        .iter()
        .filter(|(h, _)| h["webhook-id"] == delivered["id"].as_str().unwrap())
        .collect();
    assert_eq!(replayed.len(), 2);
    assert_eq!(replayed[0].1, replayed[1].1);
    let (status, _) = app
        .post(
            &format!("/v1/webhooks/{id}/deliveries/whd_nope/retry"),
            &app.test_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn expiry_fires_message_expired(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    create(&app, json!({"url": url})).await;
    let msg = app.send("+447700900001", "too late").await;
    app.advance_and_drain(Duration::from_secs(86_401)).await;
    while dispatch(&app).await > 0 {}
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["type"], "message.expired");
    assert_eq!(bodies[0]["data"]["id"], msg["id"]);
    assert_eq!(bodies[0]["data"]["error_code"], "expired");
    app.stop().await;
}

async fn five_days_without_a_success_disable_an_endpoint(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    receiver
        .script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((503, None), 50));
    let e = create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    app.send("+447700900001", "one").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 1);
    app.clock.advance(Duration::from_secs(4 * 24 * 3600));
    app.send("+447700900001", "two").await;
    app.drain().await;
    while dispatch(&app).await > 0 {}
    let (_, ep) = app
        .get(
            &format!("/v1/webhooks/{}", e["id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(ep["enabled"], true, "four days of failures are not enough");
    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    app.send("+447700900001", "three").await;
    app.drain().await;
    while dispatch(&app).await > 0 {}
    let (_, ep) = app
        .get(
            &format!("/v1/webhooks/{}", e["id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(ep["enabled"], false);
    assert!(
        ep["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("five days")
    );
    app.stop().await;
}

/// Subscribes a receiver to message.received; returns it with its secret.
pub async fn receive_inbound(app: &TestApp) -> (Receiver, String) {
    let (url, receiver) = Receiver::start().await;
    let e = create(app, json!({"url": url, "events": ["message.received"]})).await;
    (receiver, e["secret"].as_str().unwrap().to_string())
}

/// Delivers what is due and returns the one message.received the receiver
/// got, its signature checked by the official Python library.
pub async fn one_signed_inbound(app: &TestApp, receiver: &Receiver, secret: &str) -> Value {
    while dispatch(app).await > 0 {}
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (headers, body) = &got[0];
    assert!(python_verifies(secret, headers, body), "{body}");
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "message.received");
    event["data"].clone()
}

/// A handset's reply to a sandbox number the tenant rents: kept for it,
/// listed with direction=inbound, and a signed message.received webhook; not
/// for another tenant, nor for a number nobody rents.
async fn inbound_sms_reaches_the_tenant_signed(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    let e = create(&app, json!({"url": url, "events": ["message.received"]})).await;
    let secret = e["secret"].as_str().unwrap().to_string();
    let (status, n) = app
        .post(
            "/v1/numbers",
            &app.test_key,
            &json!({"number": "+447700900123"}),
        )
        .await;
    assert_eq!(status, 201, "{n}");
    let reply = json!({"from": "07700 900001", "to": "+447700900123", "body": "YES please"});
    let (status, mo) = app.post("/v1/sandbox/inbound", &app.test_key, &reply).await;
    assert_eq!(status, 201, "{mo}");
    assert!(mo["id"].as_str().unwrap().starts_with("mo_"));
    assert_eq!(
        (mo["direction"].as_str(), mo["from"].as_str()),
        (Some("inbound"), Some("+447700900001"))
    );
    assert_eq!(mo["number_id"], n["id"]);
    assert_eq!(one_signed_inbound(&app, &receiver, &secret).await, mo);

    let (_, list) = app.get("/v1/sms?direction=inbound", &app.test_key).await;
    assert_eq!(list["data"], json!([mo]), "{list}");
    let (_, outbound) = app.get("/v1/sms", &app.test_key).await;
    assert_eq!(outbound["data"], json!([]));
    let other = app.line.create_tenant("Other").await.unwrap();
    let (_, theirs) = app
        .get("/v1/sms?direction=inbound", other.test_key.expose())
        .await;
    assert_eq!(theirs["data"], json!([]));
    let (status, err) = app
        .post("/v1/sandbox/inbound", other.test_key.expose(), &reply)
        .await;
    assert_problem(status, &err, 422, "invalid_request");
    let (status, err) = app.post("/v1/sandbox/inbound", &app.live_key, &reply).await;
    assert_problem(status, &err, 403, "test_key_required");
    let (status, err) = app.get("/v1/sms?direction=sideways", &app.test_key).await;
    assert_problem(status, &err, 422, "invalid_request");
    app.stop().await;
}

backends!(
    app with PRIVATE_OK in delivery:
    inbound_sms_reaches_the_tenant_signed,
    private_addresses_are_allowed_when_configured,
    two_dispatchers_never_send_one_delivery_twice,
    deliveries_are_listed_with_attempts_and_replayed,
    expiry_fires_message_expired,
    five_days_without_a_success_disable_an_endpoint,
    every_status_change_arrives_once_signed,
    retries_follow_the_schedule_and_gone_disables,
    rotation_signs_with_both_secrets_for_a_day,
    a_dispatcher_killed_mid_delivery_loses_nothing,
);

/// With private addresses refused, an endpoint that now resolves to loopback
/// (here: stored before the guard) is refused at delivery time too.
async fn delivery_time_guard_refuses_internal_addresses(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    let now = app.clock.now();
    app.line
        .store
        .create_endpoint(
            &line::store::StoredEndpoint {
                id: "wh_sneaky".to_string().into(),
                tenant_id: app.tenant_id.clone(),
                url,
                description: None,
                events: line::domain::webhook::EventSet::All,
                secret: line::domain::webhook::new_secret(),
                previous_secret: None,
                previous_secret_until: None,
                enabled: true,
                disabled_reason: None,
                created_at: now,
                updated_at: now,
            },
            None,
        )
        .await
        .unwrap();
    app.send("+447700900001", "hello").await;
    app.drain().await;
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(receiver.count(), 0, "nothing reached the internal address");
    let error = app
        .sql_text("SELECT error FROM webhook_attempts")
        .await
        .unwrap();
    assert!(error.starts_with("refused"), "{error}");
    app.stop().await;
}

/// Two dispatchers on one database split the work and send nothing twice.
async fn two_dispatchers_never_send_one_delivery_twice(app: TestApp) {
    let (url, receiver) = Receiver::start().await;
    create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    for i in 0..40 {
        app.send("+447700900001", &format!("m{i}")).await;
    }
    app.drain().await;
    let (one, two) = (app.line.dispatcher(), app.line.dispatcher());
    loop {
        let (a, b) = tokio::join!(one.run_once(), two.run_once());
        if a.unwrap() + b.unwrap() == 0 {
            break;
        }
    }
    let got = receiver.got.lock().unwrap().clone();
    let mut ids: Vec<&str> = got
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (40, 40));
    app.stop().await;
}

/// A receiver that holds each request for `hold` and counts how many it
/// holds at once.
async fn slow_receiver(
    hold: Duration,
) -> (
    String,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (now.clone(), most.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                n.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, now, most)
}

const FOUR_AT_ONCE: &str =
    "[webhooks]\nallow_private_addresses = true\nin_flight_per_endpoint = 4\n";

/// One endpoint gets up to its in-flight limit at once, never more.
async fn one_endpoint_gets_deliveries_side_by_side_up_to_its_limit(app: TestApp) {
    let (url, _, most) = slow_receiver(Duration::from_millis(300)).await;
    create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    for i in 0..10 {
        app.send(&format!("+4477009000{i:02}"), "hello").await;
    }
    app.drain().await;
    let mut attempted = 0;
    while attempted < 10 {
        let n = dispatch(&app).await;
        assert!(n > 0, "deliveries left undelivered");
        attempted += n;
    }
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 4);
    let (_, list) = app.get("/v1/webhooks", &app.test_key).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (_, deliveries) = app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?limit=100"),
            &app.test_key,
        )
        .await;
    let data = deliveries["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    assert!(
        data.iter().all(|d| d["status"] == "succeeded"),
        "{deliveries}"
    );
}

/// The running dispatcher keeps delivering to a healthy endpoint while
/// another endpoint sits on its requests.
async fn a_hanging_endpoint_holds_back_no_other(app: TestApp) {
    let (hanging, held, _) = slow_receiver(Duration::from_secs(5)).await;
    let (url, healthy) = Receiver::start().await;
    create(&app, json!({"url": hanging, "events": ["message.sent"]})).await;
    app.send("+447700900001", "first").await;
    app.drain().await;
    let (trigger, shutdown) = line::infra::shutdown::channel();
    let running = tokio::spawn(
        app.line
            .dispatcher()
            .run(shutdown, Duration::from_millis(20)),
    );
    let started = std::time::Instant::now();
    while held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the hanging endpoint got nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Now another tenant's healthy endpoint gets an event.
    let other = app.line.create_tenant("Other").await.unwrap();
    let (status, _) = app
        .post(
            "/v1/webhooks",
            other.test_key.expose(),
            &json!({"url": url, "events": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .post(
            "/v1/sms",
            other.test_key.expose(),
            &json!({"to": "+447700900002", "body": "second"}),
        )
        .await;
    assert_eq!(status, 202);
    app.drain().await;
    while healthy.count() == 0 {
        assert!(
            held.load(std::sync::atomic::Ordering::SeqCst) == 1,
            "the healthy webhook must arrive while the other is still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trigger.trigger();
    running.await.unwrap();
}

/// The running dispatcher keeps an endpoint at its limit, no more, until all is delivered.
async fn the_running_dispatcher_keeps_each_endpoint_within_its_limit(app: TestApp) {
    use std::sync::atomic::Ordering;
    let (url, now, most) = slow_receiver(Duration::from_millis(200)).await;
    create(&app, json!({"url": url, "events": ["message.sent"]})).await;
    for i in 0..12 {
        app.send(&format!("+4477009001{i:02}"), "hello").await;
    }
    app.drain().await;
    let (trigger, shutdown) = line::infra::shutdown::channel();
    let running = tokio::spawn(
        app.line
            .dispatcher()
            .run(shutdown, Duration::from_millis(20)),
    );
    let succeeded =
        "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_deliveries WHERE status = 'succeeded'";
    let started = std::time::Instant::now();
    while app.sql_text(succeeded).await.as_deref() != Some("12") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not all delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    running.await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 4, "four at once, never more");
    assert_eq!(now.load(Ordering::SeqCst), 0);
}

backends!(app with FOUR_AT_ONCE in side_by_side:
    one_endpoint_gets_deliveries_side_by_side_up_to_its_limit,
    the_running_dispatcher_keeps_each_endpoint_within_its_limit,
    a_hanging_endpoint_holds_back_no_other,
);
