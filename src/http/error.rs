//! The one error shape: RFC 9457 problem details plus a stable machine `code`
//! and the request id. Internal errors are logged with context and shown bare.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::usecase::error::{ApiError, ProblemCode};

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:line:problem:<code>`
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `invalid_phone_number`.
    pub code: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    pub request_id: String,
    /// Members particular to one code, e.g. `verification_status` with `verification_closed`.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        match &self.internal {
            Some(e) if self.code == ProblemCode::ServiceUnavailable => {
                tracing::warn!(error = format!("{e:#}"), %request_id, "database unavailable")
            }
            Some(e) => tracing::error!(error = format!("{e:#}"), %request_id, "internal error"),
            None => {}
        }
        let status = self.code.status();
        let problem = Problem {
            type_: format!("urn:line:problem:{}", self.code.as_str()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.detail,
            code: self.code.as_str().to_string(),
            param: self.param,
            request_id,
            extensions: self.extensions,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
