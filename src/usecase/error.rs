//! Why an operation was refused: one stable problem code (which fixes the
//! HTTP status), a sentence for people, and the field at fault. Internal
//! failures carry their cause for the log only (`http::error` shows them bare).

use axum::http::StatusCode;

use crate::store::StoreError;

/// Every problem code the API answers with. Stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemCode {
    InvalidJson,
    Unauthorized,
    SpendCapReached,
    DestinationNotAllowed,
    TestKeyRequired,
    NotFound,
    MethodNotAllowed,
    VerificationClosed,
    RequestTooLarge,
    InvalidRequest,
    InvalidPhoneNumber,
    BodyTooLong,
    IdempotencyKeyReused,
    InvalidWebhookUrl,
    InvalidReceipt,
    RateLimited,
    InternalError,
    NotReady,
    NumberUnavailable,
    SenderNotAllowed,
    LiveKeyRequired,
    OwnerRequired,
    CsrfRejected,
    SignUpClosed,
    ServiceUnavailable,
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 25] = [
        ProblemCode::InvalidJson,
        ProblemCode::Unauthorized,
        ProblemCode::SpendCapReached,
        ProblemCode::DestinationNotAllowed,
        ProblemCode::TestKeyRequired,
        ProblemCode::NotFound,
        ProblemCode::MethodNotAllowed,
        ProblemCode::VerificationClosed,
        ProblemCode::RequestTooLarge,
        ProblemCode::InvalidRequest,
        ProblemCode::InvalidPhoneNumber,
        ProblemCode::BodyTooLong,
        ProblemCode::IdempotencyKeyReused,
        ProblemCode::InvalidWebhookUrl,
        ProblemCode::InvalidReceipt,
        ProblemCode::RateLimited,
        ProblemCode::InternalError,
        ProblemCode::NotReady,
        ProblemCode::NumberUnavailable,
        ProblemCode::SenderNotAllowed,
        ProblemCode::LiveKeyRequired,
        ProblemCode::OwnerRequired,
        ProblemCode::CsrfRejected,
        ProblemCode::SignUpClosed,
        ProblemCode::ServiceUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::InvalidJson => "invalid_json",
            ProblemCode::Unauthorized => "unauthorized",
            ProblemCode::SpendCapReached => "spend_cap_reached",
            ProblemCode::DestinationNotAllowed => "destination_not_allowed",
            ProblemCode::TestKeyRequired => "test_key_required",
            ProblemCode::NotFound => "not_found",
            ProblemCode::MethodNotAllowed => "method_not_allowed",
            ProblemCode::VerificationClosed => "verification_closed",
            ProblemCode::RequestTooLarge => "request_too_large",
            ProblemCode::InvalidRequest => "invalid_request",
            ProblemCode::InvalidPhoneNumber => "invalid_phone_number",
            ProblemCode::BodyTooLong => "body_too_long",
            ProblemCode::IdempotencyKeyReused => "idempotency_key_reused",
            ProblemCode::InvalidWebhookUrl => "invalid_webhook_url",
            ProblemCode::InvalidReceipt => "invalid_receipt",
            ProblemCode::RateLimited => "rate_limited",
            ProblemCode::InternalError => "internal_error",
            ProblemCode::NotReady => "not_ready",
            ProblemCode::NumberUnavailable => "number_unavailable",
            ProblemCode::SenderNotAllowed => "sender_not_allowed",
            ProblemCode::LiveKeyRequired => "live_key_required",
            ProblemCode::OwnerRequired => "owner_required",
            ProblemCode::CsrfRejected => "csrf_rejected",
            ProblemCode::SignUpClosed => "signup_closed",
            ProblemCode::ServiceUnavailable => "service_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemCode::InvalidJson => StatusCode::BAD_REQUEST,
            ProblemCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemCode::SpendCapReached => StatusCode::PAYMENT_REQUIRED,
            ProblemCode::DestinationNotAllowed
            | ProblemCode::TestKeyRequired
            | ProblemCode::LiveKeyRequired
            | ProblemCode::OwnerRequired
            | ProblemCode::CsrfRejected
            | ProblemCode::SignUpClosed => StatusCode::FORBIDDEN,
            ProblemCode::NotFound => StatusCode::NOT_FOUND,
            ProblemCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemCode::VerificationClosed | ProblemCode::NumberUnavailable => {
                StatusCode::CONFLICT
            }
            ProblemCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::InvalidRequest
            | ProblemCode::InvalidPhoneNumber
            | ProblemCode::BodyTooLong
            | ProblemCode::IdempotencyKeyReused
            | ProblemCode::InvalidWebhookUrl
            | ProblemCode::InvalidReceipt
            | ProblemCode::SenderNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemCode::NotReady | ProblemCode::ServiceUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// The error of every API operation, whoever asked (the JSON API or a page).
#[derive(Debug)]
pub struct ApiError {
    pub code: ProblemCode,
    pub detail: String,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    /// Members particular to one code, e.g. `verification_status`.
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// The cause of an internal error: logged, never shown.
    pub internal: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            param: None,
            retry_after: None,
            extensions: serde_json::Map::new(),
            internal: None,
        }
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Adds a member particular to this error to the problem body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 422 `invalid_request` naming the field at fault.
    pub fn invalid(param: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::InvalidRequest, detail).param(param)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ProblemCode::NotFound, format!("no such {what}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ProblemCode::Unauthorized,
            "a valid API key is required: Authorization: Bearer line_test_… or line_live_…",
        )
    }

    /// 429 `rate_limited`, retry after `wait_ms` (rounded up to seconds).
    pub fn too_many(what: &str, wait_ms: i64) -> Self {
        let secs = ((wait_ms + 999) / 1000).max(1) as u64;
        Self::new(
            ProblemCode::RateLimited,
            format!("{what}; try again in {secs} s"),
        )
        .retry_after(secs)
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let mut err = Self::new(
            ProblemCode::InternalError,
            "something went wrong on our side; it has been logged",
        );
        err.internal = Some(e.into());
        err
    }

    /// 503 `service_unavailable`: the database is out of reach for now; the
    /// request changed nothing, and may be tried again (Retry-After).
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        let mut err = Self::new(
            ProblemCode::ServiceUnavailable,
            "the service is briefly unavailable; try again in a few seconds (with the same \
             Idempotency-Key: a write under way may have completed)",
        )
        .retry_after(UNAVAILABLE_RETRY_SECONDS);
        err.internal = Some(e.into());
        err
    }
}

/// What a 503 asks clients to wait before trying again.
const UNAVAILABLE_RETRY_SECONDS: u64 = 2;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if crate::store::unavailable(&e) {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ProblemCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert!(code.status().as_u16() >= 400, "{s}");
        }
    }
}
