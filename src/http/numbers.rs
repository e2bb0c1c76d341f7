//! /v1/numbers: search, rent, list, read, release. The rules are in `usecase::numbers`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth, IdempotencyKey, PageRequest, page_limit};
use crate::domain::ids::NumberId;
use crate::domain::number::{AvailableNumber, Number};
use crate::http::error::{ApiError, Problem};
use crate::usecase::idempotency::Idempotent;
use crate::usecase::numbers::{self, RentNumber};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailableQuery {
    /// Digits the number must contain, e.g. `123`.
    #[param(pattern = "^[ +]*([0-9][ +]*){0,15}$")]
    pub contains: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AvailableList {
    pub data: Vec<AvailableNumber>,
}

/// Numbers this key may rent now (test keys: the free sandbox range).
#[utoipa::path(get, path = "/v1/numbers/available", tag = "numbers", params(AvailableQuery),
    responses((status = 200, body = AvailableList), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn available(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<AvailableQuery>,
) -> Result<Json<AvailableList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let data = numbers::available(&app, &auth, q.contains.as_deref(), limit).await?;
    Ok(Json(AvailableList { data }))
}

/// Rent a number: its first month is charged now, then one month at a time.
#[utoipa::path(post, path = "/v1/numbers", tag = "numbers", request_body = RentNumber,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]+$", description = "Repeat a request safely for 24 h")),
    responses(
        (status = 201, body = Number),
        (status = 402, description = "spend_cap_reached", body = Problem),
        (status = 409, description = "number_unavailable", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn rent(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<RentNumber>,
) -> Result<Response, ApiError> {
    let idem = Idempotent::new(key, digest);
    Ok(super::answer(numbers::rent(&app, &auth, req, &idem).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// A number's id: return numbers rented before it.
    pub starting_after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NumberList {
    pub data: Vec<Number>,
    pub has_more: bool,
}

/// The account's numbers for this key's mode, rented and released, newest first.
#[utoipa::path(get, path = "/v1/numbers", tag = "numbers", params(ListQuery),
    responses((status = 200, body = NumberList), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<NumberList>, ApiError> {
    let request = PageRequest::parse(q.limit, q.starting_after)?;
    let (data, has_more) = request.cut(numbers::list(&app, &auth, &request.page).await?);
    Ok(Json(NumberList { data, has_more }))
}

/// A number.
#[utoipa::path(get, path = "/v1/numbers/{id}", tag = "numbers",
    params(("id" = String, Path, description = "num_…")),
    responses((status = 200, body = Number), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<Json<Number>, ApiError> {
    Ok(Json(numbers::get(&app, &auth, &id).await?))
}

/// Release a number: no further fees; it rests before anyone else may rent it.
#[utoipa::path(delete, path = "/v1/numbers/{id}", tag = "numbers",
    params(("id" = String, Path, description = "num_…")),
    responses((status = 200, body = Number), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn release(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<Json<Number>, ApiError> {
    Ok(Json(numbers::release(&app, &auth, &id).await?))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/numbers", get(list).post(rent))
        .route("/v1/numbers/available", get(available))
        .route("/v1/numbers/{id}", get(get_one).delete(release))
}
