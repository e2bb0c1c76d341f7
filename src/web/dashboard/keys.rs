//! API keys: create (test or live, named, shown once), list, revoke.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::Chrome;
use crate::domain::Mode;
use crate::domain::ids::KeyId;
use crate::http::AppState;
use crate::store::ApiKeyInfo;
use crate::usecase::{ApiError, ProblemCode, keys};
use crate::web::form::Query;
use crate::web::session::{Signed, SignedForm};
use crate::web::{PageResult, refused, render, see_other};

#[derive(Template)]
#[template(path = "dashboard/keys.html")]
struct KeysPage {
    c: Chrome,
    keys: Vec<ApiKeyInfo>,
    /// A key just created: shown this once.
    created: Option<String>,
    error: Option<String>,
}

async fn load(app: &AppState, c: Chrome, s: &Signed) -> Result<KeysPage, ApiError> {
    Ok(KeysPage {
        c,
        keys: keys::list(app, &s.session.tenant.id).await?,
        created: None,
        error: None,
    })
}

async fn page(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let c = Chrome::new(&s, "keys").done(q.get("done"));
    Ok(render(StatusCode::OK, &load(&app, c, &s).await?))
}

async fn create(State(app): State<AppState>, form: SignedForm) -> PageResult {
    let s = &form.signed;
    let mode = Mode::parse(form.fields.get("mode"));
    let made = match mode {
        // A live key can rent numbers and change settings through the API:
        // only owners may make one.
        Some(Mode::Live) if !s.is_owner() => Err(ApiError::new(
            ProblemCode::OwnerRequired,
            "only an owner can create live keys (a live key can spend money)",
        )),
        Some(mode) => keys::create(&app, &s.session.tenant.id, mode, form.fields.get("name")).await,
        None => Err(ApiError::invalid("mode", "choose test or live")),
    };
    let mut page = load(&app, Chrome::new(s, "keys"), s).await?;
    match made {
        Ok((_, key)) => {
            page.created = Some(key.expose().to_string());
            page.keys = keys::list(&app, &s.session.tenant.id).await?;
            Ok(render(StatusCode::CREATED, &page))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            page.error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

async fn revoke(
    State(app): State<AppState>,
    Path(id): Path<KeyId>,
    form: SignedForm,
) -> PageResult {
    let tenant = &form.signed.session.tenant.id;
    keys::revoke(&app, tenant, &id).await?;
    app.auth_cache.forget_tenant(tenant);
    Ok(see_other("/dashboard/keys?done=revoked"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/keys", get(page).post(create))
        .route("/dashboard/keys/{id}/revoke", post(revoke))
}
