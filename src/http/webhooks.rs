//! Webhook endpoints: POST/GET /v1/webhooks, GET/PATCH/DELETE /v1/webhooks/{id},
//! POST /v1/webhooks/{id}/rotate-secret, deliveries and their replay.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth, IdempotencyKey, PageRequest};
use crate::domain::ids::{DeliveryId, EndpointId};
use crate::domain::webhook::{Delivery, Endpoint};
use crate::http::error::{ApiError, Problem};
use crate::usecase::idempotency::Idempotent;
use crate::usecase::webhooks::{self, CreateEndpoint, UpdateEndpoint, view};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

/// Add an endpoint. Its signing secret is in this response only (and after a rotation).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]+$", description = "Repeat a request safely for 24 h")),
    responses((status = 201, body = Endpoint), (status = 422, description = "invalid_webhook_url, invalid_request", body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let idem = Idempotent::new(key, digest);
    Ok(super::answer(
        webhooks::create(&app, &auth.tenant.id, req, &idem).await?,
    ))
}

/// The tenant's endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(ListQuery),
    responses((status = 200, body = EndpointList)), security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<EndpointList>, ApiError> {
    let request = PageRequest::parse(q.limit, q.starting_after)?;
    let (rows, has_more) = request.cut(webhooks::list(&app, &auth.tenant.id, &request.page).await?);
    Ok(Json(EndpointList {
        data: rows.iter().map(|e| view(e, false)).collect(),
        has_more,
    }))
}

/// An endpoint (without its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 200, body = Endpoint), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(view(
        &webhooks::get(&app, &auth.tenant.id, &id).await?,
        false,
    )))
}

/// Change the URL, events or description; re-enable a disabled endpoint.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateEndpoint,
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 200, body = Endpoint), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn update(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<EndpointId>,
    ApiJson { value: req, .. }: ApiJson<UpdateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        webhooks::update(&app, &auth.tenant.id, &id, req).await?,
    ))
}

/// Remove an endpoint.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete(&app, &auth.tenant.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret; the old one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 200, body = Endpoint), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        webhooks::rotate_secret(&app, &auth.tenant.id, &id).await?,
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
    pub has_more: bool,
}

/// An endpoint's deliveries with every attempt, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…"), ListQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn deliveries(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<EndpointId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let request = PageRequest::parse(q.limit, q.starting_after)?;
    let (data, has_more) =
        request.cut(webhooks::deliveries(&app, &auth.tenant.id, &id, &request.page).await?);
    Ok(Json(DeliveryList { data, has_more }))
}

/// Send a delivery again now, whatever became of it before.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…"), ("delivery_id" = String, Path, description = "whd_…")),
    responses((status = 202, description = "due now"), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn replay(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath((id, delivery_id)): ApiPath<(EndpointId, DeliveryId)>,
) -> Result<StatusCode, ApiError> {
    webhooks::replay(&app, &auth.tenant.id, &id, &delivery_id).await?;
    Ok(StatusCode::ACCEPTED)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route(
            "/v1/webhooks/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(replay),
        )
}
