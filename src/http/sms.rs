//! POST /v1/sms, GET /v1/sms/{id}, GET /v1/sms

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Auth, IdempotencyKey, page_limit};
use crate::clock::new_id;
use crate::domain::Mode;
use crate::domain::encoding::{BodyError, SmsBody};
use crate::domain::message::{Message, MessageStatus, Pence, StatusChange};
use crate::domain::phone::PhoneNumber;
use crate::domain::sender::Sender;
use crate::error::{ApiError, Problem};
use crate::store::{
    AuthContext, CreateOutcome, IdempotencyRecord, MessageFilter, NewMessage, PendingMessage,
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSms {
    /// E.164 (`+447400123456`) or UK national format (`07400 123456`).
    pub to: String,
    /// The text; GSM-7 or UCS-2 is chosen automatically; at most 10 segments.
    pub body: String,
    /// Alphanumeric sender ID (1–11 characters) or an E.164 number; defaults to the configured sender.
    pub from: Option<String>,
    /// Your own reference, up to 128 characters, returned with the message.
    pub reference: Option<String>,
}

const MAX_REFERENCE: usize = 128;

/// Parses a destination for this key's mode and checks the tenant's allowlist.
pub fn destination(auth: &AuthContext, to: &str) -> Result<PhoneNumber, ApiError> {
    let number = PhoneNumber::parse(to, auth.mode).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
            format!("`to` {e}"),
        )
        .param("to")
    })?;
    if !auth
        .tenant
        .allowed_regions
        .iter()
        .any(|r| r == number.region())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "destination_not_allowed",
            format!(
                "this account may send to {} only; {} is not allowed",
                auth.tenant.allowed_regions.join(", "),
                number.region()
            ),
        )
        .param("to"));
    }
    Ok(number)
}

/// Send an SMS. It is stored before the 202 is returned, then sent by a worker.
#[utoipa::path(post, path = "/v1/sms", tag = "sms", request_body = SendSms,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat a request safely for 24 h")),
    responses(
        (status = 202, description = "accepted and queued", body = Message),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "invalid_phone_number, body_too_long, invalid_request, idempotency_key_reused", body = Problem),
    ),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(tenant = %auth.tenant.id))]
pub async fn send(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(idem_key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<SendSms>,
) -> Result<Response, ApiError> {
    let to = destination(&auth, &req.to)?;
    let body = SmsBody::parse(req.body).map_err(|e| match e {
        BodyError::Empty => ApiError::invalid("body", "`body` must not be empty"),
        BodyError::TooLong { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body_too_long",
            e.to_string(),
        )
        .param("body"),
    })?;
    let from = match &req.from {
        Some(f) => {
            Sender::parse(f).map_err(|e| ApiError::invalid("from", format!("`from` {e}")))?
        }
        None => app.config.default_sender.clone(),
    };
    if req
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REFERENCE)
    {
        return Err(ApiError::invalid(
            "reference",
            format!("`reference` is longer than {MAX_REFERENCE} characters"),
        ));
    }
    let new = compose(&app, &auth, &to, &body, &from, req.reference);
    super::limits::charge(&app, &auth, new.price).await?;
    let now = new.created_at;
    let price = new.price;
    let message = Message {
        id: new.id.clone(),
        to: new.to.clone(),
        from: new.from.clone(),
        mode: new.mode,
        status: MessageStatus::Queued,
        encoding: new.encoding,
        segments: new.segments,
        price_pence: price,
        reference: new.reference.clone(),
        error_code: None,
        error_message: None,
        created_at: now,
        updated_at: now,
        status_history: vec![StatusChange {
            status: MessageStatus::Queued,
            at: now,
        }],
    };
    let response = serde_json::to_string(&message).map_err(ApiError::internal)?;
    let idem = idem_key
        .zip(digest)
        .map(|(key, request_hash)| IdempotencyRecord {
            key,
            request_hash,
            status: StatusCode::ACCEPTED.as_u16(),
            response: response.clone(),
        });
    let (id, segments) = (new.id.clone(), new.segments);
    let outcome = app
        .writer
        .submit(PendingMessage {
            message: new,
            idem: idem.clone(),
        })
        .await?;
    match outcome {
        CreateOutcome::Created => {
            app.wake.notify_one();
            tracing::debug!(message_id = %id, to = %to.masked(), segments, "message queued");
            Ok(json_response(StatusCode::ACCEPTED, response, false))
        }
        CreateOutcome::Existing {
            request_hash,
            status,
            response,
        } => replay(
            &idem
                .expect("only a keyed request finds a record")
                .request_hash,
            &request_hash,
            status,
            response,
        ),
    }
}

/// A queued message for this key's tenant and mode, priced (test keys cost nothing).
pub fn compose(
    app: &AppState,
    auth: &AuthContext,
    to: &PhoneNumber,
    body: &SmsBody,
    from: &Sender,
    reference: Option<String>,
) -> NewMessage {
    let price = match auth.mode {
        Mode::Test => Pence(0),
        Mode::Live => app.config.prices.sms_segment_pence.times(body.segments()),
    };
    NewMessage {
        id: new_id("msg"),
        tenant_id: auth.tenant.id.clone(),
        mode: auth.mode,
        to: to.e164().to_string(),
        from: from.as_str().to_string(),
        body_hmac: app.hash_key.body_hash(body.text()),
        body: body.text().to_string(),
        encoding: body.encoding(),
        segments: body.segments(),
        price,
        reference,
        created_at: app.clock.now(),
    }
}

/// The answer to a request whose Idempotency-Key was used before: the first
/// response if the request is the same, else 422.
pub fn replay(
    request_hash: &str,
    stored_hash: &str,
    status: u16,
    response: String,
) -> Result<Response, ApiError> {
    if request_hash != stored_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
        .param("Idempotency-Key"));
    }
    let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
    Ok(json_response(status, response, true))
}

pub fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A message with its status history.
#[utoipa::path(get, path = "/v1/sms/{id}", tag = "sms",
    params(("id" = String, Path, description = "msg_…")),
    responses((status = 200, body = Message), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Message>, ApiError> {
    app.store
        .get_message(&auth.tenant.id, &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("message"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    pub limit: Option<u32>,
    /// A message id: return messages older than it.
    pub starting_after: Option<String>,
    pub status: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub data: Vec<Message>,
    /// More messages follow: ask again with `starting_after` = the last id.
    pub has_more: bool,
}

/// Messages, newest first.
#[utoipa::path(get, path = "/v1/sms", tag = "sms", params(ListQuery),
    responses((status = 200, body = MessageList), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<MessageList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "`status` must be one of queued, sent, delivered, undelivered, failed, expired",
                )
            })
        })
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|t| destination(&auth, t).map(|n| n.e164().to_string()))
            .transpose()?;
    let filter = MessageFilter {
        status,
        to,
        starting_after: q.starting_after,
        limit: limit + 1,
    };
    let mut data = app.store.list_messages(&auth.tenant.id, &filter).await?;
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    Ok(axum::Json(MessageList { data, has_more }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sms", get(list).post(send))
        .route("/v1/sms/{id}", get(get_one))
}
