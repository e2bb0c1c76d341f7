//! OTP verifications end to end, on PostgreSQL and SQLite, reading each code
//! from the sandbox inbox the way a tenant's own integration test would.

use crate::common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{TestApp, assert_problem};
use serde_json::{Value, json};

const HANDSET: &str = "+447700900123";

/// Everything logged in this test process, at every level, from the first
/// call on (the whole suite shares the process), to search for codes.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .without_time()
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `code` stands in `text` on its own (`code=123456`, `"123456"`), not
/// as a chance run inside an id, a timestamp or a decimal.
fn contains_token(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[test]
fn tokens_are_told_from_chance_runs() {
    assert!(contains_token("code=123456 sent", "123456"));
    assert!(contains_token("{\"code\":\"123456\"}", "123456"));
    assert!(!contains_token("ms=0.123456", "123456"));
    assert!(!contains_token("otp_01m8123456xq", "123456"));
    assert!(!contains_token("91234567", "123456"));
}

async fn start(app: &TestApp, body: Value) -> Value {
    let (status, v) = app.post("/v1/otp", &app.test_key, &body).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// Sends what is queued and returns the newest code the handset received.
async fn code_sent_to(app: &TestApp, to: &str) -> String {
    app.drain().await;
    let (_, inbox) = app
        .get(
            &format!("/v1/sandbox/messages?to={}", to.replace('+', "%2B")),
            &app.test_key,
        )
        .await;
    let body = inbox["data"][0]["body"]
        .as_str()
        .expect("a message in the inbox")
        .to_string();
    let digits: String = body
        .split(" code is ")
        .nth(1)
        .expect("the default text")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(digits.len() >= 4, "{body}");
    digits
}

async fn verify(app: &TestApp, id: &str, code: &str) -> (u16, Value) {
    app.post(
        &format!("/v1/otp/{id}/verify"),
        &app.test_key,
        &json!({"code": code}),
    )
    .await
}

fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| char::from(b'0' + (c as u8 - b'0' + 1) % 10))
        .collect()
}

async fn happy_path(app: TestApp) {
    let v = start(&app, json!({"to": "07700 900123"})).await;
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("otp_"));
    assert_eq!(v["status"], "pending");
    assert_eq!(v["to"], HANDSET);
    assert_eq!(v["attempts_remaining"], 5);
    assert_eq!(v["length"], 6);
    assert!(v["message_id"].as_str().unwrap().starts_with("msg_"));
    assert!(v["expires_at"].is_string());

    let code = code_sent_to(&app, HANDSET).await;
    assert_eq!(code.len(), 6);
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    assert_eq!(
        inbox["data"][0]["body"],
        format!("Your Acme code is {code}. It expires in 10 minutes. Don't share it.")
    );
    let (status, r) = verify(&app, id, &code).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({"id": id, "status": "approved", "valid": true, "attempts_remaining": 5})
    );
    // Used once, never again.
    let (status, err) = verify(&app, id, &code).await;
    assert_problem(status, &err, 409, "verification_closed");
    assert_eq!(err["verification_status"], "approved");
    let (_, got) = app.get(&format!("/v1/otp/{id}"), &app.test_key).await;
    assert_eq!(got["status"], "approved");
    // The SMS itself went through the queue like any other.
    app.advance_and_drain(Duration::from_millis(1100)).await;
    let (_, msg) = app
        .get(
            &format!("/v1/sms/{}", v["message_id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(msg["status"], "delivered");
    app.stop().await;
}

async fn wrong_then_right_and_malformed_codes_cost_nothing(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET, "length": 8})).await;
    let id = v["id"].as_str().unwrap();
    let code = code_sent_to(&app, HANDSET).await;
    assert_eq!(code.len(), 8);
    for bad in ["1234567", "123456789", "abcdefgh", ""] {
        let (status, err) = verify(&app, id, bad).await;
        assert_problem(status, &err, 422, "invalid_request");
        assert_eq!(err["param"], "code");
    }
    let (status, err) = app
        .post(
            &format!("/v1/otp/{id}/verify"),
            &app.test_key,
            &json!({"code": 12345678}),
        )
        .await;
    assert_problem(status, &err, 422, "invalid_request");
    let (status, r) = verify(&app, id, &wrong(&code)).await;
    assert_eq!(status, 200);
    assert_eq!(
        r,
        json!({"id": id, "status": "pending", "valid": false, "attempts_remaining": 4})
    );
    let (_, r) = verify(&app, id, &code).await;
    assert_eq!(
        r,
        json!({"id": id, "status": "approved", "valid": true, "attempts_remaining": 4})
    );
    app.stop().await;
}

