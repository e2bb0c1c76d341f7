//! Webhook endpoints: create, list, read, change, rotate, delete, and the SSRF
//! guard, on PostgreSQL and SQLite.

mod common;

use common::{TestApp, assert_problem};
use serde_json::{Value, json};

/// A public address given as a literal, so no DNS is needed.
const PUBLIC: &str = "https://93.184.216.34/hooks/line";

async fn create(app: &TestApp, body: Value) -> Value {
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

on_both_backends!(
    endpoints_are_managed_and_secrets_shown_once,
    bad_endpoints_are_refused
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_allowed_when_configured() {
    let app = TestApp::spawn_with(
        common::Backend::Sqlite,
        "[webhooks]\nallow_private_addresses = true",
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
    ] {
        create(&app, json!({"url": url})).await;
    }
    app.stop().await;
}
