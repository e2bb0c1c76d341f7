//! POST /v1/carriers/{name}/receipts and /inbound: what an HTTP carrier posts,
//! authenticated by an HMAC of its timestamp and body under that carrier's
//! shared secret, within five minutes of signing, and each signed request once.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::AppState;
use super::extract::{ApiBytes, ApiPath};
use std::time::Duration;

use crate::carrier::{HttpCarrier, ReceiptError, SIGNATURE_TOLERANCE_SECONDS};
use crate::http::error::{ApiError, Problem, ProblemCode};
use crate::usecase::limits::admit;

/// Records an HTTP carrier's receipts. Body: `{"id", "status", "error"?}` or an
/// array of them; headers `X-Line-Timestamp: <unix seconds>` and
/// `X-Line-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
#[utoipa::path(post, path = "/v1/carriers/{name}/receipts", tag = "carriers",
    params(("name" = String, Path, description = "the carrier's name in [[carriers]]"),
        ("X-Line-Timestamp" = String, Header, pattern = "^[0-9]{1,12}$", description = "when it was signed, in unix seconds (within 5 minutes of ours)"),
        ("X-Line-Signature" = String, Header, pattern = "^sha256=[0-9a-fA-F]{64}$", description = "hex HMAC-SHA256 of `<timestamp>.<body>` under the carrier's receipt_secret")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 204, description = "recorded"),
        (status = 401, description = "a missing, wrong, stale or replayed signature, or no such HTTP carrier", body = Problem),
        (status = 422, description = "not a receipt", body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(carrier = %name))]
pub async fn receipts(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<StatusCode, ApiError> {
    let (carrier, seen) = signed(&app, &name, &headers, &body).await?;
    let recorded = async {
        let receipts = carrier.receipts(&body, app.clock.now()).map_err(refused)?;
        for r in receipts {
            app.receipts.record(r).await.map_err(ApiError::from)?;
        }
        Ok(StatusCode::NO_CONTENT)
    };
    unseen_unless_done(&app, &seen, recorded.await).await
}

/// Records messages handsets sent to our numbers through an HTTP carrier. Body:
/// `{"from", "to", "body"}` or an array of them; signed as receipts are.
#[utoipa::path(post, path = "/v1/carriers/{name}/inbound", tag = "carriers",
    params(("name" = String, Path, description = "the carrier's name in [[carriers]]"),
        ("X-Line-Timestamp" = String, Header, pattern = "^[0-9]{1,12}$", description = "when it was signed, in unix seconds (within 5 minutes of ours)"),
        ("X-Line-Signature" = String, Header, pattern = "^sha256=[0-9a-fA-F]{64}$", description = "hex HMAC-SHA256 of `<timestamp>.<body>` under the carrier's receipt_secret")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 204, description = "recorded (for the tenant renting `to`, if one does)"),
        (status = 401, description = "a missing, wrong, stale or replayed signature, or no such HTTP carrier", body = Problem),
        (status = 422, description = "not an inbound message", body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(carrier = %name))]
pub async fn inbound(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<StatusCode, ApiError> {
    let (carrier, seen) = signed(&app, &name, &headers, &body).await?;
    let recorded = async {
        let messages = carrier.inbound(&body, app.clock.now()).map_err(refused)?;
        for m in messages {
            app.store.record_inbound(&m).await?;
        }
        Ok(StatusCode::NO_CONTENT)
    };
    unseen_unless_done(&app, &seen, recorded.await).await
}

/// The HTTP carrier named, once the request's signature and timestamp are
/// checked and the request is known to be new. An unknown name, a stale
/// timestamp and a replay all answer as a wrong signature does.
/// Returns the carrier and the key under which the request was seen.
async fn signed<'a>(
    app: &'a AppState,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'a HttpCarrier, String), ApiError> {
    let carrier = app.carriers.http(name).ok_or_else(ApiError::unauthorized)?;
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let signature = header(crate::carrier::SIGNATURE_HEADER);
    carrier
        .verify(
            body,
            header(crate::carrier::TIMESTAMP_HEADER),
            signature,
            app.clock.now(),
        )
        .map_err(refused)?;
    // Seen once in twice the window (across nodes: the limiter's table),
    // under the MAC itself: a different spelling of the same hex is the same request.
    let mac = signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let seen = format!("signed:{name}:{mac}");
    let window = Duration::from_secs(2 * SIGNATURE_TOLERANCE_SECONDS as u64);
    match admit(&app.core, &seen, 1, window, "replayed").await {
        Err(e) if e.code == ProblemCode::RateLimited => Err(ApiError::new(
            ProblemCode::Unauthorized,
            "this signed request was received before",
        )),
        Err(e) => Err(e),
        Ok(()) => Ok((carrier, seen)),
    }
}

/// A request that failed (a 503, say) is forgotten as seen, so that the
/// carrier's retry of it is taken, not refused as a replay.
async fn unseen_unless_done(
    app: &AppState,
    seen: &str,
    outcome: Result<StatusCode, ApiError>,
) -> Result<StatusCode, ApiError> {
    if outcome.is_err()
        && let Err(e) = app.store.forget_limit(seen).await
    {
        tracing::warn!(error = %e, "a failed carrier request stays marked as seen");
    }
    outcome
}

fn refused(e: ReceiptError) -> ApiError {
    match e {
        ReceiptError::Unauthorized => ApiError::unauthorized(),
        ReceiptError::Invalid(detail) => ApiError::new(ProblemCode::InvalidReceipt, detail),
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/carriers/{name}/receipts", post(receipts))
        .route("/v1/carriers/{name}/inbound", post(inbound))
}
