//! Send an SMS: check the destination, body and sender, count it against the
//! spend cap, and commit it to the queue (in groups) before answering.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;

use super::Core;
use super::error::{ApiError, ProblemCode};
use super::idempotency::{Answer, Idempotent};
use super::limits::spend_cap;
use crate::domain::encoding::{BodyError, SmsBody};
use crate::domain::ids::MessageId;
use crate::domain::message::{Message, MessageStatus, Pence, StatusChange};
use crate::domain::phone::PhoneNumber;
use crate::domain::sender::Sender;
use crate::domain::{Hidden, MaskedInput, Mode};
use crate::infra::batch::{Batcher, in_rounds};
use crate::store::{AuthContext, CreateOutcome, NewMessage, PendingMessage, SharedError, Store};
use crate::worker::handoff::Handoff;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSms {
    /// E.164 (`+447400123456`) or UK national format (`07400 123456`).
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub to: String,
    /// The text; GSM-7 or UCS-2 is chosen automatically; at most 10 segments.
    #[schema(min_length = 1, max_length = 1530, example = "Your code is 424242")]
    pub body: String,
    /// Alphanumeric sender ID (1–11 characters) or an E.164 number; defaults to the configured sender.
    #[schema(pattern = r"^\s*(\+[0-9]{8,15}|[A-Za-z0-9 ]{1,11})\s*$")]
    pub from: Option<String>,
    /// Your own reference, up to 128 characters, returned with the message.
    #[schema(max_length = 128)]
    pub reference: Option<String>,
}

/// The number masked, the text hidden: a request may be logged, its SMS never.
impl std::fmt::Debug for SendSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSms")
            .field("to", &MaskedInput(Some(&self.to)))
            .field("body", &Hidden(&self.body))
            .field("from", &self.from)
            .field("reference", &self.reference)
            .finish()
    }
}

const MAX_REFERENCE: usize = 128;

