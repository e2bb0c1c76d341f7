//! Numbers: search the inventory, rent with the price shown, see renewal
//! dates, release after a confirmation. Live numbers by default; the sandbox's
//! free drama-range numbers under "test".

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;

use super::Chrome;
use crate::domain::Mode;
use crate::domain::ids::NumberId;
use crate::domain::number::{AvailableNumber, Number};
use crate::http::AppState;
use crate::store::Page;
use crate::usecase::accounts::require_owner;
use crate::usecase::idempotency::Idempotent;
use crate::usecase::numbers::{self, RentNumber};
use crate::usecase::{ApiError, ProblemCode};
use crate::web::form::{Fields, Query};
use crate::web::session::{Signed, SignedForm};
use crate::web::{PageResult, refused, render, see_other};

#[derive(Template)]
#[template(path = "dashboard/numbers.html")]
struct NumbersPage {
    c: Chrome,
    mode: &'static str,
    contains: String,
    available: Vec<AvailableNumber>,
    rented: Vec<Number>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/release.html")]
struct ReleasePage {
    c: Chrome,
    number: Number,
}

fn mode_of(f: &Fields) -> Mode {
    Mode::parse(f.get("mode")).unwrap_or(Mode::Live)
}

async fn load(
    app: &AppState,
    s: &Signed,
    mode: Mode,
    contains: &str,
) -> Result<NumbersPage, ApiError> {
    let auth = s.auth(mode);
    let available = numbers::available(app, &auth, Some(contains), 20).await?;
    let rented = numbers::list(
        app,
        &auth,
        &Page {
            starting_after: None,
            limit: 100,
        },
    )
    .await?;
    Ok(NumbersPage {
        c: Chrome::new(s, "numbers"),
        mode: mode.as_str(),
        contains: contains.to_string(),
        available,
        rented,
        error: None,
    })
}

async fn page(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let mut page = load(&app, &s, mode_of(&q), q.get("contains")).await?;
    page.c = page.c.done(q.get("done"));
    Ok(render(StatusCode::OK, &page))
}

/// Rents through the use case `POST /v1/numbers` runs: the first month is charged at once.
async fn rent(State(app): State<AppState>, form: SignedForm) -> PageResult {
    let s = &form.signed;
    require_owner(&s.session)?;
    let mode = mode_of(&form.fields);
    let req = RentNumber {
        number: form.fields.get("number").to_string(),
    };
    match numbers::rent(&app, &s.auth(mode), req, &Idempotent::new(None, None)).await {
        Ok(_) => Ok(see_other(&format!(
            "/dashboard/numbers?mode={}",
            mode.as_str()
        ))),
        Err(e) => {
            let over_cap = e.code == ProblemCode::SpendCapReached;
            let (status, detail) = refused(e)?;
            let mut page = load(&app, s, mode, form.fields.get("contains")).await?;
            page.error = Some(if over_cap {
                "renting this number would pass your monthly spend cap; raise it in Settings".into()
            } else {
                detail
            });
            Ok(render(status, &page))
        }
    }
}

async fn confirm_release(
    State(app): State<AppState>,
    s: Signed,
    Path(id): Path<NumberId>,
    Query(q): Query,
) -> PageResult {
    let number = numbers::get(&app, &s.auth(mode_of(&q)), &id).await?;
    Ok(render(
        StatusCode::OK,
        &ReleasePage {
            c: Chrome::new(&s, "numbers"),
            number,
        },
    ))
}

async fn release(
    State(app): State<AppState>,
    Path(id): Path<NumberId>,
    form: SignedForm,
) -> PageResult {
    require_owner(&form.signed.session)?;
    let mode = mode_of(&form.fields);
    numbers::release(&app, &form.signed.auth(mode), &id).await?;
    Ok(see_other(&format!(
        "/dashboard/numbers?mode={}&done=released",
        mode.as_str()
    )))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/numbers", get(page).post(rent))
        .route(
            "/dashboard/numbers/{id}/release",
            get(confirm_release).post(release),
        )
}
