//! The HTTP API: routes, extractors, the request-id middleware.

mod carriers;
pub mod extract;
mod health;
mod limits;
mod openapi;
mod otp;
mod sandbox;
mod sms;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::Notify;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::carrier::{Carriers, ReceiptSink};
use crate::clock::{Clock, new_id};
use crate::config::Config;
use crate::domain::otp::HashKey;
use crate::error::{ApiError, REQUEST_ID};
use crate::store::{CheckWriter, MessageWriter, Store, VerificationCache};
use extract::AuthCache;

pub use openapi::ApiDoc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// Wakes this process's worker when new work is queued.
    pub wake: Arc<Notify>,
    pub auth_cache: Arc<AuthCache>,
    /// Commits new messages in groups.
    pub writer: MessageWriter,
    /// Commits code checks in groups.
    pub checks: CheckWriter,
    /// Verifications as this process last saw them (see `VerificationCache`).
    pub verifications: Arc<VerificationCache>,
    /// Keys the hashes of codes and message bodies.
    pub hash_key: HashKey,
    pub carriers: Arc<Carriers>,
    /// Where carriers' receipts are recorded.
    pub receipts: ReceiptSink,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_request_bytes;
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(sms::router())
        .merge(otp::router())
        .merge(webhooks::router())
        .merge(sandbox::router())
        .merge(carriers::router())
        .fallback(|| async { ApiError::not_found("endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not support that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Runs a multi-statement write to its end even if the client goes away: a
/// request future dropped halfway through a transaction would leave it to the
/// connection pool to clean up, holding row locks meanwhile.
pub async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = crate::store::Result<T>> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::spawn(write).await.map_err(ApiError::internal)??)
}

/// Gives every request an id (in errors, the `x-request-id` header and the log)
/// and logs one line per request: method, path (never the query, which may hold
/// a phone number), status and duration.
async fn request_id(req: Request, next: Next) -> Response {
    let id = new_id("req");
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
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
