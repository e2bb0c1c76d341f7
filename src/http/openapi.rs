//! GET /v1/openapi.json, generated from the handlers' annotations.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::AppState;
use crate::config::Config;

#[derive(OpenApi)]
#[openapi(
    info(title = "Line API", description = "SMS and one-time passwords as a service"),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::carriers::receipts,
        super::sms::send,
        super::sms::get_one,
        super::sms::list,
        super::sandbox::inbox,
        super::sandbox::inbound,
        super::carriers::inbound,
        super::otp::start,
        super::otp::get_one,
        super::otp::verify,
        super::otp::verify_number,
        super::otp::resend,
        super::otp::cancel,
        super::account::get_one,
        super::account::update,
        super::account::usage,
        super::numbers::available,
        super::numbers::rent,
        super::numbers::list,
        super::numbers::get_one,
        super::numbers::release,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get_one,
        super::webhooks::update,
        super::webhooks::delete,
        super::webhooks::rotate_secret,
        super::webhooks::deliveries,
        super::webhooks::replay,
        openapi_json,
    ),
    modifiers(&BearerAuth, &ErrorResponses),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// What any operation may answer besides its own outcomes, stated once: a
/// bad key (401, then 429 from an address that keeps failing), a body that is
/// not the operation's JSON (400, 413, 422), a database out of reach or a
/// request past its time (503), a bug (500); every error as problem+json;
/// and operation ids made unique by their tag.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let PathItem {
                get,
                put,
                post,
                delete,
                patch,
                ..
            } = item;
            for op in [get, put, post, delete, patch].into_iter().flatten() {
                shared_responses(path, op);
            }
        }
    }
}

fn shared_responses(path: &str, op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description));
    };
    if secured {
        add(
            "401",
            "unauthorized: a missing, malformed or revoked API key",
        );
        add(
            "429",
            "rate_limited (Retry-After): too many requests without a valid key from this address",
        );
    }
    let params = op.parameters.as_deref().unwrap_or_default();
    if params.iter().any(|p| p.parameter_in == ParameterIn::Path) {
        add("404", "not_found: no such object for this account");
    }
    if params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Header))
    {
        add("422", "invalid_request, naming the parameter in `param`");
    }
    if op.request_body.is_some() {
        add("413", "request_too_large");
        if secured {
            add("400", "invalid_json: the body is not a JSON object");
            add("422", "invalid_request, naming the field in `param`");
        }
    }
    if path.starts_with("/v1/") {
        add("500", "internal_error");
        add(
            "503",
            "service_unavailable (Retry-After): the database is out of reach, or no answer in time",
        );
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if let (true, RefOr::T(r)) = (status.starts_with(['4', '5']), response)
            && let Some(content) = r.content.shift_remove("application/json")
        {
            r.content.insert(PROBLEM_JSON.to_string(), content);
        }
    }
    if let (Some(id), Some(tag)) = (
        op.operation_id.as_mut(),
        op.tags.as_ref().and_then(|t| t.first()),
    ) && !id.starts_with(tag.as_str())
    {
        *id = format!("{tag}_{id}");
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json(State(app): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(document(&app.config))
}

/// The document as served: the derived one, with what derives cannot say
/// (the configured spend-cap ceiling, the bodies HTTP carriers post).
pub fn document(config: &Config) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["components"]["schemas"]["AccountChange"]["properties"]["spend_cap_pence"]["maximum"] =
        json!(config.limits.spend_cap_ceiling_pence.0);
    let one_or_many =
        |item: serde_json::Value| json!({"oneOf": [item, {"type": "array", "items": item}]});
    let receipt = json!({
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {
                "description": "The id the carrier answered the submission with",
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "integer", "minimum": 0, "maximum": u64::MAX}
                ]
            },
            "status": {"type": "string", "enum": ["accepted", "enroute", "delivered", "undelivered", "expired", "failed"]},
            "error": {"type": ["string", "null"], "description": "kept to its first 256 characters"}
        }
    });
    let inbound = json!({
        "type": "object",
        "required": ["from", "to", "body"],
        "properties": {
            "from": {"type": "string", "minLength": 1, "maxLength": 32},
            "to": {"type": "string", "minLength": 1, "maxLength": 32},
            "body": {"type": "string"}
        }
    });
    for (path, body) in [("receipts", receipt), ("inbound", inbound)] {
        let op = &mut doc["paths"][format!("/v1/carriers/{{name}}/{path}")]["post"];
        op["requestBody"]["content"]["application/json"]["schema"] = one_or_many(body);
    }
    doc
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi_json))
}
