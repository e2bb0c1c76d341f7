//! Numbers: the inventory, renting, releasing, renewals in the ledger, and
//! the sender rules, through HTTP on both backends.

use std::time::Duration;

use crate::common::{TestApp, assert_problem};
use line::domain::message::Pence;
use serde_json::{Value, json};

const MONTH: Duration = Duration::from_secs(31 * 86_400);

/// Puts numbers in the inventory as `line numbers import` does.
pub async fn import(app: &TestApp, numbers: &[(&str, i64)]) {
    let rows: Vec<(String, Pence)> = numbers
        .iter()
        .map(|(n, p)| (n.to_string(), Pence(*p)))
        .collect();
    app.line
        .store
        .import_numbers(&rows, app.clock.now())
        .await
        .unwrap();
}

/// POST /v1/numbers for `number` with `key`.
async fn rent(app: &TestApp, key: &str, number: &str) -> (u16, Value) {
    app.post("/v1/numbers", key, &json!({"number": number}))
        .await
}

/// Imports a number and rents it with the live key.
pub async fn rent_live(app: &TestApp, number: &str) -> Value {
    import(app, &[(number, 170)]).await;
    let (status, n) = rent(app, &app.live_key, number).await;
    assert_eq!(status, 201, "{n}");
    n
}

async fn usage(app: &TestApp, key: &str, period: &str) -> Value {
    let (status, u) = app.get(&format!("/v1/usage?period={period}"), key).await;
    assert_eq!(status, 200, "{u}");
    u
}

