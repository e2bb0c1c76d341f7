//! GET /v1/openapi.json, generated from the handlers' annotations.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

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
    modifiers(&BearerAuth),
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

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi_json))
}
