//! POST /v1/carriers/{name}/receipts: delivery receipts from an HTTP carrier,
//! authenticated by the HMAC of the body under that carrier's shared secret.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::AppState;
use crate::carrier::{HttpCarrier, ReceiptError};
use crate::http::error::{ApiError, Problem, ProblemCode};

/// Records an HTTP carrier's receipts. Body: `{"id", "status", "error"?}` or an
/// array of them; header `X-Line-Signature: sha256=<hex HMAC-SHA256 of the body>`.
#[utoipa::path(post, path = "/v1/carriers/{name}/receipts", tag = "carriers",
    params(("name" = String, Path, description = "the carrier's name in [[carriers]]")),
    request_body(content = String, content_type = "application/json"),
    responses(
        (status = 204, description = "recorded"),
        (status = 401, description = "missing or wrong signature, or no such HTTP carrier", body = Problem),
        (status = 422, description = "not a receipt", body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(carrier = %name))]
pub async fn receipts(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (carrier, signature) = signed(&app, &name, &headers)?;
    let receipts = carrier
        .receipts(&body, signature, app.clock.now())
        .map_err(refused)?;
    for r in receipts {
        app.receipts.record(r).await.map_err(ApiError::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Records messages handsets sent to our numbers through an HTTP carrier. Body:
/// `{"from", "to", "body"}` or an array of them; signed as receipts are.
#[utoipa::path(post, path = "/v1/carriers/{name}/inbound", tag = "carriers",
    params(("name" = String, Path, description = "the carrier's name in [[carriers]]")),
    request_body(content = String, content_type = "application/json"),
    responses(
        (status = 204, description = "recorded (for the tenant renting `to`, if one does)"),
        (status = 401, description = "missing or wrong signature, or no such HTTP carrier", body = Problem),
        (status = 422, description = "not an inbound message", body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(carrier = %name))]
pub async fn inbound(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (carrier, signature) = signed(&app, &name, &headers)?;
    let messages = carrier
        .inbound(&body, signature, app.clock.now())
        .map_err(refused)?;
    for m in messages {
        app.store.record_inbound(&m).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The HTTP carrier named and the request's signature. An unknown name
/// answers as a wrong signature does: names are not probed.
fn signed<'a>(
    app: &'a AppState,
    name: &str,
    headers: &'a HeaderMap,
) -> Result<(&'a HttpCarrier, Option<&'a str>), ApiError> {
    let carrier = app.carriers.http(name).ok_or_else(ApiError::unauthorized)?;
    let signature = headers
        .get(crate::carrier::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    Ok((carrier, signature))
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
