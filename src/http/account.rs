//! GET/PATCH /v1/account and GET /v1/usage. The rules are in `usecase::account`
//! and `usecase::usage`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Auth};
use crate::domain::Mode;
use crate::http::error::{ApiError, Problem, ProblemCode};
use crate::usecase::account::{self, Account, AccountChange};
use crate::usecase::usage::{self, Usage};

/// The account's settings.
#[utoipa::path(get, path = "/v1/account", tag = "account",
    responses((status = 200, body = Account), (status = 401, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(account::get(&app, &auth.tenant.id).await?))
}

/// Change the name (OTP brand), default sender, allowed countries or spend cap
/// (live keys only: they govern what live sends may cost and reach).
#[utoipa::path(patch, path = "/v1/account", tag = "account", request_body = AccountChange,
    responses((status = 200, body = Account), (status = 401, body = Problem),
        (status = 403, description = "live_key_required", body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn update(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiJson { value: change, .. }: ApiJson<AccountChange>,
) -> Result<Json<Account>, ApiError> {
    if auth.mode != Mode::Live {
        return Err(ApiError::new(
            ProblemCode::LiveKeyRequired,
            "account settings change with a live key only",
        ));
    }
    let account = account::update(&app, &auth.tenant.id, change).await?;
    // This process's next request sees the change; others within the cache's 10 s.
    app.auth_cache.forget_tenant(&auth.tenant.id);
    Ok(Json(account))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `YYYY-MM` (UTC); default: this month.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2026-12")]
    pub period: Option<String>,
}

/// What a month cost, from the ledger: messages, segments, SMS charges, number
/// fees and refunds in pence, by day, and what is left of the spend cap.
#[utoipa::path(get, path = "/v1/usage", tag = "account", params(UsageQuery),
    responses((status = 200, body = Usage), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn usage(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    Ok(Json(usage::usage(&app, &auth, q.period.as_deref()).await?))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/account", get(get_one).patch(update))
        .route("/v1/usage", get(usage))
}
