//! POST /v1/sms to the sandbox and back, on PostgreSQL and SQLite.

use crate::common;

use std::time::Duration;

use common::{TestApp, assert_problem};
use serde_json::{Value, json};

const RECEIPT: Duration = Duration::from_millis(1100);

fn statuses(msg: &Value) -> Vec<String> {
    msg["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

async fn message(app: &TestApp, id: &str) -> Value {
    let (status, msg) = app.get(&format!("/v1/sms/{id}"), &app.test_key).await;
    assert_eq!(status, 200, "{msg}");
    msg
}

async fn sandbox_send_is_delivered_and_body_erased(app: TestApp) {
    let msg = app.send("07700 900123", "Your code is 123456").await;
    let id = msg["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("msg_"));
    assert_eq!(msg["to"], "+447700900123");
    assert_eq!(msg["status"], "queued");
    assert_eq!(msg["mode"], "test");
    assert_eq!(msg["encoding"], "gsm7");
    assert_eq!(msg["segments"], 1);
    assert_eq!(msg["price_pence"], 0, "test keys cost nothing");
    assert_eq!(msg["from"], "Line");
    assert!(msg.get("body").is_none(), "bodies are never returned");
    // Committed before the 202: the body is there until a carrier accepts it.
    let sql = format!("SELECT body FROM messages WHERE id = '{id}'");
    assert_eq!(
        app.sql_text(&sql).await.as_deref(),
        Some("Your code is 123456")
    );

    app.drain().await;
    let sent = message(&app, &id).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(app.sql_text(&sql).await, None, "body erased once accepted");
    let hash = format!("SELECT body_hmac FROM messages WHERE id = '{id}'");
    assert_eq!(app.sql_text(&hash).await.unwrap().len(), 64);

    app.advance_and_drain(RECEIPT).await;
    let done = message(&app, &id).await;
    assert_eq!(done["status"], "delivered");
    assert_eq!(statuses(&done), ["queued", "sent", "delivered"]);

    let (status, inbox) = app
        .get("/v1/sandbox/messages?to=%2B447700900123", &app.test_key)
        .await;
    assert_eq!(status, 200);
    let data = inbox["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["message_id"], id.as_str());
    assert_eq!(data[0]["body"], "Your code is 123456");
    app.stop().await;
}

async fn magic_numbers_reach_their_final_status(app: TestApp) {
    let cases = [
        ("+447700900000", "delivered"),
        ("+447700900899", "delivered"),
        ("+447700900900", "undelivered"),
        ("+447700900949", "undelivered"),
        ("+447700900950", "failed"),
        ("+447700900999", "failed"),
        ("+447400123456", "delivered"),
    ];
    let mut ids = Vec::new();
    for (to, _) in cases {
        ids.push(
            app.send(to, "hello").await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    app.drain().await;
    app.advance_and_drain(RECEIPT).await;
    for ((to, want), id) in cases.iter().zip(&ids) {
        let msg = message(&app, id).await;
        assert_eq!(msg["status"], *want, "{to}: {msg}");
        if *want == "failed" {
            assert_eq!(msg["error_code"], "carrier_rejected");
            assert_eq!(statuses(&msg), ["queued", "failed"]);
        } else {
            assert_eq!(statuses(&msg), ["queued", "sent", *want]);
        }
    }
    // Rejected messages never reached a handset; the others did, once each.
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 5);
    let sql = format!("SELECT body FROM messages WHERE id = '{}'", ids[4]);
    assert_eq!(
        app.sql_text(&sql).await,
        None,
        "failed messages lose their body too"
    );
    app.stop().await;
}

async fn live_keys_are_priced_and_refuse_the_drama_range(app: TestApp) {
    let long = "a".repeat(161);
    let (status, msg) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "07400 123456", "body": long}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    assert_eq!(msg["mode"], "live");
    assert_eq!(msg["segments"], 2);
    assert_eq!(msg["price_pence"], 2);
    let (status, err) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "+447700900123", "body": "x"}),
        )
        .await;
    assert_problem(status, &err, 422, "invalid_phone_number");
    assert_eq!(err["param"], "to");
    // The live key's sandbox inbox is refused.
    let (status, err) = app.get("/v1/sandbox/messages", &app.live_key).await;
    assert_problem(status, &err, 403, "test_key_required");
    app.stop().await;
}

async fn bad_requests_get_the_one_error_shape(app: TestApp) {
    let key = app.test_key.clone();
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"to": "hello", "body": "x"}),
            422,
            "invalid_phone_number",
            Some("to"),
        ),
        (
            json!({"to": "+44 1234", "body": "x"}),
            422,
            "invalid_phone_number",
            Some("to"),
        ),
        (
            json!({"to": "+33612345678", "body": "x"}),
            403,
            "destination_not_allowed",
            Some("to"),
        ),
        (
            json!({"to": "+447700900001", "body": ""}),
            422,
            "invalid_request",
            Some("body"),
        ),
        (
            json!({"to": "+447700900001", "body": "a".repeat(1531)}),
            422,
            "body_too_long",
            Some("body"),
        ),
        (
            json!({"to": "+447700900001", "body": "😀".repeat(336)}),
            422,
            "body_too_long",
            Some("body"),
        ),
        (
            json!({"to": "+447700900001", "body": "x", "colour": "red"}),
            422,
            "invalid_request",
            Some("colour"),
        ),
        (
            json!({"to": 447700900001u64, "body": "x"}),
            422,
            "invalid_request",
            Some("to"),
        ),
        (json!({"body": "x"}), 422, "invalid_request", None),
        (
            json!({"to": "+447700900001", "body": "x", "from": "Not Valid!"}),
            422,
            "invalid_request",
            Some("from"),
        ),
        (
            json!({"to": "+447700900001", "body": "x", "reference": "r".repeat(129)}),
            422,
            "invalid_request",
            Some("reference"),
        ),
    ];
    for (body, want_status, code, param) in cases {
        let (status, err) = app.post("/v1/sms", &key, &body).await;
        assert_problem(status, &err, want_status, code);
        if let Some(param) = param {
            assert_eq!(err["param"], param, "{body}: {err}");
        }
    }
    // Not JSON at all.
    let resp = app
        .client
        .post(app.url("/v1/sms"))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, err) = common::decode(resp).await;
    assert_problem(status, &err, 400, "invalid_json");
    // Keys: missing, malformed, unknown, revoked.
    let resp = app
        .client
        .post(app.url("/v1/sms"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, err) = common::decode(resp).await;
    assert_problem(status, &err, 401, "unauthorized");
    for bad in ["nope", "line_test_0000000000000000000000000000000"] {
        let (status, err) = app
            .post("/v1/sms", bad, &json!({"to": "+447700900001", "body": "x"}))
            .await;
        assert_problem(status, &err, 401, "unauthorized");
    }
    let (key_id, revoked) = app
        .line
        .create_key(&app.tenant_id, line::domain::Mode::Test)
        .await
        .unwrap();
    assert!(
        app.line
            .store
            .revoke_api_key(None, &key_id, app.clock.now())
            .await
            .unwrap()
    );
    let (status, err) = app
        .post(
            "/v1/sms",
            revoked.expose(),
            &json!({"to": "+447700900001", "body": "x"}),
        )
        .await;
    assert_problem(status, &err, 401, "unauthorized");
    // Unknown ids, unknown routes, wrong methods, bad query parameters.
    let (status, err) = app.get("/v1/sms/msg_nope", &key).await;
    assert_problem(status, &err, 404, "not_found");
    let (status, err) = app.get("/v1/nothing", &key).await;
    assert_problem(status, &err, 404, "not_found");
    let resp = app
        .client
        .delete(app.url("/v1/sms"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, err) = common::decode(resp).await;
    assert_problem(status, &err, 405, "method_not_allowed");
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=lost", "status"),
        ("to=abc", "to"),
    ] {
        let (status, err) = app.get(&format!("/v1/sms?{query}"), &key).await;
        assert_eq!(status, 422, "{query}: {err}");
        assert_eq!(err["param"], param, "{query}: {err}");
    }
    let (status, err) = app.get("/v1/sms?limit=lots", &key).await;
    assert_problem(status, &err, 422, "invalid_request");
    // Nothing was queued by any of it.
    let (_, list) = app.get("/v1/sms", &key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    app.stop().await;
}

async fn encodings_and_segments(app: TestApp) {
    let cases = [
        ("a".repeat(160), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        ("€".repeat(80), "gsm7", 1),
        ("€".repeat(81), "gsm7", 2),
        ("Hi 😀".to_string(), "ucs2", 1),
        ("😀".repeat(36), "ucs2", 2),
    ];
    for (body, encoding, segments) in cases {
        let msg = app.send("+447700900001", &body).await;
        assert_eq!(msg["encoding"], encoding, "{body}");
        assert_eq!(msg["segments"], segments, "{body}");
    }
    app.stop().await;
}

async fn tenants_never_see_each_other(app: TestApp) {
    let mine = app.send("+447700900001", "mine").await;
    let other = app.line.create_tenant("Other").await.unwrap();
    let other_key = other.test_key.expose().to_string();
    let id = mine["id"].as_str().unwrap();
    let (status, err) = app.get(&format!("/v1/sms/{id}"), &other_key).await;
    assert_problem(status, &err, 404, "not_found");
    let (_, list) = app.get("/v1/sms", &other_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    app.drain().await;
    let (_, inbox) = app.get("/v1/sandbox/messages", &other_key).await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 0);
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn list_pages_newest_first_with_filters(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "+447700900001"
        } else {
            "+447700900950"
        };
        ids.push(
            app.send(to, &format!("n{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/sms?limit=2&starting_after={c}"),
            None => "/v1/sms?limit=2".to_string(),
        };
        let (status, page) = app.get(&q, &app.test_key).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        pages += 1;
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = seen.last().cloned();
    }
    assert_eq!(pages, 3);
    // ULIDs made in the same millisecond may tie on time: compare as sets, and
    // check the order is the id order the API promises.
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
    let mut want = newest_first.clone();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want);

    let (_, by_to) = app.get("/v1/sms?to=07700900950", &app.test_key).await;
    assert_eq!(by_to["data"].as_array().unwrap().len(), 2);
    app.drain().await;
    let (_, failed) = app.get("/v1/sms?status=failed", &app.test_key).await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 2);
    assert!(
        failed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "failed")
    );
    let (_, sent) = app
        .get("/v1/sms?status=sent&limit=100", &app.test_key)
        .await;
    assert_eq!(sent["data"].as_array().unwrap().len(), 3);
    app.stop().await;
}

