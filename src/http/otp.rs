//! POST /v1/otp and its verify, resend and cancel; GET /v1/otp/{id}.
//! The rules are in `usecase::otp`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::AppState;
use super::extract::{ApiJson, ApiPath, Auth, IdempotencyKey};
use crate::domain::ids::VerificationId;
use crate::domain::verification::Verification;
use crate::http::error::{ApiError, Problem};
use crate::usecase::idempotency::Idempotent;
use crate::usecase::otp::{self, CheckCode, CheckCodeFor, CheckResult, StartVerification};

/// Start a verification: a fresh code goes out by SMS.
#[utoipa::path(post, path = "/v1/otp", tag = "otp", request_body = StartVerification,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]+$", description = "Repeat a request safely for 24 h")),
    responses(
        (status = 201, body = Verification),
        (status = 402, description = "spend_cap_reached", body = Problem),
        (status = 403, body = Problem),
        (status = 422, body = Problem),
        (status = 429, description = "rate_limited, with Retry-After", body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn start(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<StartVerification>,
) -> Result<Response, ApiError> {
    let idem = Idempotent::new(key, digest);
    Ok(super::answer(otp::start(&app, &auth, req, &idem).await?))
}

/// Check a code for a verification.
#[utoipa::path(post, path = "/v1/otp/{id}/verify", tag = "otp", request_body = CheckCode,
    params(("id" = String, Path, description = "otp_…")),
    responses(
        (status = 200, body = CheckResult),
        (status = 404, body = Problem),
        (status = 409, description = "verification_closed, with verification_status", body = Problem),
        (status = 422, description = "a malformed code (no attempt is used)", body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn verify(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<VerificationId>,
    ApiJson { value: req, .. }: ApiJson<CheckCode>,
) -> Result<Json<CheckResult>, ApiError> {
    Ok(Json(
        otp::check(&app, &auth.tenant.id, &id, req.code).await?,
    ))
}

/// Check a code for the newest pending verification of a number.
#[utoipa::path(post, path = "/v1/otp/verify", tag = "otp", request_body = CheckCodeFor,
    responses(
        (status = 200, body = CheckResult),
        (status = 404, body = Problem),
        (status = 403, description = "destination_not_allowed", body = Problem),
        (status = 409, description = "verification_closed, with verification_status", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn verify_number(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiJson { value: req, .. }: ApiJson<CheckCodeFor>,
) -> Result<Json<CheckResult>, ApiError> {
    Ok(Json(
        otp::check_number(&app, &auth, &req.to, req.code).await?,
    ))
}

/// Send a fresh code; the previous one stops working.
#[utoipa::path(post, path = "/v1/otp/{id}/resend", tag = "otp",
    params(("id" = String, Path, description = "otp_…")),
    responses(
        (status = 200, body = Verification),
        (status = 402, description = "spend_cap_reached (live keys)", body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem),
        (status = 429, description = "cooldown or send cap, with Retry-After", body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn resend(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<VerificationId>,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(otp::resend(&app, &auth, &id).await?))
}

/// Cancel a pending verification.
#[utoipa::path(post, path = "/v1/otp/{id}/cancel", tag = "otp",
    params(("id" = String, Path, description = "otp_…")),
    responses((status = 200, body = Verification), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("api_key" = [])))]
pub async fn cancel(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<VerificationId>,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(otp::cancel(&app, &auth.tenant.id, &id).await?))
}

/// A verification.
#[utoipa::path(get, path = "/v1/otp/{id}", tag = "otp",
    params(("id" = String, Path, description = "otp_…")),
    responses((status = 200, body = Verification), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<VerificationId>,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(otp::get(&app, &auth.tenant.id, &id).await?))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/otp", post(start))
        .route("/v1/otp/verify", post(verify_number))
        .route("/v1/otp/{id}", get(get_one))
        .route("/v1/otp/{id}/verify", post(verify))
        .route("/v1/otp/{id}/resend", post(resend))
        .route("/v1/otp/{id}/cancel", post(cancel))
}
