//! Sign-up, login, logout and joining a team by invitation.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use super::dashboard::start::GetStarted;
use super::form::{ClientAddr, Fields, Form};
use super::session::{Signed, SignedForm, clear_cookie, cookie};
use super::{PageResult, WebError, render, see_other};
use crate::config::SignUp as SignUpMode;
use crate::domain::account::Token;
use crate::http::AppState;
use crate::usecase::{ApiError, accounts};

#[derive(Template, Default)]
#[template(path = "signup.html")]
struct SignUpPage {
    company: String,
    email: String,
    error: Option<String>,
    closed: bool,
}

#[derive(Template, Default)]
#[template(path = "login.html")]
struct LoginPage {
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    token: String,
    role: &'static str,
    email: String,
    error: Option<String>,
}

fn credentials(f: &Fields) -> accounts::Credentials {
    accounts::Credentials {
        email: f.get("email").to_string(),
        password: f.raw("password"),
    }
}

/// A form shown again with what went wrong (throttling stays a 429 page).
fn refused(e: ApiError) -> Result<(StatusCode, String), WebError> {
    if e.retry_after.is_some() || e.internal.is_some() {
        return Err(e.into());
    }
    Ok((e.code.status(), e.detail))
}

fn signed_in(
    status: StatusCode,
    headers: &HeaderMap,
    app: &AppState,
    token: &Token,
    page: Response,
) -> Response {
    let mut response = page;
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(headers, app, token));
    response
}

async fn signup_page(State(app): State<AppState>) -> PageResult {
    let closed = app.config.dashboard.signup != SignUpMode::Open;
    Ok(render(
        StatusCode::OK,
        &SignUpPage {
            closed,
            ..Default::default()
        },
    ))
}

/// Creates the tenant and signs in; the answer is the Get started page with
/// the first test key, shown this once.
async fn signup(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(f): Form,
) -> PageResult {
    match accounts::sign_up(&app, &client, f.get("company"), credentials(&f)).await {
        Ok((token, key)) => {
            let session = accounts::session(&app, token.expose())
                .await?
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("new session not found")))?;
            let signed = Signed {
                session,
                token: token.expose().to_string(),
            };
            let page = GetStarted::new(&signed, &headers, Some(key.expose().to_string()));
            Ok(signed_in(
                StatusCode::CREATED,
                &headers,
                &app,
                &token,
                render(StatusCode::OK, &page),
            ))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = SignUpPage {
                company: f.get("company").to_string(),
                email: f.get("email").to_string(),
                error: Some(detail),
                closed: false,
            };
            Ok(render(status, &page))
        }
    }
}

async fn login_page() -> PageResult {
    Ok(render(StatusCode::OK, &LoginPage::default()))
}

async fn login(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(f): Form,
) -> PageResult {
    match accounts::log_in(&app, &client, credentials(&f)).await {
        Ok(token) => Ok(signed_in(
            StatusCode::SEE_OTHER,
            &headers,
            &app,
            &token,
            see_other("/dashboard"),
        )),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = LoginPage {
                email: f.get("email").to_string(),
                error: Some(detail),
            };
            Ok(render(status, &page))
        }
    }
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, form: SignedForm) -> PageResult {
    accounts::log_out(&app, &form.signed.token).await?;
    let mut response = see_other("/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&headers, &app));
    Ok(response)
}

async fn join_page(State(app): State<AppState>, Path(token): Path<String>) -> PageResult {
    let invite = accounts::find_invite(&app, &token).await?;
    Ok(render(
        StatusCode::OK,
        &JoinPage {
            token,
            role: invite.role.as_str(),
            email: String::new(),
            error: None,
        },
    ))
}

async fn join(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form,
) -> PageResult {
    let invite = accounts::find_invite(&app, &token).await?;
    match accounts::accept_invite(&app, &client, &token, credentials(&f)).await {
        Ok(session) => Ok(signed_in(
            StatusCode::SEE_OTHER,
            &headers,
            &app,
            &session,
            see_other("/dashboard"),
        )),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = JoinPage {
                token,
                role: invite.role.as_str(),
                email: f.get("email").to_string(),
                error: Some(detail),
            };
            Ok(render(status, &page))
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signup", get(signup_page).post(signup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/invite/{token}", get(join_page).post(join))
}
