//! Webhook endpoints: what a tenant may register, and the rules for changing,
//! rotating and replaying them (the API and the dashboard both call these).

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::error::{ApiError, ProblemCode};
use super::idempotency::{Answer, Idempotent};
use super::{Core, detached};
use crate::domain::ids::{DeliveryId, EndpointId, TenantId};
use crate::domain::webhook::{Delivery, Endpoint, EventSet, EventType, new_secret};
use crate::store::{CreateOutcome, Page, Rotation, StoredEndpoint};
use crate::webhook::check_destination;

const MAX_DESCRIPTION: usize = 200;
/// After a rotation the old secret keeps signing for a day.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An http(s) URL that does not resolve to an internal address.
    #[schema(
        format = "uri",
        max_length = 2048,
        example = "https://example.com/hooks/line"
    )]
    pub url: String,
    /// Event types to send here; omit for all.
    #[schema(min_items = 1)]
    pub events: Option<Vec<EventType>>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

/// Present-but-null and absent differ for `events` (null = all types).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[schema(
        format = "uri",
        max_length = 2048,
        example = "https://example.com/hooks/line"
    )]
    pub url: Option<String>,
    /// A list of event types, or `null` for all of them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<EventType>>, min_items = 1)]
    pub events: Option<Option<Vec<EventType>>>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// `true` re-enables an endpoint that was disabled; `false` pauses it.
    pub enabled: Option<bool>,
}

pub fn view(e: &StoredEndpoint, with_secret: bool) -> Endpoint {
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

async fn checked_url(app: &Core, url: &str) -> Result<String, ApiError> {
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

pub async fn get(
    app: &Core,
    tenant_id: &TenantId,
    id: &EndpointId,
) -> Result<StoredEndpoint, ApiError> {
    app.store
        .get_endpoint(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// Adds an endpoint; its signing secret is in this answer only (and after a rotation).
pub async fn create(
    app: &Core,
    tenant_id: &TenantId,
    req: CreateEndpoint,
    idem: &Idempotent,
) -> Result<Answer, ApiError> {
    let (description, events) = (
        checked_description(req.description)?,
        event_set(req.events)?,
    );
    // A repeat is answered as the first was, even if its host no longer resolves.
    if let Some(earlier) = idem.earlier(&*app.store, tenant_id).await? {
        return Ok(earlier);
    }
    let url = checked_url(app, &req.url).await?;
    let now = app.clock.now();
    let endpoint = StoredEndpoint {
        id: EndpointId::generate(),
        tenant_id: tenant_id.clone(),
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
    idem.answer(outcome, CREATED, body)
}

pub async fn list(
    app: &Core,
    tenant_id: &TenantId,
    page: &Page,
) -> Result<Vec<StoredEndpoint>, ApiError> {
    Ok(app.store.list_endpoints(tenant_id, page).await?)
}

/// Changes the URL, events or description; re-enables or pauses.
pub async fn update(
    app: &Core,
    tenant_id: &TenantId,
    id: &EndpointId,
    req: UpdateEndpoint,
) -> Result<Endpoint, ApiError> {
    let mut e = get(app, tenant_id, id).await?;
    if let Some(url) = &req.url {
        e.url = checked_url(app, url).await?;
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
    Ok(view(&e, false))
}

pub async fn delete(app: &Core, tenant_id: &TenantId, id: &EndpointId) -> Result<(), ApiError> {
    if app.store.delete_endpoint(tenant_id, id).await? {
        tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
        Ok(())
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

/// A new signing secret (shown in this answer); the old one keeps signing beside it for 24 hours.
pub async fn rotate_secret(
    app: &Core,
    tenant_id: &TenantId,
    id: &EndpointId,
) -> Result<Endpoint, ApiError> {
    let now = app.clock.now();
    let rotation = Rotation {
        tenant_id: tenant_id.clone(),
        id: id.clone(),
        secret: new_secret(),
        previous_until: now.plus_ms(ROTATION_OVERLAP_MS),
        now,
    };
    if !app.store.rotate_endpoint_secret(&rotation).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    Ok(view(&get(app, tenant_id, id).await?, true))
}

/// An endpoint's deliveries with every attempt, newest first.
pub async fn deliveries(
    app: &Core,
    tenant_id: &TenantId,
    id: &EndpointId,
    page: &Page,
) -> Result<Vec<Delivery>, ApiError> {
    get(app, tenant_id, id).await?;
    Ok(app.store.list_deliveries(tenant_id, id, page).await?)
}

/// Makes a delivery due now, whatever became of it before.
pub async fn replay(
    app: &Core,
    tenant_id: &TenantId,
    id: &EndpointId,
    delivery_id: &DeliveryId,
) -> Result<(), ApiError> {
    if app
        .store
        .replay_delivery(tenant_id, id, delivery_id, app.clock.now())
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found("delivery"))
    }
}
