//! Webhooks: endpoints (add, edit events, pause, delete), the signing secret
//! shown once (at creation and rotation), and the delivery log with every
//! attempt and a replay button. The same use cases as `/v1/webhooks`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::Chrome;
use crate::domain::ids::{DeliveryId, EndpointId};
use crate::domain::webhook::{Delivery, Endpoint, EventType};
use crate::http::AppState;
use crate::store::Page;
use crate::usecase::ApiError;
use crate::usecase::idempotency::Idempotent;
use crate::usecase::webhooks::{self, CreateEndpoint, UpdateEndpoint, view};
use crate::web::form::{Fields, Query};
use crate::web::session::{Signed, SignedForm};
use crate::web::{PageResult, refused, render, see_other};

#[derive(Template)]
#[template(path = "dashboard/webhooks.html")]
struct WebhooksPage {
    c: Chrome,
    endpoints: Vec<Endpoint>,
    url: String,
    description: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/webhook.html")]
struct EndpointPage {
    c: Chrome,
    e: Endpoint,
    deliveries: Vec<Delivery>,
    /// A secret just made: shown this once.
    secret: Option<String>,
    error: Option<String>,
}

impl EndpointPage {
    fn sends(&self, event: &EventType) -> bool {
        self.e
            .events
            .as_ref()
            .is_none_or(|list| list.contains(event))
    }
}

/// Every event type, for the checkboxes.
fn all_events() -> [EventType; 7] {
    EventType::ALL
}

/// The checked event types; none checked means all of them.
fn events(f: &Fields) -> Result<Option<Vec<EventType>>, ApiError> {
    let list = f
        .all("events")
        .into_iter()
        .map(|e| {
            EventType::parse(e)
                .ok_or_else(|| ApiError::invalid("events", format!("{e:?} is not an event type")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!list.is_empty() && list.len() < EventType::ALL.len()).then_some(list))
}

async fn list_page(app: &AppState, c: Chrome, s: &Signed) -> Result<WebhooksPage, ApiError> {
    let page = Page {
        starting_after: None,
        limit: 100,
    };
    let endpoints = webhooks::list(app, &s.session.tenant.id, &page)
        .await?
        .iter()
        .map(|e| view(e, false))
        .collect();
    Ok(WebhooksPage {
        c,
        endpoints,
        url: String::new(),
        description: String::new(),
        error: None,
    })
}

async fn endpoint_page(app: &AppState, s: &Signed, e: Endpoint) -> Result<EndpointPage, ApiError> {
    let page = Page {
        starting_after: None,
        limit: 50,
    };
    let deliveries = webhooks::deliveries(app, &s.session.tenant.id, &e.id, &page).await?;
    Ok(EndpointPage {
        c: Chrome::new(s, "webhooks"),
        e,
        deliveries,
        secret: None,
        error: None,
    })
}

async fn index(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let c = Chrome::new(&s, "webhooks").done(q.get("done"));
    Ok(render(StatusCode::OK, &list_page(&app, c, &s).await?))
}

async fn create(State(app): State<AppState>, form: SignedForm) -> PageResult {
    let (s, f) = (&form.signed, &form.fields);
    let made = match events(f) {
        Ok(events) => {
            let req = CreateEndpoint {
                url: f.get("url").to_string(),
                events,
                description: f.opt("description").map(str::to_string),
            };
            webhooks::create(
                &app,
                &s.session.tenant.id,
                req,
                &Idempotent::new(None, None),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match made {
        Ok(answer) => {
            let created: Endpoint =
                serde_json::from_str(&answer.body).map_err(ApiError::internal)?;
            let secret = created.secret.clone();
            let mut page = endpoint_page(&app, s, created).await?;
            page.secret = secret;
            Ok(render(StatusCode::CREATED, &page))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            let mut page = list_page(&app, Chrome::new(s, "webhooks"), s).await?;
            page.url = f.get("url").to_string();
            page.description = f.get("description").to_string();
            page.error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

async fn show(
    State(app): State<AppState>,
    s: Signed,
    Path(id): Path<EndpointId>,
    Query(q): Query,
) -> PageResult {
    let e = view(
        &webhooks::get(&app, &s.session.tenant.id, &id).await?,
        false,
    );
    let mut page = endpoint_page(&app, &s, e).await?;
    page.c = page.c.done(q.get("done"));
    Ok(render(StatusCode::OK, &page))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<EndpointId>,
    form: SignedForm,
) -> PageResult {
    let (s, f) = (&form.signed, &form.fields);
    let tenant = &s.session.tenant.id;
    let current = webhooks::get(&app, tenant, &id).await?;
    let changed = match events(f) {
        Ok(events) => {
            // Only a changed box counts: saving other fields keeps why the
            // service paused an endpoint.
            let enabled = f.get("enabled") == "on";
            let req = UpdateEndpoint {
                url: Some(f.get("url").to_string()),
                events: Some(events),
                description: Some(f.get("description").to_string()),
                enabled: (enabled != current.enabled).then_some(enabled),
            };
            webhooks::update(&app, tenant, &id, req).await
        }
        Err(e) => Err(e),
    };
    match changed {
        Ok(_) => Ok(see_other(&format!("/dashboard/webhooks/{id}?done=saved"))),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let current = view(&webhooks::get(&app, tenant, &id).await?, false);
            let mut page = endpoint_page(&app, s, current).await?;
            page.error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

async fn rotate(
    State(app): State<AppState>,
    Path(id): Path<EndpointId>,
    form: SignedForm,
) -> PageResult {
    let s = &form.signed;
    let e = webhooks::rotate_secret(&app, &s.session.tenant.id, &id).await?;
    let secret = e.secret.clone();
    let mut page = endpoint_page(&app, s, e).await?;
    page.secret = secret;
    Ok(render(StatusCode::OK, &page))
}

async fn delete(
    State(app): State<AppState>,
    Path(id): Path<EndpointId>,
    form: SignedForm,
) -> PageResult {
    webhooks::delete(&app, &form.signed.session.tenant.id, &id).await?;
    Ok(see_other("/dashboard/webhooks?done=deleted"))
}

async fn replay(
    State(app): State<AppState>,
    Path((id, delivery)): Path<(EndpointId, DeliveryId)>,
    form: SignedForm,
) -> PageResult {
    webhooks::replay(&app, &form.signed.session.tenant.id, &id, &delivery).await?;
    Ok(see_other(&format!(
        "/dashboard/webhooks/{id}?done=replayed"
    )))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/webhooks", get(index).post(create))
        .route("/dashboard/webhooks/{id}", get(show).post(update))
        .route("/dashboard/webhooks/{id}/rotate", post(rotate))
        .route("/dashboard/webhooks/{id}/delete", post(delete))
        .route(
            "/dashboard/webhooks/{id}/deliveries/{delivery}/replay",
            post(replay),
        )
}
