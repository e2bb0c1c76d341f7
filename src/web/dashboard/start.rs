//! Get started: the test key (once, at sign-up), a copy-paste curl, and a
//! button that starts a sandbox OTP and shows it travel to "delivered".

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use super::Chrome;
use crate::domain::Mode;
use crate::domain::ids::VerificationId;
use crate::domain::message::{Message, MessageStatus};
use crate::http::AppState;
use crate::store::SandboxMessage;
use crate::usecase::idempotency::Idempotent;
use crate::usecase::otp::{self, StartVerification};
use crate::web::session::{Signed, SignedForm};
use crate::web::{PageResult, base_url, refused, render};

/// The sandbox number the button sends to unless another is typed.
const SANDBOX_NUMBER: &str = "+447700900123";

#[derive(Template)]
#[template(path = "dashboard/start.html")]
pub struct GetStarted {
    c: Chrome,
    key: Option<String>,
    base: String,
    to: String,
    error: Option<String>,
    /// The request as the API would take it, and its answer.
    request: Option<String>,
    response: Option<String>,
    verification: Option<String>,
}

impl GetStarted {
    pub fn new(s: &Signed, headers: &HeaderMap, key: Option<String>) -> GetStarted {
        GetStarted {
            c: Chrome::new(s, "start"),
            key,
            base: base_url(headers),
            to: SANDBOX_NUMBER.into(),
            error: None,
            request: None,
            response: None,
            verification: None,
        }
    }

    fn shown_key(&self) -> &str {
        self.key.as_deref().unwrap_or("$LINE_TEST_KEY")
    }
}

async fn page(s: Signed, headers: HeaderMap) -> PageResult {
    Ok(render(StatusCode::OK, &GetStarted::new(&s, &headers, None)))
}

/// Starts a verification with the tenant's sandbox (test mode): the same use
/// case `POST /v1/otp` runs.
async fn send_test(
    State(app): State<AppState>,
    headers: HeaderMap,
    form: SignedForm,
) -> PageResult {
    let to = form.fields.opt("to").unwrap_or(SANDBOX_NUMBER).to_string();
    let mut page = GetStarted::new(&form.signed, &headers, None);
    page.to = to.clone();
    page.request = Some(serde_json::json!({ "to": to }).to_string());
    let req = StartVerification {
        to,
        length: None,
        ttl_seconds: None,
        max_attempts: None,
        brand: None,
        template: None,
        app_domain: None,
    };
    let auth = form.signed.auth(Mode::Test);
    match otp::start(&app, &auth, req, &Idempotent::new(None, None)).await {
        Ok(answer) => {
            let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
            page.verification = v["id"].as_str().map(str::to_string);
            page.response = Some(format!(
                "HTTP {}\n{}",
                answer.status,
                serde_json::to_string_pretty(&v).unwrap_or(answer.body)
            ));
            Ok(render(StatusCode::CREATED, &page))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            page.error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/otp_status.html")]
struct OtpStatus {
    verification_status: &'static str,
    message: Option<Message>,
    sms: Option<SandboxMessage>,
    done: bool,
}

/// The test OTP as it travels: verification, message status history, and the
/// SMS the sandbox handset received. The page's script polls this fragment.
async fn status(
    State(app): State<AppState>,
    s: Signed,
    Path(id): Path<VerificationId>,
) -> PageResult {
    let tenant = &s.session.tenant.id;
    let v = otp::get(&app, tenant, &id).await?;
    let message = app.store.get_message(tenant, &v.message_id).await?;
    let sms = app
        .store
        .sandbox_inbox(tenant, Some(&v.to), v.created_at)
        .await?
        .into_iter()
        .find(|m| m.message_id == v.message_id);
    let done = message
        .as_ref()
        .is_some_and(|m| m.status != MessageStatus::Queued && m.status != MessageStatus::Sent);
    Ok(render(
        StatusCode::OK,
        &OtpStatus {
            verification_status: v.status.as_str(),
            message,
            sms,
            done,
        },
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/test-otp", post(send_test))
        .route("/dashboard/test-otp/{id}", get(status))
}
