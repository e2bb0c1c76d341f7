//! The ledger, usage and account settings through HTTP, on both backends.

use std::time::Duration;

use crate::common::{self, TestApp, assert_problem};
use serde_json::{Value, json};

async fn send_live(app: &TestApp, to: &str, body: &str) -> (u16, Value) {
    app.post("/v1/sms", &app.live_key, &json!({"to": to, "body": body}))
        .await
}

async fn patch(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .patch(app.url("/v1/account"))
        .bearer_auth(&app.live_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    common::decode(resp).await
}

async fn usage(app: &TestApp, period: &str) -> Value {
    let (status, u) = app
        .get(&format!("/v1/usage?period={period}"), &app.live_key)
        .await;
    assert_eq!(status, 200, "{u}");
    u
}

/// Live sends are charged per segment when accepted; one that expires in the
/// queue is refunded; usage is the ledger to the penny, by day.
async fn usage_is_what_was_sent_less_refunds(app: TestApp) {
    let long = "x".repeat(200); // two GSM-7 segments
    let mut period = String::new();
    for body in ["one", long.as_str(), "three"] {
        let (status, msg) = send_live(&app, "+447400123456", body).await;
        assert_eq!(status, 202, "{msg}");
        period = msg["created_at"].as_str().unwrap()[..7].to_string();
    }
    app.drain().await;
    let u = usage(&app, &period).await;
    assert_eq!(
        (
            u["messages"].as_i64(),
            u["segments"].as_i64(),
            u["sms_pence"].as_i64()
        ),
        (Some(3), Some(4), Some(4)),
        "{u}"
    );
    assert_eq!(u["total_pence"], 4);
    assert_eq!(u["refunds_pence"], 0);

    // One more that no carrier takes within its validity: charged, then refunded.
    let (status, late) = send_live(&app, "+447400123457", "too late").await;
    assert_eq!(status, 202, "{late}");
    app.advance_and_drain(Duration::from_secs(86_401)).await;
    let (_, msg) = app
        .get(
            &format!("/v1/sms/{}", late["id"].as_str().unwrap()),
            &app.live_key,
        )
        .await;
    assert_eq!(msg["status"], "expired", "{msg}");
    let u = usage(&app, &period).await;
    assert_eq!(
        (u["messages"].as_i64(), u["segments"].as_i64()),
        (Some(3), Some(4)),
        "{u}"
    );
    assert_eq!(
        (u["sms_pence"].as_i64(), u["refunds_pence"].as_i64()),
        (Some(5), Some(1))
    );
    assert_eq!(u["total_pence"], 4);
    let days = u["by_day"].as_array().unwrap();
    let by_day: i64 = days
        .iter()
        .map(|d| d["total_pence"].as_i64().unwrap())
        .sum();
    assert_eq!(by_day, 4, "{u}");
    assert!(days[0]["date"].as_str().unwrap().starts_with(&period));
    // Test keys cost nothing and leave no entry.
    app.send("+447700900001", "free").await;
    assert_eq!(usage(&app, &period).await["total_pence"], 4);
    let (status, err) = app.get("/v1/usage?period=2026-13", &app.live_key).await;
    assert_problem(status, &err, 422, "invalid_request");
    app.stop().await;
}

/// A monthly cap of 3p: the third penny fits, the fourth does not; a refund
/// gives its penny back to the cap.
const CAP_3P: &str = "[limits]\nmonthly_spend_cap_pence = 3";

async fn the_cap_holds_at_its_boundary_and_refunds_free_it(app: TestApp) {
    for i in 0..3 {
        let (status, msg) = send_live(&app, "+447400123456", &format!("m{i}")).await;
        assert_eq!(status, 202, "{msg}");
    }
    let (status, err) = send_live(&app, "+447400123456", "m3").await;
    assert_problem(status, &err, 402, "spend_cap_reached");
    let (_, u) = app.get("/v1/usage", &app.live_key).await;
    assert_eq!(
        (
            u["total_pence"].as_i64(),
            u["spend_cap_remaining_pence"].as_i64()
        ),
        (Some(3), Some(0)),
        "{u}"
    );
    // The three expire unsent (no worker ran): each is refunded.
    app.advance_and_drain(Duration::from_secs(86_401)).await;
    let (status, msg) = send_live(&app, "+447400123456", "m4").await;
    assert_eq!(status, 202, "{msg}");
    app.stop().await;
}

/// Two servers on one database, 20 sends at once against a 10p cap: exactly
/// ten are accepted.
async fn the_cap_holds_across_two_servers(one: TestApp) {
    let two = one.sibling("[limits]\nmonthly_spend_cap_pence = 10").await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| json!({"to": "+447400123456", "body": format!("m{i}")}))
        .collect();
    let sends = bodies.iter().enumerate().map(|(i, body)| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.post("/v1/sms", &one.live_key, body)
    });
    let results = futures_util::future::join_all(sends).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 402 && b["code"] == "spend_cap_reached")
        .count();
    assert_eq!((accepted, refused), (10, 10), "{results:?}");
    let (_, u) = one.get("/v1/usage", &one.live_key).await;
    assert_eq!(u["total_pence"], 10, "{u}");
    two.stop().await;
    one.stop().await;
}