async fn idempotency_keys_send_once(app: TestApp) {
    let body = json!({"to": "+447700900001", "body": "once"});
    let send = |key: &'static str, body: Value| {
        let req = app
            .client
            .post(app.url("/v1/sms"))
            .bearer_auth(&app.test_key)
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            let (status, value) = common::decode(resp).await;
            (status, value, replayed)
        }
    };
    let (s1, first, r1) = send("k-1", body.clone()).await;
    let (s2, second, r2) = send("k-1", body.clone()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(
        first, second,
        "the same key and body replay the first response"
    );
    assert!(!r1 && r2);
    // Same request with its keys in another order is the same request.
    let (s3, third, _) = send("k-1", json!({"body": "once", "to": "+447700900001"})).await;
    assert_eq!((s3, &third), (202, &first));
    let (status, err, _) = send("k-1", json!({"to": "+447700900001", "body": "twice"})).await;
    assert_problem(status, &err, 422, "idempotency_key_reused");

    // Two at once with one key: one message, the same answer to both.
    let (a, b) = tokio::join!(send("k-2", body.clone()), send("k-2", body.clone()));
    assert_eq!((a.0, b.0), (202, 202), "{} {}", a.1, b.1);
    assert_eq!(a.1["id"], b.1["id"]);

    let (_, list) = app.get("/v1/sms", &app.test_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    app.drain().await;
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    assert_eq!(
        inbox["data"].as_array().unwrap().len(),
        2,
        "nothing sent twice"
    );

    // After 24 hours the key may be used afresh.
    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    app.line.worker().cleanup().await.unwrap();
    let (status, again, replayed) =
        send("k-1", json!({"to": "+447700900001", "body": "later"})).await;
    assert_eq!(status, 202, "{again}");
    assert!(!replayed);
    app.stop().await;
}

async fn concurrent_sends_are_each_committed_once(app: TestApp) {
    // Many requests at once land in shared commits: plain ones, and pairs that
    // share an Idempotency-Key, which must still come out as one message each.
    // Each plain one has its own number and reference: a batch written many
    // rows to a statement keeps each row's fields its own.
    let mut calls = Vec::new();
    for i in 0..120 {
        let key = (i >= 80).then(|| format!("pair-{}", i % 20));
        let body = match &key {
            Some(_) => json!({"to": "+447700900001", "body": "keyed"}),
            None => {
                json!({"to": format!("+447700900{:03}", 100 + i), "body": format!("plain {i}"), "reference": format!("ref-{i}")})
            }
        };
        let mut req = app
            .client
            .post(app.url("/v1/sms"))
            .bearer_auth(&app.test_key)
            .json(&body);
        if let Some(key) = &key {
            req = req.header("Idempotency-Key", key);
        }
        calls.push(async move {
            let (status, msg) = common::decode(req.send().await.unwrap()).await;
            assert_eq!(status, 202, "{msg}");
            let id = msg["id"].as_str().unwrap().to_string();
            let sent = key
                .is_none()
                .then(|| (msg["to"].clone(), msg["reference"].clone()));
            (key, id, sent)
        });
    }
    let results = futures_util::future::join_all(calls).await;
    let mut by_key = std::collections::HashMap::new();
    for (key, id, _) in &results {
        if let Some(key) = key {
            let first = by_key.entry(key.clone()).or_insert_with(|| id.clone());
            assert_eq!(first, id, "both requests with {key} got one message");
        }
    }
    assert_eq!(by_key.len(), 20);
    let mut ids = std::collections::HashSet::new();
    let mut stored = std::collections::HashMap::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app
            .get(&format!("/v1/sms?limit=100{cursor}"), &app.test_key)
            .await;
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        stored.extend(data.iter().map(|m| {
            let id = m["id"].as_str().unwrap().to_string();
            (id, (m["to"].clone(), m["reference"].clone()))
        }));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = format!(
            "&starting_after={}",
            data.last().unwrap()["id"].as_str().unwrap()
        );
    }
    assert_eq!(ids.len(), 80 + 20);
    assert!(results.iter().all(|(_, id, _)| ids.contains(id)));
    for (_, id, sent) in &results {
        if let Some(sent) = sent {
            assert_eq!(&stored[id], sent, "{id} as stored");
        }
    }
    app.stop().await;
}