/// Parses a destination for this key's mode and checks the tenant's allowlist.
pub fn destination(auth: &AuthContext, to: &str) -> Result<PhoneNumber, ApiError> {
    let number = PhoneNumber::parse(to, auth.mode).map_err(|e| {
        ApiError::new(ProblemCode::InvalidPhoneNumber, format!("`to` {e}")).param("to")
    })?;
    if !auth
        .tenant
        .allowed_regions
        .iter()
        .any(|r| r == number.region())
    {
        return Err(ApiError::new(
            ProblemCode::DestinationNotAllowed,
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

/// Queues a message; answers 202 with it once it is committed.
pub async fn send(
    app: &Core,
    auth: &AuthContext,
    req: SendSms,
    idem: &Idempotent,
) -> Result<Answer, ApiError> {
    let to = destination(auth, &req.to)?;
    let body = SmsBody::parse(req.body).map_err(|e| match e {
        BodyError::Empty => ApiError::invalid("body", "`body` must not be empty"),
        BodyError::TooLong { .. } => {
            ApiError::new(ProblemCode::BodyTooLong, e.to_string()).param("body")
        }
    })?;
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
    // A repeated request is answered as the first was, before the cap counts
    // it again (and whatever became of the number it was sent from).
    if let Some(earlier) = idem.earlier(&*app.store, &auth.tenant.id).await? {
        return Ok(earlier);
    }
    let from = sender_for(app, auth, req.from.as_deref()).await?;
    let new = compose(app, auth, to.e164(), &body, &from, req.reference);
    let now = new.created_at;
    let message = Message {
        id: new.id.clone(),
        to: new.to.clone(),
        from: new.from.clone(),
        mode: new.mode,
        status: MessageStatus::Queued,
        encoding: new.encoding,
        segments: new.segments,
        price_pence: new.price,
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
    const ACCEPTED: u16 = 202;
    let (id, segments) = (new.id.clone(), new.segments);
    let outcome = app
        .messages
        .submit(PendingMessage {
            message: new,
            idem: idem.record(ACCEPTED, &response),
        })
        .await?;
    if matches!(outcome, CreateOutcome::Created) {
        app.wake.notify_one();
        tracing::debug!(message_id = %id, to = %to.masked(), segments, "message queued");
    }
    idem.answer(outcome, ACCEPTED, response)
}

/// The `from` of a message: the one asked for, else the tenant's default,
/// else the operator's. A number must be one the tenant rents in this key's
/// mode (no sending as numbers it does not own); an alphanumeric ID is free.
pub async fn sender_for(
    app: &Core,
    auth: &AuthContext,
    requested: Option<&str>,
) -> Result<Sender, ApiError> {
    if let Some(f) = requested {
        let sender =
            Sender::parse(f).map_err(|e| ApiError::invalid("from", format!("`from` {e}")))?;
        if !owned(app, auth, &sender).await? {
            return Err(ApiError::new(
                ProblemCode::SenderNotAllowed,
                "`from` is a number this account does not rent (for this key's mode); \
                 rent it with POST /v1/numbers or send from an alphanumeric ID",
            )
            .param("from"));
        }
        return Ok(sender);
    }
    match &auth.tenant.default_sender {
        // A default number rented by the other mode's keys only: the operator's sender.
        Some(s) if owned(app, auth, s).await? => Ok(s.clone()),
        _ => Ok(app.config.default_sender.clone()),
    }
}

/// An alphanumeric sender, or a number the tenant rents in this key's mode.
async fn owned(app: &Core, auth: &AuthContext, sender: &Sender) -> Result<bool, ApiError> {
    if !sender.is_number() {
        return Ok(true);
    }
    Ok(app
        .store
        .owns_number(&auth.tenant.id, auth.mode, sender.as_str())
        .await?)
}

/// A queued message for this key's tenant and mode, priced (test keys cost nothing).
pub fn compose(
    app: &Core,
    auth: &AuthContext,
    to: &str,
    body: &SmsBody,
    from: &Sender,
    reference: Option<String>,
) -> NewMessage {
    let (price, cap) = match auth.mode {
        Mode::Test => (Pence(0), None),
        Mode::Live => (
            app.config.prices.sms_segment_pence.times(body.segments()),
            spend_cap(app, &auth.tenant),
        ),
    };
    NewMessage {
        id: MessageId::generate(),
        tenant_id: auth.tenant.id.clone(),
        mode: auth.mode,
        to: to.to_string(),
        from: from.as_str().to_string(),
        body_hmac: app.hash_key.body_hash(body.text()),
        body: body.text().to_string(),
        encoding: body.encoding(),
        segments: body.segments(),
        price,
        cap,
        reference,
        created_at: app.clock.now(),
        lease: None,
    }
}

/// New messages, committed in groups.
pub type MessageWriter = Batcher<PendingMessage, CreateOutcome, SharedError>;

/// Each message leased to this node's sender as it is inserted, if it has
/// room, and handed to it once committed.
pub fn message_writer(store: Arc<dyn Store>, handoff: Arc<Handoff>) -> MessageWriter {
    Batcher::start_each(
        store.group_limit(),
        move |mut batch: Vec<PendingMessage>| {
            let (store, handoff) = (store.clone(), handoff.clone());
            async move {
                let leased = handoff.lease_each(batch.iter_mut().map(|p| &mut p.message));
                // `create_messages` wants no two items with one (tenant, key).
                let keys = |p: &PendingMessage| {
                    let key = p.idem.as_ref().map(|i| i.key.clone());
                    key.map(|k| (p.message.tenant_id.clone(), k))
                        .into_iter()
                        .collect()
                };
                let store = &*store;
                let outcomes = in_rounds(batch, keys, |items| async move {
                    store.create_messages(&items).await.map_err(Arc::new)
                })
                .await;
                let inserted = outcomes
                    .iter()
                    .map(|o| matches!(o, Ok(CreateOutcome::Created)));
                handoff.hand_inserted(leased, inserted);
                outcomes
            }
        },
    )
}
