//! The HTTP API: routes, extractors, the request-id middleware.

mod account;
mod carriers;
pub mod error;
pub mod extract;
mod health;
mod numbers;
mod openapi;
mod otp;
mod sandbox;
mod sms;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::carrier::Carriers;
use crate::domain::ids::new_id;
use crate::receipts::ReceiptSink;
use crate::usecase::Core;
use crate::usecase::idempotency::Answer;
use error::{ApiError, ProblemCode, REQUEST_ID};
use extract::AuthCache;

pub use openapi::ApiDoc;

/// What handlers see: the use cases' core, and what only HTTP needs.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub auth_cache: Arc<AuthCache>,
    pub carriers: Arc<Carriers>,
    /// Where HTTP carriers' receipts are recorded.
    pub receipts: ReceiptSink,
}

impl std::ops::Deref for AppState {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_request_bytes;
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(account::router())
        .merge(numbers::router())
        .merge(sms::router())
        .merge(otp::router())
        .merge(webhooks::router())
        .merge(sandbox::router())
        .merge(carriers::router())
        .merge(crate::web::router())
        .fallback(|| async { ApiError::not_found("endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ProblemCode::MethodNotAllowed,
                "this endpoint does not support that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(middleware::from_fn_with_state(
            Duration::from_secs(state.config.limits.request_timeout_seconds),
            time_limit,
        ))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn(api_headers))
        .with_state(state)
}

/// Every response that has not set its own (the pages do, in `web`): JSON is
/// never run as a page, framed, cached (it may hold a key shown once) or
/// sent on with its URL.
async fn api_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// No request is held longer than `limits.request_timeout_seconds`: it is
/// answered 503 (a write under way may still complete, hence the wording).
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ProblemCode::ServiceUnavailable,
            format!(
                "no answer within {} s; it may have taken effect: retry with the same Idempotency-Key",
                limit.as_secs()
            ),
        )
        .retry_after(2)
        .into_response(),
    }
}

/// A use case's answer as a JSON response; a replay says so in `idempotent-replayed`.
pub fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], a.body).into_response();
    if a.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A path as the log may show it: an invitation link's token is a secret.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/invite/") {
        "/invite/…"
    } else {
        path
    }
}

/// Gives every request an id (in errors, the `x-request-id` header and the log)
/// and logs one line per request: method, path (never the query, which may hold
/// a phone number, nor an invitation's token), status and duration.
async fn request_id(req: Request, next: Next) -> Response {
    let id = new_id("req");
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %loggable_path(req.uri().path()));
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span.clone()))
        .await;
    // Successful requests are logged at debug (RUST_LOG=line=debug): at
    // thousands of requests a second that line alone costs a fifth of the CPU.
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 400 {
            tracing::info!(status, ms, "served")
        } else {
            tracing::debug!(status, ms, "served")
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    /// `Debug` of a request type parsed from `body`, as a log would show it.
    fn shown<T: DeserializeOwned + std::fmt::Debug>(body: serde_json::Value) -> String {
        format!("{:?}", serde_json::from_value::<T>(body).unwrap())
    }

    /// Whatever a configuration or a request holds that must not reach a log
    /// (secrets, codes, passwords, full numbers, message bodies) stays out of
    /// its `Debug`, which is what a log line of it would print.
    #[test]
    fn secrets_stay_out_of_debug() {
        let config = crate::config::Config::from_toml(
            r#"
database_url = "postgres://line:pg-SECRET-1@db/line"
otp_secret = "otp-SECRET-2-otp-SECRET-2-otp-SECRET-2"
[operator]
token = "ops-SECRET-3-ops-SECRET-3"
[[carriers]]
name = "smsc"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "line"
password = "SECRET-4"
[[carriers]]
name = "up"
kind = "http"
url = "https://example.com/send"
auth_value = "Bearer up-SECRET-5"
receipt_secret = "rcpt-SECRET-6-rcpt"
[routing]
default = "smsc"
"#,
        )
        .unwrap();
        let phone = "+447400123456";
        let shown = [
            format!("{config:?}"),
            shown::<crate::usecase::sms::SendSms>(
                json!({"to": phone, "body": "Your code is 918273", "reference": "r1"}),
            ),
            shown::<crate::usecase::otp::StartVerification>(json!({"to": phone})),
            shown::<crate::usecase::otp::CheckCode>(json!({"code": "918273"})),
            shown::<crate::usecase::otp::CheckCodeFor>(json!({"to": phone, "code": "918273"})),
            shown::<super::sandbox::SimulatedInbound>(
                json!({"from": phone, "to": "+447700900123", "body": "Your code is 918273"}),
            ),
            shown::<super::sandbox::InboxQuery>(json!({"to": phone})),
            shown::<super::sms::ListQuery>(json!({"to": phone})),
            format!(
                "{:?}",
                crate::web::form::Fields::parse(b"email=a%40b.example&password=pw-SECRET-7")
            ),
        ];
        for text in &shown {
            for secret in [
                "SECRET",
                "918273",
                phone,
                "7400123456",
                "+447700900123",
                "a@b.example",
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        // They still say what they are.
        assert!(
            shown[1].contains("SendSms") && shown[1].contains("****"),
            "{}",
            shown[1]
        );
        assert!(shown[8].contains("password"), "{}", shown[8]);
    }

    #[test]
    fn invitation_tokens_stay_out_of_the_log() {
        assert_eq!(super::loggable_path("/invite/abc123"), "/invite/…");
        assert_eq!(super::loggable_path("/v1/sms/msg_1"), "/v1/sms/msg_1");
    }
}