async fn a_worker_killed_mid_batch_loses_and_repeats_nothing(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            app.send("+447700900001", &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let store = app.line.store.clone();
    // A worker claims the whole batch, hands half of it to the carrier, records
    // two of those, and dies.
    let now = app.clock.now();
    let claimed = store
        .claim_messages(&claim(now, "dead-worker"))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 10);
    let sandbox = line::carrier::Sandbox::new("sandbox", store.clone(), app.clock.clone(), RECEIPT);
    for msg in &claimed[..5] {
        let accepted = line::carrier::Carrier::submit(&sandbox, msg).await.unwrap();
        if msg.id == claimed[0].id || msg.id == claimed[1].id {
            let sent = line::store::SubmitResult::Sent {
                carrier: "sandbox".into(),
                carrier_message_ids: accepted.carrier_message_ids,
            };
            assert_eq!(
                store
                    .finish_submits(&[finish(&msg.id, sent, now)])
                    .await
                    .unwrap(),
                [true]
            );
        }
    }
    // Its leases hold: a live worker finds nothing to do yet.
    app.drain().await;
    let (_, queued) = app.get("/v1/sms?status=queued", &app.test_key).await;
    assert_eq!(queued["data"].as_array().unwrap().len(), 8);
    // The leases expire; another worker takes them over.
    app.clock.advance(Duration::from_secs(61));
    let later = app.clock.now();
    let retaken = store
        .claim_messages(&claim(later, "worker-b"))
        .await
        .unwrap();
    assert_eq!(retaken.len(), 8);
    // The dead worker's late word is refused: the lease is no longer its own.
    let late = line::store::SubmitResult::Failed {
        code: "x".into(),
        message: "late".into(),
    };
    assert_eq!(
        store
            .finish_submits(&[finish(&claimed[9].id, late, later)])
            .await
            .unwrap(),
        [false]
    );
    // A worker shutting down gives its leases back at once.
    assert_eq!(store.release_leases("worker-b").await.unwrap(), 8);
    app.drain().await;
    let (_, queued) = app.get("/v1/sms?status=queued", &app.test_key).await;
    assert_eq!(queued["data"].as_array().unwrap().len(), 0);

    app.advance_and_drain(RECEIPT).await;
    for id in &ids {
        let msg = message(&app, id).await;
        assert_eq!(statuses(&msg), ["queued", "sent", "delivered"], "{msg}");
    }
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    let mut got: Vec<String> = inbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every message reached its handset exactly once");
    app.stop().await;
}

