//! The public pages: `/` (what Line is, the quickstart) and `/demo` (the SMS
//! a verification would send, for a number typed in: nothing is sent or kept).

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

use super::form::{ClientAddr, Form, FormToken};
use super::{PageResult, base_url, render};
use crate::http::AppState;
use crate::usecase::limits::admit;
use crate::usecase::otp::{self, Preview, StartVerification};

#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    signup_open: bool,
    base: String,
}

async fn index(State(app): State<AppState>, headers: HeaderMap) -> PageResult {
    let signup_open = app.config.dashboard.signup == crate::config::SignUp::Open;
    let base = base_url(&headers);
    Ok(render(StatusCode::OK, &Index { signup_open, base }))
}

#[derive(Template, Default)]
#[template(path = "demo.html")]
struct Demo {
    csrf: String,
    to: String,
    brand: String,
    app_domain: String,
    error: Option<String>,
    preview: Option<Preview>,
}

async fn demo(form: FormToken) -> PageResult {
    let page = Demo {
        csrf: form.value.clone(),
        ..Demo::default()
    };
    Ok(form.apply(render(StatusCode::OK, &page)))
}

/// Renders the preview; the number is parsed and masked, never stored or logged.
async fn preview(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Form { fields: f, csrf }: Form,
) -> PageResult {
    admit(
        &app,
        &format!("demo-ip:{client}"),
        app.config.dashboard.demo_previews_per_ip_per_minute,
        Duration::from_secs(60),
        "too many previews from this address",
    )
    .await?;
    let mut page = Demo {
        csrf,
        to: f.get("to").to_string(),
        brand: f.get("brand").to_string(),
        app_domain: f.get("app_domain").to_string(),
        ..Demo::default()
    };
    let req = StartVerification {
        to: page.to.clone(),
        length: None,
        ttl_seconds: None,
        max_attempts: None,
        brand: f.opt("brand").map(str::to_string),
        template: None,
        app_domain: f.opt("app_domain").map(str::to_string),
    };
    let status = match otp::preview(&app, req) {
        Ok(p) => {
            page.preview = Some(p);
            StatusCode::OK
        }
        Err(e) => {
            let status = e.code.status();
            page.error = Some(e.detail);
            status
        }
    };
    Ok(render(status, &page))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/demo", get(demo).post(preview))
}