async fn lock_out_after_max_attempts(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET, "max_attempts": 3})).await;
    let id = v["id"].as_str().unwrap();
    let code = code_sent_to(&app, HANDSET).await;
    let mut last = Value::Null;
    for left in [2, 1, 0] {
        let (status, r) = verify(&app, id, &wrong(&code)).await;
        assert_eq!(status, 200);
        assert_eq!(r["attempts_remaining"], left);
        last = r;
    }
    assert_eq!(last["status"], "max_attempts_reached");
    let (status, err) = verify(&app, id, &code).await;
    assert_problem(status, &err, 409, "verification_closed");
    assert_eq!(err["verification_status"], "max_attempts_reached");
    app.stop().await;
}

async fn codes_expire(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET, "ttl_seconds": 60})).await;
    let id = v["id"].as_str().unwrap();
    let code = code_sent_to(&app, HANDSET).await;
    app.clock.advance(Duration::from_secs(61));
    let (status, err) = verify(&app, id, &code).await;
    assert_problem(status, &err, 409, "verification_closed");
    assert_eq!(err["verification_status"], "expired");
    let (_, got) = app.get(&format!("/v1/otp/{id}"), &app.test_key).await;
    assert_eq!(got["status"], "expired");
    app.stop().await;
}

async fn resend_voids_the_old_code_with_cooldown_and_cap(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET})).await;
    let id = v["id"].as_str().unwrap();
    let first = code_sent_to(&app, HANDSET).await;
    // Too soon: 429 with Retry-After.
    let resp = app
        .client
        .post(app.url(&format!("/v1/otp/{id}/resend")))
        .bearer_auth(&app.test_key)
        .send()
        .await
        .unwrap();
    let retry_after = common::assert_rate_limited(resp).await;
    assert!((29..=30).contains(&retry_after), "{retry_after}");

    app.clock.advance(Duration::from_secs(31));
    let (status, again) = app
        .post(&format!("/v1/otp/{id}/resend"), &app.test_key, &json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["sends"], 2);
    assert_ne!(again["message_id"], v["message_id"]);
    let second = code_sent_to(&app, HANDSET).await;
    if second != first {
        let (_, r) = verify(&app, id, &first).await;
        assert_eq!(r["valid"], false, "the old code stopped working");
    }
    let (_, r) = verify(&app, id, &second).await;
    assert_eq!(r["status"], "approved");

    // The cap on sends per verification (default 5).
    let v = start(&app, json!({"to": "+447700900124"})).await;
    let id = v["id"].as_str().unwrap();
    for _ in 0..4 {
        app.clock.advance(Duration::from_secs(31));
        let (status, r) = app
            .post(&format!("/v1/otp/{id}/resend"), &app.test_key, &json!({}))
            .await;
        assert_eq!(status, 200, "{r}");
    }
    app.clock.advance(Duration::from_secs(31));
    let resp = app
        .client
        .post(app.url(&format!("/v1/otp/{id}/resend")))
        .bearer_auth(&app.test_key)
        .send()
        .await
        .unwrap();
    assert!(common::assert_rate_limited(resp).await >= 1);
    app.stop().await;
}