async fn messages_no_carrier_accepts_in_time_expire(app: TestApp) {
    let msg = app.send("+447700900001", "too late").await;
    app.advance_and_drain(Duration::from_secs(86_401)).await;
    let msg = message(&app, msg["id"].as_str().unwrap()).await;
    assert_eq!(msg["status"], "expired");
    assert_eq!(msg["error_code"], "expired");
    assert_eq!(statuses(&msg), ["queued", "expired"]);
    app.stop().await;
}

async fn health_readiness_and_openapi(app: TestApp) {
    let (status, _) = app.get("/healthz", "").await;
    assert_eq!(status, 200);
    let (status, ready) = app.get("/readyz", "").await;
    assert_eq!((status, &ready["status"]), (200, &json!("ready")));
    let (status, doc) = app.get("/v1/openapi.json", "").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/v1/sms", "post"),
        ("/v1/sms", "get"),
        ("/v1/sms/{id}", "get"),
        ("/v1/sandbox/messages", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/openapi.json", "get"),
        ("/v1/otp", "post"),
        ("/v1/otp/{id}", "get"),
        ("/v1/otp/{id}/verify", "post"),
        ("/v1/otp/verify", "post"),
        ("/v1/otp/{id}/resend", "post"),
        ("/v1/otp/{id}/cancel", "post"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks", "get"),
        ("/v1/webhooks/{id}", "get"),
        ("/v1/webhooks/{id}", "patch"),
        ("/v1/webhooks/{id}", "delete"),
        ("/v1/webhooks/{id}/rotate-secret", "post"),
        ("/v1/webhooks/{id}/deliveries", "get"),
        ("/v1/webhooks/{id}/deliveries/{delivery_id}/retry", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["Message"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["Verification"].is_object());
    app.stop().await;
}

/// Live sends stop at a monthly cap of 3p.
const SPEND_CAP: &str = "[limits]\nmonthly_spend_cap_pence = 3";

backends!(app with SPEND_CAP in capped_spend: replays_are_not_charged_again);

/// A replayed request is answered from its record before the cap counts it:
/// five sends with one key are one message and 1p, and the cap still has 2p.
async fn replays_are_not_charged_again(app: TestApp) {
    let body = json!({"to": "+447400123456", "body": "once"});
    for i in 0..5 {
        let (status, msg, replayed) = app.post_keyed("/v1/sms", &app.live_key, "k", &body).await;
        assert_eq!((status, replayed), (202, i > 0), "{msg}");
    }
    for i in 0..2 {
        let body = json!({"to": "+447400123456", "body": format!("other {i}")});
        let (status, msg) = app.post("/v1/sms", &app.live_key, &body).await;
        assert_eq!(status, 202, "{msg}");
    }
    let body = json!({"to": "+447400123456", "body": "one too many"});
    let (status, err) = app.post("/v1/sms", &app.live_key, &body).await;
    assert_problem(status, &err, 402, "spend_cap_reached");
    app.stop().await;
}

backends!(
    app:
    sandbox_send_is_delivered_and_body_erased,
    magic_numbers_reach_their_final_status,
    live_keys_are_priced_and_refuse_the_drama_range,
    bad_requests_get_the_one_error_shape,
    encodings_and_segments,
    tenants_never_see_each_other,
    list_pages_newest_first_with_filters,
    idempotency_keys_send_once,
    concurrent_sends_are_each_committed_once,
    a_worker_killed_mid_batch_loses_and_repeats_nothing,
    messages_no_carrier_accepts_in_time_expire,
    health_readiness_and_openapi,
);

/// An outcome recorded under the dead worker's lease.
fn claim(now: line::domain::message::Timestamp, token: &str) -> line::store::Claim {
    line::store::Claim {
        now,
        lease_until: now.plus_ms(60_000),
        token: token.into(),
        limit: 100,
    }
}

fn finish(
    id: &line::domain::ids::MessageId,
    result: line::store::SubmitResult,
    now: line::domain::message::Timestamp,
) -> line::store::Finish {
    line::store::Finish {
        id: id.clone(),
        token: "dead-worker".into(),
        result,
        now,
    }
}

/// Room for four messages at the handoff (four send loops, one message each).
const SMALL_BATCHES: &str = "[worker]\nbatch_size = 1";

backends!(app with SMALL_BATCHES in handoff: new_messages_go_to_the_worker_beside_the_api);

/// A worker running beside the API takes new messages as they are committed,
/// leased to it in their insert (no claim), up to its room; the rest are
/// queued for claims as before, and every message is sent once.
async fn new_messages_go_to_the_worker_beside_the_api(app: TestApp) {
    let worker = app.line.worker();
    assert!(worker.take_handoffs());
    assert!(!app.line.worker().take_handoffs(), "one worker at the desk");
    let mut ids = Vec::new();
    for i in 0..6 {
        let msg = app.send("+447700900001", &format!("message {i}")).await;
        ids.push(msg["id"].as_str().unwrap().to_string());
    }
    let lease = |id: &str| format!("SELECT lease_token FROM messages WHERE id = '{id}'");
    for (i, id) in ids.iter().enumerate() {
        let held = app.sql_text(&lease(id)).await;
        let want = (i < 4).then(|| worker.lease_token().to_string());
        assert_eq!(
            held, want,
            "message {i}: leased in its insert while there was room"
        );
    }
    let other = app.line.worker();
    let mut claimed = 0;
    while let n @ 1.. = other.claim().await.unwrap().len() {
        claimed += n;
    }
    assert_eq!(claimed, 2, "only the unleased are claimable");
    // Another worker holds those two now; this one sends its four from memory.
    let mut sent = 0;
    while let n @ 1.. = worker.send_once().await.unwrap() {
        sent += n;
    }
    assert_eq!(sent, 4);
    for (i, id) in ids.iter().enumerate() {
        let status = format!("SELECT status || ' ' || attempts FROM messages WHERE id = '{id}'");
        let want = if i < 4 { "sent 1" } else { "queued 1" };
        assert_eq!(
            app.sql_text(&status).await.as_deref(),
            Some(want),
            "message {i}"
        );
    }
    // The room is free again, and a code's message is handed over too.
    let (status, v) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900002"}))
        .await;
    assert_eq!(status, 201, "{v}");
    let held = format!(
        "SELECT m.lease_token FROM messages m JOIN verifications v ON v.message_id = m.id \
         WHERE v.id = '{}'",
        v["id"].as_str().unwrap()
    );
    assert_eq!(
        app.sql_text(&held).await.as_deref(),
        Some(worker.lease_token())
    );
    assert_eq!(worker.send_once().await.unwrap(), 1);
    app.stop().await;
}
