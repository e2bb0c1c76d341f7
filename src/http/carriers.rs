//! POST /v1/carriers/{name}/receipts: delivery receipts from an HTTP carrier,
//! authenticated by the HMAC of the body under that carrier's shared secret.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::AppState;
use crate::carrier::ReceiptError;
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
    // An unknown name answers as a wrong signature does: names are not probed.
    let carrier = app
        .carriers
        .http(&name)
        .ok_or_else(ApiError::unauthorized)?;
    let signature = headers
        .get(crate::carrier::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let receipts = carrier
        .receipts(&body, signature, app.clock.now())
        .map_err(|e| match e {
            ReceiptError::Unauthorized => ApiError::unauthorized(),
            ReceiptError::Invalid(detail) => ApiError::new(ProblemCode::InvalidReceipt, detail),
        })?;
    for r in receipts {
        app.receipts.record(r).await.map_err(ApiError::internal)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/carriers/{name}/receipts", post(receipts))
}