const CAP_10P: &str = "[limits]\nmonthly_spend_cap_pence = 10";

/// Settings change what the API accepts, at once.
async fn account_settings_change_what_the_api_accepts(app: TestApp) {
    let (status, a) = app.get("/v1/account", &app.live_key).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["name"], "Acme");
    assert_eq!(a["allowed_countries"], json!(["GB"]));
    assert_eq!(a["default_sender"], Value::Null);
    assert_eq!(
        (
            a["spend_cap_pence"].as_i64(),
            a["spend_cap_is_default"].as_bool()
        ),
        (Some(10000), Some(true))
    );

    let irish = "+353851234567";
    let (status, err) = send_live(&app, irish, "hi").await;
    assert_problem(status, &err, 403, "destination_not_allowed");
    let (status, a) = patch(
        &app,
        json!({"allowed_countries": ["gb", "IE"], "default_sender": "AcmeBank", "name": "Acme Bank", "spend_cap_pence": 2}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["allowed_countries"], json!(["GB", "IE"]));
    assert_eq!(
        (
            a["spend_cap_pence"].as_i64(),
            a["spend_cap_is_default"].as_bool()
        ),
        (Some(2), Some(false))
    );
    let (status, msg) = send_live(&app, irish, "hi").await;
    assert_eq!(status, 202, "{msg}");
    assert_eq!(msg["from"], "AcmeBank");
    let (status, _) = send_live(&app, "+447400123456", "second penny").await;
    assert_eq!(status, 202);
    let (status, err) = send_live(&app, "+447400123456", "third penny").await;
    assert_problem(status, &err, 402, "spend_cap_reached");
    // The name is the OTP brand.
    let (status, _) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900123"}))
        .await;
    assert_eq!(status, 201);
    let (_, inbox) = app
        .get("/v1/sandbox/messages?to=%2B447700900123", &app.test_key)
        .await;
    app.drain().await;
    let (_, inbox_after) = app
        .get("/v1/sandbox/messages?to=%2B447700900123", &app.test_key)
        .await;
    let text = format!("{inbox}{inbox_after}");
    assert!(text.contains("Your Acme Bank code is"), "{text}");

    // null puts a setting back to the service's default; bad values change nothing.
    let (status, a) = patch(
        &app,
        json!({"spend_cap_pence": null, "default_sender": null}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["spend_cap_pence"].as_i64(), a["default_sender"].clone()),
        (Some(10000), Value::Null)
    );
    for (body, param) in [
        (json!({"allowed_countries": ["XX"]}), "allowed_countries"),
        (json!({"allowed_countries": []}), "allowed_countries"),
        (json!({"spend_cap_pence": 0}), "spend_cap_pence"),
        (json!({"spend_cap_pence": 100001}), "spend_cap_pence"),
        (json!({"name": " "}), "name"),
        (json!({"default_sender": "Not Valid!"}), "default_sender"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, err) = patch(&app, body.clone()).await;
        assert_problem(status, &err, 422, "invalid_request");
        assert_eq!(err["param"], param, "{body} {err}");
    }
    let (_, a) = app.get("/v1/account", &app.live_key).await;
    assert_eq!(a["name"], "Acme Bank");
    // Test keys read the settings but do not change them.
    let resp = app
        .client
        .patch(app.url("/v1/account"))
        .bearer_auth(&app.test_key)
        .json(&json!({"spend_cap_pence": 100000}))
        .send()
        .await
        .unwrap();
    let (status, err) = common::decode(resp).await;
    assert_problem(status, &err, 403, "live_key_required");
    app.stop().await;
}

backends!(
    app:
    usage_is_what_was_sent_less_refunds,
    account_settings_change_what_the_api_accepts,
);
backends!(app with CAP_3P in cap_3p: the_cap_holds_at_its_boundary_and_refunds_free_it);
backends!(app with CAP_10P in cap_10p: the_cap_holds_across_two_servers);