async fn delete(app: &TestApp, key: &str, id: &str) -> (u16, Value) {
    let resp = app
        .client
        .delete(app.url(&format!("/v1/numbers/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    crate::common::decode(resp).await
}

/// Rent, the fee in the ledger, another tenant refused, release, the rest
/// period, then the other tenant may rent it.
async fn rent_release_and_rest(app: TestApp) {
    import(&app, &[("+447400123456", 170), ("+447400123999", 250)]).await;
    let (status, list) = app
        .get("/v1/numbers/available?contains=123", &app.live_key)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["data"],
        json!([
            {"number": "+447400123456", "monthly_price_pence": 170},
            {"number": "+447400123999", "monthly_price_pence": 250},
        ])
    );
    let (status, n) = rent(&app, &app.live_key, "07400 123456").await;
    assert_eq!(status, 201, "{n}");
    let id = n["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("num_"));
    assert_eq!(
        (n["status"].as_str(), n["monthly_price_pence"].as_i64()),
        (Some("rented"), Some(170))
    );
    assert!(
        n["renews_at"].is_string() && n["released_at"].is_null(),
        "{n}"
    );
    let period = &n["rented_at"].as_str().unwrap()[..7];
    let u = usage(&app, &app.live_key, period).await;
    assert_eq!(
        (u["number_fees_pence"].as_i64(), u["total_pence"].as_i64()),
        (Some(170), Some(170)),
        "{u}"
    );
    let (_, list) = app.get("/v1/numbers/available", &app.live_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    let other = app.line.create_tenant("Other").await.unwrap();
    let other_key = other.live_key.expose().to_string();
    let (status, err) = rent(&app, &other_key, "+447400123456").await;
    assert_problem(status, &err, 409, "number_unavailable");
    let (status, err) = app.get(&format!("/v1/numbers/{id}"), &other_key).await;
    assert_problem(status, &err, 404, "not_found");
    let (status, err) = rent(&app, &app.live_key, "+447400000000").await;
    assert_problem(status, &err, 409, "number_unavailable");
    let (status, err) = rent(&app, &app.live_key, "+442079460000").await;
    assert_problem(status, &err, 422, "invalid_request");

    let (status, released) = delete(&app, &app.live_key, &id).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["status"], "released");
    assert!(released["renews_at"].is_null() && released["released_at"].is_string());
    let (status, again) = delete(&app, &app.live_key, &id).await;
    assert_eq!(
        (status, &again),
        (200, &released),
        "releasing twice changes nothing"
    );
    // It rests for 30 days.
    let (status, err) = rent(&app, &other_key, "+447400123456").await;
    assert_problem(status, &err, 409, "number_unavailable");
    app.clock.advance(Duration::from_secs(30 * 86_400 + 1));
    let (status, n) = rent(&app, &other_key, "+447400123456").await;
    assert_eq!(status, 201, "{n}");
    let (_, mine) = app.get("/v1/numbers", &app.live_key).await;
    assert_eq!(mine["data"][0]["status"], "released", "{mine}");
    app.stop().await;
}

/// Two tenants at once for one number: exactly one gets it.
async fn two_tenants_race_for_one_number(app: TestApp) {
    import(&app, &[("+447400123456", 170)]).await;
    let other = app.line.create_tenant("Other").await.unwrap();
    let keys = [app.live_key.clone(), other.live_key.expose().to_string()];
    let results =
        futures_util::future::join_all(keys.iter().map(|k| rent(&app, k, "+447400123456"))).await;
    let mut statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{results:?}");
    app.stop().await;
}

/// The monthly fee is charged at each renewal date, once, even with two
/// workers on one database; a released number costs nothing more.
async fn renewals_are_charged_once_a_month(app: TestApp) {
    let n = rent_live(&app, "+447400123456").await;
    let id = n["id"].as_str().unwrap();
    let first = n["renews_at"].as_str().unwrap().to_string();
    let two = app.sibling("").await;
    app.clock.advance(MONTH);
    let (w1, w2) = (app.line.worker(), two.line.worker());
    let (a, b) = tokio::join!(w1.renew_once(), w2.renew_once());
    assert_eq!(a.unwrap() + b.unwrap(), 1, "one renewal, whoever made it");
    assert_eq!(app.line.worker().renew_once().await.unwrap(), 0);
    let (_, n) = app.get(&format!("/v1/numbers/{id}"), &app.live_key).await;
    assert!(n["renews_at"].as_str().unwrap() > first.as_str(), "{n}");
    let u = usage(&app, &app.live_key, &first[..7]).await;
    assert_eq!(u["number_fees_pence"], 170, "{u}");
    assert_eq!(
        u["by_day"][0]["date"].as_str().unwrap(),
        &first[..10],
        "{u}"
    );
    delete(&app, &app.live_key, id).await;
    app.clock.advance(MONTH);
    assert_eq!(app.line.worker().renew_once().await.unwrap(), 0);
    two.stop().await;
    app.stop().await;
}

/// A number as `from` must be one the tenant rents, in the key's mode;
/// alphanumeric senders are free. Test keys rent sandbox numbers, free.
async fn senders_must_be_owned(app: TestApp) {
    let send = |key: &str, from: &str| {
        let body = json!({"to": "+447400123457", "body": "hi", "from": from});
        let key = key.to_string();
        let app = &app;
        async move { app.post("/v1/sms", &key, &body).await }
    };
    let (status, err) = send(&app.live_key, "+447400123456").await;
    assert_problem(status, &err, 422, "sender_not_allowed");
    assert_eq!(err["param"], "from");
    rent_live(&app, "+447400123456").await;
    let (status, msg) = send(&app.live_key, "+447400123456").await;
    assert_eq!(
        (status, msg["from"].as_str()),
        (202, Some("+447400123456")),
        "{msg}"
    );
    let (status, _) = send(&app.live_key, "Acme").await;
    assert_eq!(status, 202);
    // A repeat of a send from a number is answered as the first was, even
    // once the number is released.
    let (n, body) = (
        rent_live(&app, "+447400123458").await,
        json!({"to": "+447400123457", "body": "k", "from": "+447400123458"}),
    );
    let (s1, first, _) = app.post_keyed("/v1/sms", &app.live_key, "s-1", &body).await;
    delete(&app, &app.live_key, n["id"].as_str().unwrap()).await;
    let (s2, second, replayed) = app.post_keyed("/v1/sms", &app.live_key, "s-1", &body).await;
    assert_eq!((s1, s2, replayed, &first), (202, 202, true, &second));
    let (status, err) = app.post("/v1/sms", &app.live_key, &body).await;
    assert_problem(status, &err, 422, "sender_not_allowed");

    // The sandbox: free numbers in the drama range, each tenant its own.
    let (_, avail) = app
        .get("/v1/numbers/available?contains=900123", &app.test_key)
        .await;
    assert_eq!(
        avail["data"],
        json!([{"number": "+447700900123", "monthly_price_pence": 0}])
    );
    let (status, err) = send(&app.test_key, "+447700900123").await;
    assert_problem(status, &err, 422, "sender_not_allowed");
    let (status, n) = rent(&app, &app.test_key, "+447700900123").await;
    assert_eq!(
        (status, n["monthly_price_pence"].as_i64()),
        (201, Some(0)),
        "{n}"
    );
    let (status, err) = rent(&app, &app.test_key, "+447700900123").await;
    assert_problem(status, &err, 409, "number_unavailable");
    let body = json!({"to": "+447700900001", "body": "hi", "from": "+447700900123"});
    let (status, msg) = app.post("/v1/sms", &app.test_key, &body).await;
    assert_eq!(status, 202, "{msg}");
    // A test key's numbers are not a live key's, nor the other way round.
    let (_, live) = app.get("/v1/numbers", &app.live_key).await;
    let (_, test) = app.get("/v1/numbers", &app.test_key).await;
    assert_eq!(
        (
            live["data"].as_array().unwrap().len(),
            test["data"].as_array().unwrap().len()
        ),
        (2, 1)
    );
    let (status, err) = rent(&app, &app.test_key, "+447400123456").await;
    assert_problem(status, &err, 422, "invalid_request");
    let other = app.line.create_tenant("Other").await.unwrap();
    let (status, _) = rent(&app, other.test_key.expose(), "+447700900123").await;
    assert_eq!(status, 201, "each tenant's sandbox is its own");
    app.stop().await;
}

/// One key, one rental, one fee.
async fn renting_is_idempotent(app: TestApp) {
    import(&app, &[("+447400123456", 170)]).await;
    let body = json!({"number": "+447400123456"});
    let (s1, first, _) = app
        .post_keyed("/v1/numbers", &app.live_key, "n-1", &body)
        .await;
    let (s2, second, replayed) = app
        .post_keyed("/v1/numbers", &app.live_key, "n-1", &body)
        .await;
    assert_eq!((s1, s2, replayed), (201, 201, true), "{first} {second}");
    assert_eq!(first, second);
    let u = usage(
        &app,
        &app.live_key,
        &first["rented_at"].as_str().unwrap()[..7],
    )
    .await;
    assert_eq!(u["number_fees_pence"], 170);
    app.stop().await;
}

backends!(
    app:
    rent_release_and_rest,
    two_tenants_race_for_one_number,
    renewals_are_charged_once_a_month,
    senders_must_be_owned,
    renting_is_idempotent,
);