async fn a_new_start_cancels_the_pending_one_and_verify_by_number(app: TestApp) {
    let a = start(&app, json!({"to": HANDSET})).await;
    let code_a = code_sent_to(&app, HANDSET).await;
    let b = start(&app, json!({"to": HANDSET})).await;
    let (_, got) = app
        .get(
            &format!("/v1/otp/{}", a["id"].as_str().unwrap()),
            &app.test_key,
        )
        .await;
    assert_eq!(got["status"], "canceled");
    let (status, err) = verify(&app, a["id"].as_str().unwrap(), &code_a).await;
    assert_problem(status, &err, 409, "verification_closed");
    assert_eq!(err["verification_status"], "canceled");

    let code_b = code_sent_to(&app, HANDSET).await;
    let (status, r) = app
        .post(
            "/v1/otp/verify",
            &app.test_key,
            &json!({"to": "07700 900123", "code": code_b}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["id"], b["id"]);
    assert_eq!(r["status"], "approved");
    // Now the newest verification of that number is closed.
    let (status, err) = app
        .post(
            "/v1/otp/verify",
            &app.test_key,
            &json!({"to": HANDSET, "code": code_b}),
        )
        .await;
    assert_problem(status, &err, 409, "verification_closed");
    let (status, err) = app
        .post(
            "/v1/otp/verify",
            &app.test_key,
            &json!({"to": "+447700900555", "code": "123456"}),
        )
        .await;
    assert_problem(status, &err, 404, "not_found");

    // Cancel: once; then it is closed.
    let c = start(&app, json!({"to": HANDSET})).await;
    let cancel = format!("/v1/otp/{}/cancel", c["id"].as_str().unwrap());
    let (status, r) = app.post(&cancel, &app.test_key, &json!({})).await;
    assert_eq!((status, &r["status"]), (200, &json!("canceled")));
    let (status, err) = app.post(&cancel, &app.test_key, &json!({})).await;
    assert_problem(status, &err, 409, "verification_closed");
    app.stop().await;
}

async fn bad_starts_are_refused_clearly(app: TestApp) {
    let cases = [
        (json!({"to": HANDSET, "length": 3}), "length"),
        (json!({"to": HANDSET, "length": 11}), "length"),
        (json!({"to": HANDSET, "ttl_seconds": 59}), "ttl_seconds"),
        (json!({"to": HANDSET, "ttl_seconds": 3601}), "ttl_seconds"),
        (json!({"to": HANDSET, "max_attempts": 0}), "max_attempts"),
        (json!({"to": HANDSET, "max_attempts": 11}), "max_attempts"),
        (
            json!({"to": HANDSET, "template": "no code here"}),
            "template",
        ),
        (
            json!({"to": HANDSET, "template": format!("{{code}} {}", "x".repeat(150))}),
            "template",
        ),
        (json!({"to": HANDSET, "brand": "x".repeat(31)}), "brand"),
        (
            json!({"to": HANDSET, "app_domain": "not a domain"}),
            "app_domain",
        ),
        (json!({"to": HANDSET, "colour": "red"}), "colour"),
    ];
    for (body, param) in cases {
        let (status, err) = app.post("/v1/otp", &app.test_key, &body).await;
        assert_problem(status, &err, 422, "invalid_request");
        assert_eq!(err["param"], param, "{body}");
    }
    let (status, err) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+33612345678"}))
        .await;
    assert_problem(status, &err, 403, "destination_not_allowed");
    let (status, err) = app
        .post("/v1/otp", &app.live_key, &json!({"to": HANDSET}))
        .await;
    assert_problem(status, &err, 422, "invalid_phone_number");
    // Nothing was sent by any of it.
    let (_, list) = app.get("/v1/sms", &app.test_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);

    // A custom template, a brand and the WebOTP line.
    start(&app, json!({"to": HANDSET, "template": "{brand}: {code} ({minutes} min)", "brand": "Shop", "ttl_seconds": 300, "app_domain": "shop.example", "length": 4})).await;
    app.drain().await;
    let (_, inbox) = app.get("/v1/sandbox/messages", &app.test_key).await;
    let body = inbox["data"][0]["body"].as_str().unwrap();
    let (first, last) = body.split_once("\n\n").unwrap();
    let code = &first[6..10];
    assert_eq!(first, format!("Shop: {code} (5 min)"));
    assert_eq!(last, format!("@shop.example #{code}"));
    app.stop().await;
}

async fn idempotent_starts_send_once(app: TestApp) {
    let send = || {
        app.client
            .post(app.url("/v1/otp"))
            .bearer_auth(&app.test_key)
            .header("Idempotency-Key", "start-1")
            .json(&json!({"to": HANDSET}))
            .send()
    };
    let (s1, a) = common::decode(send().await.unwrap()).await;
    let (s2, b) = common::decode(send().await.unwrap()).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(a, b);
    let (_, list) = app.get("/v1/sms", &app.test_key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one SMS");
    app.stop().await;
}

async fn other_tenants_see_nothing(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET})).await;
    let id = v["id"].as_str().unwrap();
    let other = app.line.create_tenant("Other").await.unwrap();
    let key = other.test_key.expose();
    let (status, err) = app.get(&format!("/v1/otp/{id}"), key).await;
    assert_problem(status, &err, 404, "not_found");
    for action in ["verify", "resend", "cancel"] {
        let (status, err) = app
            .post(
                &format!("/v1/otp/{id}/{action}"),
                key,
                &json!({"code": "123456"}),
            )
            .await;
        assert_eq!(status, 404, "{action}: {err}");
    }
    let (status, _) = app
        .post(
            "/v1/otp/verify",
            key,
            &json!({"to": HANDSET, "code": "123456"}),
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn racing_checks_cannot_double_approve_or_overspend_attempts(app: TestApp) {
    let v = start(&app, json!({"to": HANDSET})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_sent_to(&app, HANDSET).await;
    let results = futures_util::future::join_all((0..8).map(|_| verify(&app, &id, &code))).await;
    let approved = results
        .iter()
        .filter(|(s, r)| *s == 200 && r["valid"] == true)
        .count();
    let closed = results
        .iter()
        .filter(|(s, r)| *s == 409 && r["verification_status"] == "approved")
        .count();
    assert_eq!((approved, closed), (1, 7), "{results:?}");

    let v = start(&app, json!({"to": "+447700900124", "max_attempts": 5})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_sent_to(&app, "+447700900124").await;
    let bad = wrong(&code);
    let results = futures_util::future::join_all((0..20).map(|_| verify(&app, &id, &bad))).await;
    let counted = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!((counted, refused), (5, 15), "{results:?}");
    let (_, got) = app.get(&format!("/v1/otp/{id}"), &app.test_key).await;
    assert_eq!(got["status"], "max_attempts_reached");
    assert_eq!(got["attempts_remaining"], 0);
    app.stop().await;
}

/// Each server remembers the verifications it has seen; a check on one must
/// still see what another did meanwhile.
async fn two_servers_see_each_others_checks(app: TestApp) {
    let two = app.sibling("").await;
    let v = start(&app, json!({"to": HANDSET, "max_attempts": 3})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let bad = wrong(&code_sent_to(&app, HANDSET).await);
    for left in [2, 1] {
        let (status, r) = verify(&two, &id, &bad).await;
        assert_eq!(
            (status, r["attempts_remaining"].as_u64()),
            (200, Some(left)),
            "{r}"
        );
    }
    // The first server started it and still remembers three attempts left.
    let (status, r) = verify(&app, &id, &bad).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["attempts_remaining"].as_u64()),
        (Some("max_attempts_reached"), Some(0)),
        "{r}"
    );
    let (status, r) = verify(&two, &id, &bad).await;
    assert_eq!(
        (status, r["verification_status"].as_str()),
        (409, Some("max_attempts_reached"))
    );

    let other = "+447700900124";
    let v = start(&app, json!({"to": other})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_sent_to(&app, other).await;
    let (_, r) = verify(&app, &id, &wrong(&code)).await;
    assert_eq!(r["attempts_remaining"], 4, "{r}");
    let (status, r) = verify(&two, &id, &code).await;
    assert_eq!(
        (status, r["status"].as_str()),
        (200, Some("approved")),
        "{r}"
    );
    // Approved on the second server: the first's remembered copy cannot approve it again.
    let (status, r) = verify(&app, &id, &code).await;
    assert_eq!(
        (status, r["verification_status"].as_str()),
        (409, Some("approved")),
        "{r}"
    );
    two.stop().await;
    app.stop().await;
}

async fn codes_per_number_are_limited(app: TestApp) {
    // Five sends to one number in ten minutes, then 429 until the window moves.
    for _ in 0..5 {
        start(&app, json!({"to": HANDSET})).await;
    }
    let resp = app
        .client
        .post(app.url("/v1/otp"))
        .bearer_auth(&app.test_key)
        .json(&json!({"to": HANDSET}))
        .send()
        .await
        .unwrap();
    let retry = common::assert_rate_limited(resp).await;
    assert!((1..=120).contains(&retry), "{retry}");
    start(&app, json!({"to": "+447700900124"})).await;
    app.clock.advance(Duration::from_secs(121));
    start(&app, json!({"to": HANDSET})).await;
    app.stop().await;
}

async fn live_spend_stops_at_the_cap(app: TestApp) {
    // This app runs with monthly_spend_cap_pence = 2 and 1p per segment.
    for to in ["+447400123456", "+447400123457"] {
        let (status, v) = app.post("/v1/otp", &app.live_key, &json!({"to": to})).await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, err) = app
        .post("/v1/otp", &app.live_key, &json!({"to": "+447400123458"}))
        .await;
    assert_problem(status, &err, 402, "spend_cap_reached");
    let (status, err) = app
        .post(
            "/v1/sms",
            &app.live_key,
            &json!({"to": "+447400123458", "body": "hi"}),
        )
        .await;
    assert_problem(status, &err, 402, "spend_cap_reached");
    // Test keys cost nothing and are not capped.
    start(&app, json!({"to": HANDSET})).await;
    app.stop().await;
}

async fn no_code_is_kept_anywhere_but_the_test_inbox(app: TestApp) {
    let logs = captured_logs();
    // A test-key flow: the code is in the sandbox inbox (by design) and nowhere else.
    let v = start(&app, json!({"to": HANDSET})).await;
    let id = v["id"].as_str().unwrap();
    let code = code_sent_to(&app, HANDSET).await;
    let (_, r) = verify(&app, id, &wrong(&code)).await;
    assert_eq!(r["valid"], false);
    let (_, r) = verify(&app, id, &code).await;
    assert_eq!(r["valid"], true);
    app.advance_and_drain(Duration::from_millis(1100)).await;
    let dump = app.dump().await;
    let needle = format!("code is {code}");
    for table in dump.split("\n== ") {
        let name = table.trim_start_matches("== ").lines().next().unwrap_or("");
        if name != "sandbox_messages" {
            assert!(!table.contains(&needle), "the code is in {name}");
        }
    }
    assert!(
        dump.contains(&needle),
        "the sandbox inbox keeps what the test handset got"
    );
    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!log.is_empty());
    assert!(
        !log.contains(&needle) && !contains_token(&log, &code),
        "the code is in the log"
    );
    assert!(!log.contains(HANDSET), "a full number is in the log");

    // A live-key flow leaves no text of the message anywhere at all.
    let (status, v) = app
        .post(
            "/v1/otp",
            &app.live_key,
            &json!({"to": "+447400123456", "brand": "Livebrand"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    app.drain().await;
    app.advance_and_drain(Duration::from_millis(1100)).await;
    let (_, msg) = app
        .get(
            &format!("/v1/sms/{}", v["message_id"].as_str().unwrap()),
            &app.live_key,
        )
        .await;
    assert_eq!(msg["status"], "delivered");
    let dump = app.dump().await;
    assert!(
        !dump.contains("Your Livebrand code is"),
        "a live code's text survived in the database"
    );
    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!log.contains("Your Livebrand code is"));
    assert!(!log.contains("+447400123456"));
    app.stop().await;
}

backends!(
    app:
    happy_path,
    per_number_cap_holds_across_two_servers,
    wrong_then_right_and_malformed_codes_cost_nothing,
    lock_out_after_max_attempts,
    codes_expire,
    resend_voids_the_old_code_with_cooldown_and_cap,
    a_new_start_cancels_the_pending_one_and_verify_by_number,
    bad_starts_are_refused_clearly,
    idempotent_starts_send_once,
    other_tenants_see_nothing,
    racing_checks_cannot_double_approve_or_overspend_attempts,
    two_servers_see_each_others_checks,
    codes_per_number_are_limited,
    no_code_is_kept_anywhere_but_the_test_inbox,
);

/// Live sends stop at a monthly cap of 2p.
const SPEND_CAP: &str = "[limits]\nmonthly_spend_cap_pence = 2";

backends!(app with SPEND_CAP in capped_spend: live_spend_stops_at_the_cap);

/// Verification starts per tenant: 2 a minute.
const STARTS_CAP: &str = "[limits]\notp_starts_per_minute = 2";

backends!(app with STARTS_CAP in capped_starts: starts_per_tenant_are_limited);

/// Three starts a minute per tenant, one code per number in ten minutes.
const BOTH_CAPS: &str = "[limits]\notp_starts_per_minute = 3\notp_sends_per_number = 1";

backends!(app with BOTH_CAPS in both_caps: a_refused_start_counts_against_no_limit);

/// Starts are counted in the transaction that writes them, against both
/// limits or neither: one the number's limit refuses leaves the tenant's
/// allowance whole, and gives its Idempotency-Key back.
async fn a_refused_start_counts_against_no_limit(app: TestApp) {
    let keyed = |key: &'static str, to: &'static str| {
        app.client
            .post(app.url("/v1/otp"))
            .bearer_auth(&app.test_key)
            .header("Idempotency-Key", key)
            .json(&json!({"to": to}))
            .send()
    };
    start(&app, json!({"to": "+447700900001"})).await;
    for _ in 0..3 {
        let refused = keyed("again-1", "+447700900001").await.unwrap();
        common::assert_rate_limited(refused).await;
    }
    // Had the refusals counted, the tenant's three would be spent.
    start(&app, json!({"to": "+447700900002"})).await;
    start(&app, json!({"to": "+447700900003"})).await;
    let (status, err) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900004"}))
        .await;
    assert_problem(status, &err, 429, "rate_limited");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("verifications were started"),
        "{err}"
    );
    // Both windows pass: the refused request's key was given back, so the
    // same request now starts a verification instead of replaying a 429.
    app.clock.advance(Duration::from_secs(601));
    let body = json!({"to": "+447700900001"});
    let (status, v, _) = app
        .post_keyed("/v1/otp", &app.test_key, "again-1", &body)
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, replay, _) = app
        .post_keyed("/v1/otp", &app.test_key, "again-1", &body)
        .await;
    assert_eq!((status, &replay), (201, &v));
    app.stop().await;
}

/// Ten codes to one number may go out at once.
const TEN_PER_NUMBER: &str = "[limits]\notp_sends_per_number = 10";

backends!(app with TEN_PER_NUMBER in together: concurrent_starts_keep_their_rules);

/// Starts that arrive together are written together (a group per
/// transaction), and each still follows its own rules: one key, one
/// verification; one number, one pending verification; a start, an SMS.
async fn concurrent_starts_keep_their_rules(app: TestApp) {
    let post = |key: Option<&'static str>, to: String| {
        let app = &app;
        async move {
            let body = json!({"to": to});
            match key {
                Some(key) => {
                    let (status, v, _) = app.post_keyed("/v1/otp", &app.test_key, key, &body).await;
                    (status, v)
                }
                None => app.post("/v1/otp", &app.test_key, &body).await,
            }
        }
    };
    let mut calls = Vec::new();
    for i in 0..40 {
        // 10 with one key, 10 to one number, 20 to numbers of their own.
        let (key, to) = match i % 4 {
            0 => (Some("same-key"), "+447700900100".to_string()),
            1 => (None, "+447700900200".to_string()),
            _ => (None, format!("+4477009003{i:02}")),
        };
        calls.push(post(key, to));
    }
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|(s, _)| *s == 201), "{results:?}");
    let ids = |rem: usize| -> std::collections::HashSet<String> {
        results
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == rem)
            .map(|(_, (_, v))| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(0).len(), 1, "one key, one verification");
    assert_eq!(ids(1).len(), 10, "each start to one number is its own");
    let mut pending_to_one = 0;
    for id in ids(1) {
        let (_, v) = app.get(&format!("/v1/otp/{id}"), &app.test_key).await;
        if v["status"] == "pending" {
            pending_to_one += 1;
        } else {
            assert_eq!(v["status"], "canceled", "{v}");
        }
    }
    assert_eq!(pending_to_one, 1, "one number, one pending verification");
    let (_, list) = app.get("/v1/sms?limit=100", &app.test_key).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1 + 10 + 20,
        "{list}"
    );
    app.stop().await;
}

