//! The edges an attacker or a stray client touches first: who sees the
//! operator's detail, what failed keys cost, which headers every answer has.

use crate::common;

use common::TestApp;

const OPS: &str = "[operator]\ntoken = \"ops-token-0123456789\"\n";
const TIGHT: &str = "[limits]\nfailed_auths_per_ip_per_minute = 3\n";

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// With `operator.token` set, `/metrics` and `/readyz`'s carriers need it;
/// liveness and readiness themselves stay open.
async fn the_operator_token_guards_metrics_and_carriers(app: TestApp) {
    let token = [("authorization", "Bearer ops-token-0123456789")];
    let (status, body) = get(&app, "/metrics", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    let (status, _) = get(&app, "/metrics", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 401);
    let (status, body) = get(&app, "/metrics", &token).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("line_carrier_up{carrier=\"sandbox\""),
        "{body}"
    );
    let (status, body) = get(&app, "/readyz", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("ready") && !body.contains("carriers"),
        "{body}"
    );
    let (_, body) = get(&app, "/readyz", &token).await;
    assert!(body.contains("\"carriers\""), "{body}");
    let (status, _) = get(&app, "/healthz", &[]).await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Without a token only this machine sees the detail: a request that came
/// through a proxy does not.
async fn without_a_token_only_this_machine_sees_the_detail(app: TestApp) {
    let (status, body) = get(&app, "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    let proxied = [("x-forwarded-for", "203.0.113.9")];
    let (status, _) = get(&app, "/metrics", &proxied).await;
    assert_eq!(status, 401);
    let (_, body) = get(&app, "/readyz", &proxied).await;
    assert!(!body.contains("carriers"), "{body}");
    let (_, body) = get(&app, "/readyz", &[]).await;
    assert!(body.contains("carriers"), "{body}");
    app.stop().await;
}

/// `/metrics` shows how long writes waited, as a Prometheus histogram: an
/// accepted SMS is one more write counted, a started verification (a
/// transaction on either backend) one more commit.
async fn metrics_show_how_long_writes_wait(app: TestApp) {
    let count = |body: &str, step: &str| -> u64 {
        let name = format!("line_store_write_wait_seconds_count{{step=\"{step}\"}} ");
        let line = body.lines().find(|l| l.starts_with(&name));
        line.and_then(|l| l[name.len()..].parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    let (_, before) = get(&app, "/metrics", &[]).await;
    let body = serde_json::json!({"to": "+447700900002", "body": "counted"});
    let (status, _) = app.post("/v1/sms", &app.test_key, &body).await;
    assert_eq!(status, 202);
    let body = serde_json::json!({"to": "+447700900003"});
    let (status, _) = app.post("/v1/otp", &app.test_key, &body).await;
    assert_eq!(status, 201);
    let (_, after) = get(&app, "/metrics", &[]).await;
    assert!(
        after.contains("# TYPE line_store_write_wait_seconds histogram"),
        "{after}"
    );
    assert!(
        count(&after, "start") >= count(&before, "start") + 2,
        "{after}"
    );
    assert!(
        count(&after, "commit") > count(&before, "commit"),
        "{after}"
    );
    assert!(count(&after, "held") > count(&before, "held"), "{after}");
    for step in ["start", "held", "commit"] {
        let inf = format!(
            "line_store_write_wait_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}",
            count(&after, step)
        );
        assert!(after.contains(&inf), "{inf} in {after}");
    }
    app.stop().await;
}

/// Requests without a valid key are 401 until their address has failed
/// `failed_auths_per_ip_per_minute` times, then 429 with Retry-After; a
/// valid key still works meanwhile.
async fn failed_keys_are_limited_per_address(app: TestApp) {
    for key in ["line_test_wrongwrongwrongwrongwrongwrong00", "garbage", ""] {
        let (status, err) = app.get("/v1/sms", key).await;
        common::assert_problem(status, &err, 401, "unauthorized");
    }
    let resp = app
        .client
        .get(app.url("/v1/sms"))
        .bearer_auth("line_test_wrongwrongwrongwrongwrongwrong00")
        .send()
        .await
        .unwrap();
    let wait = common::assert_rate_limited(resp).await;
    assert!((1..=60).contains(&wait), "{wait}");
    let (status, _) = app.get("/v1/sms", &app.test_key).await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Every API answer, errors included, is not to be sniffed, framed, cached
/// or referred; the pages keep their own policy.
async fn api_answers_carry_security_headers(app: TestApp) {
    for (path, key) in [("/v1/sms", app.test_key.as_str()), ("/v1/sms", "nope")] {
        let resp = app
            .client
            .get(app.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
    let page = app.client.get(app.url("/login")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    app.stop().await;
}

backends!(
    app with OPS in operator: the_operator_token_guards_metrics_and_carriers,
);
backends!(
    app with TIGHT in throttled: failed_keys_are_limited_per_address,
);
backends!(
    app: without_a_token_only_this_machine_sees_the_detail,
    metrics_show_how_long_writes_wait,
    api_answers_carry_security_headers,
    edge_requests_get_the_error_shape,
);

/// What no handler sees still answers in the one error shape: a path segment
/// that is not UTF-8 (404), a body over the limit (413), and `6.0` where an
/// integer goes is the integer 6 (as JSON Schema has it).
async fn edge_requests_get_the_error_shape(app: TestApp) {
    let (status, err) = app.get("/v1/sms/%FF", &app.test_key).await;
    common::assert_problem(status, &err, 404, "not_found");
    let big = "x".repeat(70_000);
    let resp = app
        .client
        .post(app.url("/v1/carriers/sandbox/receipts"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, err) = common::decode(resp).await;
    common::assert_problem(status, &err, 413, "request_too_large");
    let (status, otp) = app
        .post(
            "/v1/otp",
            &app.test_key,
            &serde_json::json!({"to": "+447700900001", "length": 6.0}),
        )
        .await;
    assert_eq!(status, 201, "{otp}");
    app.stop().await;
}

/// SQLite's one writer under concurrent writes of several kinds: every
/// request waits its turn (write transactions take the lock up front); none
/// fails with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sqlite_writes_wait_their_turn() {
    let app = TestApp::spawn(common::Backend::Sqlite).await;
    let (status, n) = app
        .post(
            "/v1/numbers",
            &app.test_key,
            &serde_json::json!({"number": "+447700900123"}),
        )
        .await;
    assert_eq!(status, 201, "{n}");
    let worker = app.line.worker();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (client, base, key) = (app.client.clone(), app.base.clone(), app.test_key.clone());
        tasks.push(tokio::spawn(async move {
            let (path, body) = if i % 2 == 0 {
                (
                    "/v1/sandbox/inbound",
                    serde_json::json!({"from": "+447700900001", "to": "+447700900123", "body": format!("hi {i}")}),
                )
            } else {
                (
                    "/v1/sms",
                    serde_json::json!({"to": "+447700900002", "body": format!("m {i}")}),
                )
            };
            client
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for _ in 0..5 {
        worker.run_once().await.unwrap();
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 201 || status == 202, "{status}");
    }
    app.stop().await;
}
