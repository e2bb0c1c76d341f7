//! The sandbox, for test keys only: GET /v1/sandbox/messages (what sandbox
//! handsets received) and POST /v1/sandbox/inbound (a handset's reply).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Auth};
use crate::domain::ids::new_id;
use crate::domain::message::InboundSms;
use crate::domain::phone::PhoneNumber;
use crate::domain::{Hidden, MaskedInput, Mode};
use crate::http::error::{ApiError, Problem, ProblemCode};
use crate::store::{AuthContext, InboundMessage, SandboxMessage};
use crate::usecase::sms::destination;

/// The inbox keeps what a handset received for one hour.
const INBOX_WINDOW_MS: i64 = 3600 * 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only messages to this number.
    #[param(min_length = 1, max_length = 32)]
    pub to: Option<String>,
}

impl std::fmt::Debug for InboxQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxQuery")
            .field("to", &MaskedInput(self.to.as_deref()))
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inbox {
    /// Newest first; at most 100.
    pub data: Vec<SandboxMessage>,
}

/// Messages the sandbox handsets received in the last hour, bodies included, so
/// integration tests can read the codes they were sent.
#[utoipa::path(get, path = "/v1/sandbox/messages", tag = "sandbox", params(InboxQuery),
    responses((status = 200, body = Inbox), (status = 403, description = "a live key", body = Problem)),
    security(("api_key" = [])))]
pub async fn inbox(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> Result<axum::Json<Inbox>, ApiError> {
    test_key_only(&auth)?;
    let to =
        q.to.as_deref()
            .map(|t| destination(&auth, t).map(|n| n.e164().to_string()))
            .transpose()?;
    let since = app.clock.now().plus_ms(-INBOX_WINDOW_MS);
    let data = app
        .store
        .sandbox_inbox(&auth.tenant.id, to.as_deref(), since)
        .await?;
    Ok(axum::Json(Inbox { data }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatedInbound {
    /// The handset: E.164 or UK national format.
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub from: String,
    /// A sandbox number this account rents (POST /v1/numbers with a test key).
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub to: String,
    #[schema(min_length = 1, max_length = 1600)]
    pub body: String,
}

impl std::fmt::Debug for SimulatedInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedInbound")
            .field("from", &MaskedInput(Some(&self.from)))
            .field("to", &MaskedInput(Some(&self.to)))
            .field("body", &Hidden(&self.body))
            .finish()
    }
}

/// Simulate an SMS from a handset to one of the account's sandbox numbers: it
/// is recorded and fires message.received as a real one would.
#[utoipa::path(post, path = "/v1/sandbox/inbound", tag = "sandbox", request_body = SimulatedInbound,
    responses(
        (status = 201, body = InboundSms),
        (status = 403, description = "a live key", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("api_key" = [])))]
pub async fn inbound(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiJson { value: req, .. }: ApiJson<SimulatedInbound>,
) -> Result<(StatusCode, Json<InboundSms>), ApiError> {
    test_key_only(&auth)?;
    let number = |n: &str, param: &str| {
        PhoneNumber::parse(n, Mode::Test)
            .map(|p| p.e164().to_string())
            .map_err(|e| {
                ApiError::new(ProblemCode::InvalidPhoneNumber, format!("`{param}` {e}"))
                    .param(param)
            })
    };
    if req.body.is_empty() || req.body.chars().count() > 1600 {
        return Err(ApiError::invalid(
            "body",
            "`body` must be 1–1600 characters",
        ));
    }
    let msg = InboundMessage {
        id: new_id("mo"),
        carrier: "sandbox".into(),
        from: number(&req.from, "from")?,
        to: number(&req.to, "to")?,
        body: Some(req.body),
        received_at: app.clock.now(),
        mode: Mode::Test,
        tenant: Some(auth.tenant.id.clone()),
    };
    let recorded = app.store.record_inbound(&msg).await?.ok_or_else(|| {
        ApiError::invalid("to", "`to` must be a sandbox number this account rents")
    })?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

fn test_key_only(auth: &AuthContext) -> Result<(), ApiError> {
    if auth.mode == Mode::Test {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemCode::TestKeyRequired,
            "the sandbox is available to test keys only",
        ))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sandbox/messages", get(inbox))
        .route("/v1/sandbox/inbound", post(inbound))
}
