//! POST /v1/sms, GET /v1/sms/{id}, GET /v1/sms

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth, IdempotencyKey, PageRequest};
use crate::domain::MaskedInput;
use crate::domain::ids::MessageId;
use crate::domain::message::{InboundSms, Message, MessageStatus};
use crate::http::error::{ApiError, Problem};
use crate::store::MessageFilter;
use crate::usecase::idempotency::Idempotent;
use crate::usecase::sms::{self, SendSms, destination};

/// Send an SMS. It is stored before the 202 is returned, then sent by a worker.
#[utoipa::path(post, path = "/v1/sms", tag = "sms", request_body = SendSms,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]+$", description = "Repeat a request safely for 24 h")),
    responses(
        (status = 202, description = "accepted and queued", body = Message),
        (status = 402, description = "spend_cap_reached (live keys)", body = Problem),
        (status = 403, description = "destination_not_allowed", body = Problem),
        (status = 422, description = "invalid_phone_number, body_too_long, invalid_request, idempotency_key_reused", body = Problem),
    ),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(tenant = %auth.tenant.id))]
pub async fn send(
    State(app): State<AppState>,
    Auth(auth): Auth,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson { value: req, digest }: ApiJson<SendSms>,
) -> Result<Response, ApiError> {
    let idem = Idempotent::new(key, digest);
    Ok(super::answer(sms::send(&app, &auth, req, &idem).await?))
}

/// A message with its status history.
#[utoipa::path(get, path = "/v1/sms/{id}", tag = "sms",
    params(("id" = String, Path, description = "msg_…")),
    responses((status = 200, body = Message), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiPath(id): ApiPath<MessageId>,
) -> Result<axum::Json<Message>, ApiError> {
    app.store
        .get_message(&auth.tenant.id, &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("message"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// A message id: return messages older than it.
    pub starting_after: Option<String>,
    #[param(value_type = Option<MessageStatus>)]
    pub status: Option<String>,
    /// Only messages to this number (E.164 or UK national format).
    #[param(min_length = 1, max_length = 32)]
    pub to: Option<String>,
    /// `outbound` (the default: what this account sent) or `inbound` (what
    /// handsets sent to its numbers; `status` and `to` do not apply).
    #[param(pattern = "^(outbound|inbound)$")]
    pub direction: Option<String>,
}

impl std::fmt::Debug for ListQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListQuery")
            .field("limit", &self.limit)
            .field("starting_after", &self.starting_after)
            .field("status", &self.status)
            .field("to", &MaskedInput(self.to.as_deref()))
            .field("direction", &self.direction)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub data: Vec<Message>,
    /// More messages follow: ask again with `starting_after` = the last id.
    pub has_more: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboundList {
    pub data: Vec<InboundSms>,
    pub has_more: bool,
}

/// The answer to `GET /v1/sms`: outbound messages, or with `direction=inbound` inbound ones.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SmsList {
    Outbound(MessageList),
    Inbound(InboundList),
}

// `anyOf`, not the `oneOf` utoipa derives: an empty list is both kinds.
impl utoipa::PartialSchema for SmsList {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("MessageList"))
            .item(utoipa::openapi::Ref::from_schema_name("InboundList"))
            .description(Some(
                "Outbound messages, or with `direction=inbound` inbound ones.",
            ))
            .into()
    }
}

impl ToSchema for SmsList {
    fn schemas(
        s: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        s.push((MessageList::name().into(), MessageList::schema()));
        <MessageList as ToSchema>::schemas(s);
        s.push((InboundList::name().into(), InboundList::schema()));
        <InboundList as ToSchema>::schemas(s);
    }
}

/// Messages, newest first.
#[utoipa::path(get, path = "/v1/sms", tag = "sms", params(ListQuery),
    responses((status = 200, body = SmsList),
        (status = 403, description = "destination_not_allowed (`to`)", body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Auth(auth): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<SmsList>, ApiError> {
    let request = PageRequest::parse(q.limit, q.starting_after)?;
    match q.direction.as_deref() {
        None | Some("outbound") => {}
        Some("inbound") => {
            if q.status.is_some() || q.to.is_some() {
                return Err(ApiError::invalid(
                    "direction",
                    "`status` and `to` filter outbound messages only",
                ));
            }
            let inbound = app
                .store
                .list_inbound(&auth.tenant.id, auth.mode, &request.page)
                .await?;
            let (data, has_more) = request.cut(inbound);
            return Ok(axum::Json(SmsList::Inbound(InboundList { data, has_more })));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "direction",
                "`direction` must be outbound or inbound",
            ));
        }
    }
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
        since: None,
        until: None,
        status,
        to,
        starting_after: request.page.starting_after.clone(),
        limit: request.page.limit,
    };
    let (data, has_more) = request.cut(app.store.list_messages(&auth.tenant.id, &filter).await?);
    Ok(axum::Json(SmsList::Outbound(MessageList {
        data,
        has_more,
    })))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sms", get(list).post(send))
        .route("/v1/sms/{id}", get(get_one))
}
