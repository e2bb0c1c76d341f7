//! GET /v1/sandbox/messages: what sandbox handsets received (test keys only).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiQuery, Auth};
use crate::domain::Mode;
use crate::http::error::{ApiError, Problem, ProblemCode};
use crate::store::SandboxMessage;
use crate::usecase::sms::destination;

/// The inbox keeps what a handset received for one hour.
const INBOX_WINDOW_MS: i64 = 3600 * 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only messages to this number.
    pub to: Option<String>,
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
    if auth.mode != Mode::Test {
        return Err(ApiError::new(
            ProblemCode::TestKeyRequired,
            "the sandbox inbox is available to test keys only",
        ));
    }
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

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/sandbox/messages", get(inbox))
}
