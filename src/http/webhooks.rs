//! Webhook endpoints: POST/GET /v1/webhooks, GET/PATCH/DELETE /v1/webhooks/{id},
//! POST /v1/webhooks/{id}/rotate-secret.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Auth, IdempotencyKey, PageRequest};
use crate::domain::ids::{DeliveryId, EndpointId, TenantId};
use crate::domain::webhook::{Delivery, Endpoint, EventSet, EventType, new_secret};
use crate::http::error::{ApiError, Problem, ProblemCode};
use crate::store::{CreateOutcome, Rotation, StoredEndpoint};
use crate::usecase::detached;
use crate::usecase::idempotency::Idempotent;
use crate::webhook::check_destination;

const MAX_DESCRIPTION: usize = 200;
/// After a rotation the old secret keeps signing for a day.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An http(s) URL that does not resolve to an internal address.
    pub url: String,
    /// Event types to send here; omit for all.
    pub events: Option<Vec<EventType>>,
    pub description: Option<String>,
}

/// Present-but-null and absent differ for `events` (null = all types).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    /// A list of event types, or `null` for all of them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<EventType>>)]
    pub events: Option<Option<Vec<EventType>>>,
    pub description: Option<String>,
    /// `true` re-enables an endpoint that was disabled; `false` pauses it.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

fn view(e: &StoredEndpoint, with_secret: bool) -> Endpoint {
    Endpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        description: e.description.clone(),
        events: e.events.to_list(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone(),
        secret: with_secret.then(|| e.secret.clone()),
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

async fn checked_url(app: &AppState, url: &str) -> Result<String, ApiError> {
    check_destination(url, app.config.webhooks.allow_private_addresses)
        .await
        .map(|u| u.to_string())
        .map_err(|e| {
            ApiError::new(ProblemCode::InvalidWebhookUrl, format!("`url` {e}")).param("url")
        })
}

fn event_set(events: Option<Vec<EventType>>) -> Result<EventSet, ApiError> {
    match events {
        None => Ok(EventSet::All),
        Some(list) if list.is_empty() => Err(ApiError::invalid(
            "events",
            "`events` must name at least one event type; omit it (or send null) for all",
        )),
        Some(mut list) => {
            list.sort_unstable_by_key(|e| e.as_str());
            list.dedup();
            Ok(EventSet::Only(list))
        }
    }
}

fn checked_description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::invalid(
            "description",
            format!("`description` is longer than {MAX_DESCRIPTION} characters"),
        )),
        d => Ok(d),
    }
}

async fn load(
    app: &AppState,
    tenant_id: &TenantId,
    id: &EndpointId,
) -> Result<StoredEndpoint, ApiError> {
    app.store
        .get_endpoint(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// Add an endpoint. Its signing secret is in this response only (and after a rotation).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat a request safely for 24 h")),
    responses((status = 201, body = Endpoint), (status = 422, description = "invalid_webhook_url, invalid_request", body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let (description, events) = (
        checked_description(req.description)?,
        event_set(req.events)?,
    );
    // A repeat is answered as the first was, even if its host no longer resolves.
    let idem = Idempotent::new(key, digest);
    if let Some(earlier) = idem.earlier(&*app.store, &auth.tenant.id).await? {
        return Ok(super::answer(earlier));
    }
    let url = checked_url(&app, &req.url).await?;
    let now = app.clock.now();
    let endpoint = StoredEndpoint {
        id: EndpointId::generate(),
        tenant_id: auth.tenant.id.clone(),
        url,
        description,
        events,
        secret: new_secret(),
        previous_secret: None,
        previous_secret_until: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    const CREATED: u16 = 201;
    let body = serde_json::to_string(&view(&endpoint, true)).map_err(ApiError::internal)?;
    let record = idem.record(CREATED, &body);
    let (store, created) = (app.store.clone(), endpoint.clone());
    let outcome =
        detached(async move { store.create_endpoint(&created, record.as_ref()).await }).await?;
    if matches!(outcome, CreateOutcome::Created) {
        tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    }
    Ok(super::answer(idem.answer(outcome, CREATED, body)?))
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
    let (rows, has_more) = request.cut(
        app.store
            .list_endpoints(&auth.tenant.id, &request.page)
            .await?,
    );
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
    Path(id): Path<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(view(&load(&app, &auth.tenant.id, &id).await?, false)))
}

/// Change the URL, events or description; re-enable a disabled endpoint.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateEndpoint,
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 200, body = Endpoint), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn update(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Path(id): Path<EndpointId>,
    ApiJson { value: req, .. }: ApiJson<UpdateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    let mut e = load(&app, &auth.tenant.id, &id).await?;
    if let Some(url) = &req.url {
        e.url = checked_url(&app, url).await?;
    }
    if let Some(events) = req.events {
        e.events = event_set(events)?;
    }
    if req.description.is_some() {
        e.description = checked_description(req.description)?;
    }
    match req.enabled {
        Some(true) => {
            e.enabled = true;
            e.disabled_reason = None;
        }
        Some(false) => {
            e.enabled = false;
            e.disabled_reason = Some("disabled by the tenant".into());
        }
        None => {}
    }
    e.updated_at = app.clock.now();
    if !app.store.update_endpoint(&e).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(Json(view(&e, false)))
}

/// Remove an endpoint.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Path(id): Path<EndpointId>,
) -> Result<StatusCode, ApiError> {
    if app.store.delete_endpoint(&auth.tenant.id, &id).await? {
        tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

/// A new signing secret; the old one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…")),
    responses((status = 200, body = Endpoint), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Path(id): Path<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    let now = app.clock.now();
    let rotation = Rotation {
        tenant_id: auth.tenant.id.clone(),
        id: id.clone(),
        secret: new_secret(),
        previous_until: now.plus_ms(ROTATION_OVERLAP_MS),
        now,
    };
    if !app.store.rotate_endpoint_secret(&rotation).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    Ok(Json(view(&load(&app, &auth.tenant.id, &id).await?, true)))
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
    Path(id): Path<EndpointId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    load(&app, &auth.tenant.id, &id).await?;
    let request = PageRequest::parse(q.limit, q.starting_after)?;
    let (data, has_more) = request.cut(
        app.store
            .list_deliveries(&auth.tenant.id, &id, &request.page)
            .await?,
    );
    Ok(Json(DeliveryList { data, has_more }))
}

/// Send a delivery again now, whatever became of it before.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "wh_…"), ("delivery_id" = String, Path, description = "whd_…")),
    responses((status = 202, description = "due now"), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn replay(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Path((id, delivery_id)): Path<(EndpointId, DeliveryId)>,
) -> Result<StatusCode, ApiError> {
    if app
        .store
        .replay_delivery(&auth.tenant.id, &id, &delivery_id, app.clock.now())
        .await?
    {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("delivery"))
    }
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
