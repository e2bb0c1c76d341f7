//! Extractors that turn requests into checked values or our one error shape.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::api_key::ApiKey;
use crate::domain::ids::TenantId;
use crate::http::error::{ApiError, ProblemCode};
use crate::infra::json::whole_numbers;
use crate::store::{AuthContext, Page};
use crate::usecase::limits::admit;
use crate::web::form::client_addr;

/// A JSON body, plus (when the request has an `Idempotency-Key`) a digest of
/// its path and canonical form. Unknown fields and wrong types are 422s naming the field.
pub struct ApiJson<T> {
    pub value: T,
    pub digest: Option<String>,
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let path = req.uri().path().to_string();
        let keyed = req.headers().contains_key("idempotency-key");
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ProblemCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        if !json.is_object() {
            return Err(ApiError::new(
                ProblemCode::InvalidJson,
                "the body must be a JSON object",
            ));
        }
        // Before the digest: `6` and `6.0` are one request.
        whole_numbers(&mut json);
        // serde_json's maps are sorted, so equal requests hash equally whatever their layout.
        let digest =
            keyed.then(|| hex::encode(Sha256::digest(format!("{path}\n{json}").as_bytes())));
        let value = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // "unknown field `x`, expected …": name the unknown field itself.
            let param = match inner.strip_prefix("unknown field `") {
                Some(rest) if path == "." => rest.split('`').next().unwrap_or_default().to_string(),
                _ => path,
            };
            let inner = inner
                .split(" at line ")
                .next()
                .unwrap_or(&inner)
                .to_string();
            ApiError::invalid(param.clone(), format!("`{param}`: {inner}"))
        })?;
        Ok(ApiJson { value, digest })
    }
}

/// A raw body (up to `limits.max_request_bytes`), refused in our error shape.
pub struct ApiBytes(pub Bytes);

impl FromRequest<AppState> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ProblemCode::RequestTooLarge,
                        "the request body is too large",
                    )
                } else {
                    ApiError::invalid("body", "the request body could not be read")
                }
            })
    }
}

/// Path parameters, refused in our error shape: a segment that does not
/// decode (not UTF-8, say) names nothing here, so it is a 404.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| ApiError::not_found("resource"))
    }
}

/// A list's `limit`: 1–100, 20 when absent.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(20);
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            "`limit` must be between 1 and 100",
        ))
    }
}

/// A list request: `limit` items (1–100, default 20) older than
/// `starting_after`. The store is asked for one more than is shown, which
/// tells whether more follow.
pub struct PageRequest {
    pub page: Page,
    limit: u32,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, starting_after: Option<String>) -> Result<Self, ApiError> {
        let limit = page_limit(limit)?;
        Ok(PageRequest {
            page: Page {
                starting_after,
                limit: limit + 1,
            },
            limit,
        })
    }

    /// The items to show, and whether more follow.
    pub fn cut<T>(&self, mut data: Vec<T>) -> (Vec<T>, bool) {
        let has_more = data.len() > self.limit as usize;
        data.truncate(self.limit as usize);
        (data, has_more)
    }
}

/// Query parameters, with failures in our error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|r| ApiError::invalid("query", r.body_text()))
    }
}

/// The tenant and mode of the API key presented.
pub struct Auth(pub AuthContext);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|k| ApiKey::parse(k.trim()));
        let Some(key) = key else {
            return Err(refused(parts, state).await);
        };
        let hash = key.hash();
        if let Some(ctx) = state.auth_cache.get(&hash) {
            return Ok(Auth(ctx));
        }
        match state.store.authenticate(&hash, state.clock.now()).await? {
            Some(ctx) => {
                state.auth_cache.put(hash, ctx.clone());
                Ok(Auth(ctx))
            }
            None => Err(refused(parts, state).await),
        }
    }
}

/// A request without a valid key: 401, or 429 once its address has failed
/// `limits.failed_auths_per_ip_per_minute` times (keys are not guessed, but
/// a scan costs us a query each).
async fn refused(parts: &Parts, state: &AppState) -> ApiError {
    let addr = client_addr(parts, state.config.dashboard.behind_proxy).0;
    let limit = state.config.limits.failed_auths_per_ip_per_minute;
    let counted = admit(
        &state.core,
        &format!("auth_fail:{addr}"),
        limit,
        Duration::from_secs(60),
        "too many requests without a valid API key from this address",
    )
    .await;
    match counted {
        Ok(()) => ApiError::unauthorized(),
        Err(e) => e,
    }
}

/// Recently authenticated keys, so a hot key costs no query per request.
/// A revoked key stops working everywhere within `AUTH_CACHE_TTL`.
#[derive(Default)]
pub struct AuthCache(Mutex<HashMap<String, (AuthContext, Instant)>>);

const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);
const AUTH_CACHE_MAX: usize = 10_000;

impl AuthCache {
    fn get(&self, hash: &str) -> Option<AuthContext> {
        let map = self.0.lock().expect("auth cache lock");
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL)
            .map(|(ctx, _)| ctx.clone())
    }

    /// Drops a tenant's entries (its settings changed).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut map = self.0.lock().expect("auth cache lock");
        map.retain(|_, (ctx, _)| ctx.tenant.id != *tenant);
    }

    fn put(&self, hash: String, ctx: AuthContext) {
        let mut map = self.0.lock().expect("auth cache lock");
        if map.len() >= AUTH_CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
        }
        if map.len() < AUTH_CACHE_MAX {
            map.insert(hash, (ctx, Instant::now()));
        }
    }
}

/// The optional `Idempotency-Key` header.
pub struct IdempotencyKey(pub Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid("Idempotency-Key", "must be 1–255 visible ASCII characters")
            })?;
        Ok(IdempotencyKey(Some(key.to_string())))
    }
}
