//! Sign-up, login, logout and joining a team by invitation. The forms shown
//! before sign-in carry a double-submit token (`form::FormToken`).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use super::dashboard::start::GetStarted;
use super::form::{ClientAddr, Fields, Form, FormToken};
use super::session::{Signed, SignedForm, clear_cookie, session_cookie};
use super::{PageResult, refused, render, see_other};
use crate::config::SignUp as SignUpMode;
use crate::domain::account::Token;
use crate::http::AppState;
use crate::usecase::{ApiError, accounts};

#[derive(Template, Default)]
#[template(path = "signup.html")]
struct SignUpPage {
    csrf: String,
    company: String,
    email: String,
    error: Option<String>,
    mode: &'static str,
}

#[derive(Template, Default)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    csrf: String,
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

/// `response`, with the new session's cookie.
fn signed_in(
    headers: &HeaderMap,
    app: &AppState,
    token: &Token,
    mut response: Response,
) -> Response {
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(headers, app, token));
    response
}

fn signup_mode(app: &AppState) -> &'static str {
    match app.config.dashboard.signup {
        SignUpMode::Open => "open",
        SignUpMode::Invite => "invite",
        SignUpMode::Closed => "closed",
    }
}

async fn signup_page(State(app): State<AppState>, form: FormToken) -> PageResult {
    let page = SignUpPage {
        csrf: form.value.clone(),
        mode: signup_mode(&app),
        ..Default::default()
    };
    Ok(form.apply(render(StatusCode::OK, &page)))
}

/// Creates the tenant and signs in; the answer is the Get started page with
/// the first test key, shown this once.
async fn signup(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form { fields: f, csrf }: Form,
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
                &headers,
                &app,
                &token,
                render(StatusCode::CREATED, &page),
            ))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = SignUpPage {
                csrf,
                company: f.get("company").to_string(),
                email: f.get("email").to_string(),
                error: Some(detail),
                mode: signup_mode(&app),
            };
            Ok(render(status, &page))
        }
    }
}

async fn login_page(form: FormToken) -> PageResult {
    let page = LoginPage {
        csrf: form.value.clone(),
        ..Default::default()
    };
    Ok(form.apply(render(StatusCode::OK, &page)))
}

async fn login(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form { fields: f, csrf }: Form,
) -> PageResult {
    match accounts::log_in(&app, &client, credentials(&f)).await {
        Ok(token) => Ok(signed_in(&headers, &app, &token, see_other("/dashboard"))),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = LoginPage {
                csrf,
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

async fn join_page(
    State(app): State<AppState>,
    Path(token): Path<String>,
    form: FormToken,
) -> PageResult {
    let invite = accounts::find_invite(&app, &token).await?;
    let page = JoinPage {
        csrf: form.value.clone(),
        token,
        role: invite.role.as_str(),
        email: String::new(),
        error: None,
    };
    Ok(form.apply(render(StatusCode::OK, &page)))
}

async fn join(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form { fields: f, csrf }: Form,
) -> PageResult {
    let invite = accounts::find_invite(&app, &token).await?;
    match accounts::accept_invite(&app, &client, &token, credentials(&f)).await {
        Ok(session) => Ok(signed_in(&headers, &app, &session, see_other("/dashboard"))),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let page = JoinPage {
                csrf,
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