async fn starts_per_tenant_are_limited(app: TestApp) {
    start(&app, json!({"to": "+447700900001"})).await;
    start(&app, json!({"to": "+447700900002"})).await;
    let (status, err) = app
        .post("/v1/otp", &app.test_key, &json!({"to": "+447700900003"}))
        .await;
    assert_problem(status, &err, 429, "rate_limited");
    // Another tenant has its own allowance.
    let other = app.line.create_tenant("Other").await.unwrap();
    let (status, _) = app
        .post(
            "/v1/otp",
            other.test_key.expose(),
            &json!({"to": "+447700900003"}),
        )
        .await;
    assert_eq!(status, 201);
    app.clock.advance(Duration::from_secs(31));
    start(&app, json!({"to": "+447700900003"})).await;
    app.stop().await;
}

/// Two server processes on one database share the per-number counter.
async fn per_number_cap_holds_across_two_servers(one: TestApp) {
    let two = one.sibling("").await;
    let body = json!({"to": HANDSET});
    let calls = (0..12).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.post("/v1/otp", &one.test_key, &body)
    });
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let limited = results
        .iter()
        .filter(|(s, b)| *s == 429 && b["code"] == "rate_limited")
        .count();
    assert_eq!((created, limited), (5, 7), "{results:?}");
    // Exactly one of the five is still pending: each start cancelled the one before.
    let dump = one.dump().await;
    assert_eq!(
        dump.matches(",pending,").count() + dump.matches("'pending'").count(),
        1,
        "{dump}"
    );
    two.stop().await;
    one.stop().await;
}
