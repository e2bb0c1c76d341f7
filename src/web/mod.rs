//! The HTML side of the one binary: the public pages (`/`, `/demo`), sign-up
//! and login, and the tenant dashboard. Pages are askama templates checked at
//! compile time (`templates/`), with their CSS and one small script embedded
//! (`assets/`). Handlers here parse forms and render; the rules are the use
//! cases' (`usecase/`), the same ones the JSON API runs.

mod accounts;
mod dashboard;
pub mod form;
mod public;
mod session;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::domain::message::Timestamp;
use crate::http::AppState;
use crate::usecase::{ApiError, ProblemCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(public::router())
        .merge(accounts::router())
        .merge(dashboard::router())
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .layer(middleware::from_fn(security_headers))
}

/// Every page: a CSP that allows no inline script, no framing, no sniffing,
/// and nothing of the URL to other sites. Pages are never cached: they hold
/// tenant data, and keys shown once.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/style.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A rendered page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => WebError::from(ApiError::internal(e)).into_response(),
    }
}

/// See Other: where a form's POST goes next (so a reload does not repeat it).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    detail: String,
    request_id: String,
}

/// Why a page could not be shown: an `ApiError` shown as HTML, or "log in first".
pub enum WebError {
    Api(ApiError),
    LogIn,
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError::Api(e)
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        WebError::Api(e.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let e = match self {
            WebError::LogIn => return see_other("/login"),
            WebError::Api(e) => e,
        };
        let status = e.code.status();
        let retry_after = e.retry_after;
        if let Some(cause) = &e.internal {
            tracing::error!(error = %format!("{cause:#}"), "internal error on a page");
        }
        let title = match e.code {
            ProblemCode::NotFound => "Not found",
            ProblemCode::RateLimited => "Slow down",
            ProblemCode::InternalError => "Something went wrong",
            ProblemCode::CsrfRejected => "This form has expired",
            c if c.status() == StatusCode::FORBIDDEN => "Not allowed",
            _ => "That did not work",
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            detail: e.detail,
            request_id: crate::http::error::REQUEST_ID
                .try_with(Clone::clone)
                .unwrap_or_default(),
        };
        let mut response = render(status, &page);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type PageResult = Result<Response, WebError>;

/// What a refused form shows again: its status and sentence. Throttling
/// (a 429 page with Retry-After) and internal errors are pages of their own.
pub fn refused(e: ApiError) -> Result<(StatusCode, String), WebError> {
    if e.retry_after.is_some() || e.internal.is_some() {
        return Err(e.into());
    }
    Ok((e.code.status(), e.detail))
}

/// This site's address as the browser reached it, for copy-paste commands.
pub fn base_url(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .unwrap_or("127.0.0.1:8080");
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// A time as pages show it: `2026-12-02 14:05 UTC`.
pub fn when(t: impl std::borrow::Borrow<Timestamp>) -> String {
    chrono::DateTime::from_timestamp_millis(t.borrow().millis())
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Pence as pounds: `£1.05`.
pub fn pounds(pence: impl std::borrow::Borrow<i64>) -> String {
    let pence = *pence.borrow();
    let sign = if pence < 0 { "-" } else { "" };
    let p = pence.unsigned_abs();
    format!("{sign}£{}.{:02}", p / 100, p % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pence_show_as_pounds() {
        assert_eq!(pounds(0), "£0.00");
        assert_eq!(pounds(105), "£1.05");
        assert_eq!(pounds(-7), "-£0.07");
    }
}
