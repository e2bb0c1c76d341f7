//! Messages (newest first, filtered by status, number and date, each with its
//! status history) and verifications with their status. Bodies are erased
//! once a carrier takes a message, by design: pages say so.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;

use super::Chrome;
use crate::domain::Mode;
use crate::domain::ids::MessageId;
use crate::domain::message::{Message, MessageStatus, Timestamp};
use crate::domain::verification::StoredVerification;
use crate::http::AppState;
use crate::store::{MessageFilter, Page};
use crate::usecase::ApiError;
use crate::usecase::sms::destination;
use crate::web::form::{Fields, Query};
use crate::web::session::Signed;
use crate::web::{PageResult, render};

const PAGE: u32 = 50;

#[derive(Template)]
#[template(path = "dashboard/messages.html")]
struct MessagesPage {
    c: Chrome,
    status: String,
    to: String,
    from: String,
    until: String,
    messages: Vec<Message>,
    /// The query for the next (older) page, if there is one.
    older: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessagePage {
    c: Chrome,
    m: Message,
}

#[derive(Template)]
#[template(path = "dashboard/verifications.html")]
struct VerificationsPage {
    c: Chrome,
    verifications: Vec<StoredVerification>,
    older: Option<String>,
}

/// `YYYY-MM-DD` as the start of that day (UTC).
fn day(s: &str, param: &str) -> Result<Option<Timestamp>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(Timestamp(t.and_utc().timestamp_millis())))
        .ok_or_else(|| ApiError::invalid(param, format!("`{param}` must be a date as YYYY-MM-DD")))
}

fn filter(s: &Signed, q: &Fields) -> Result<MessageFilter, ApiError> {
    let status = q
        .opt("status")
        .map(|v| {
            MessageStatus::parse(v)
                .ok_or_else(|| ApiError::invalid("status", "choose a status from the list"))
        })
        .transpose()?;
    // Any mode's numbers may be searched: the test rules accept every valid UK mobile.
    let to = q
        .opt("to")
        .map(|t| destination(&s.auth(Mode::Test), t).map(|n| n.e164().to_string()))
        .transpose()?;
    Ok(MessageFilter {
        status,
        to,
        since: day(q.get("from"), "from")?,
        until: day(q.get("until"), "until")?.map(|t| t.plus_ms(86_400_000)),
        starting_after: q.opt("after").map(str::to_string),
        limit: PAGE + 1,
    })
}

async fn list(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let mut page = MessagesPage {
        c: Chrome::new(&s, "messages"),
        status: q.get("status").to_string(),
        to: q.get("to").to_string(),
        from: q.get("from").to_string(),
        until: q.get("until").to_string(),
        messages: Vec::new(),
        older: None,
        error: None,
    };
    let f = match filter(&s, &q) {
        Ok(f) => f,
        Err(e) => {
            let status = e.code.status();
            page.error = Some(e.detail);
            return Ok(render(status, &page));
        }
    };
    let mut messages = app.store.list_messages(&s.session.tenant.id, &f).await?;
    if messages.len() > PAGE as usize {
        messages.truncate(PAGE as usize);
        page.older = messages.last().map(|m| {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("status", &page.status),
                ("to", &page.to),
                ("from", &page.from),
                ("until", &page.until),
            ] {
                if !v.is_empty() {
                    next.append_pair(k, v);
                }
            }
            next.append_pair("after", m.id.as_str());
            next.finish()
        });
    }
    page.messages = messages;
    Ok(render(StatusCode::OK, &page))
}

async fn one(State(app): State<AppState>, s: Signed, Path(id): Path<MessageId>) -> PageResult {
    let m = app
        .store
        .get_message(&s.session.tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(render(
        StatusCode::OK,
        &MessagePage {
            c: Chrome::new(&s, "messages"),
            m,
        },
    ))
}

async fn verifications(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let page = Page {
        starting_after: q.opt("after").map(str::to_string),
        limit: PAGE + 1,
    };
    let mut verifications = app
        .store
        .list_verifications(&s.session.tenant.id, &page)
        .await?;
    let older = (verifications.len() > PAGE as usize).then(|| {
        verifications.truncate(PAGE as usize);
        verifications
            .last()
            .map(|v| format!("after={}", v.id))
            .unwrap_or_default()
    });
    Ok(render(
        StatusCode::OK,
        &VerificationsPage {
            c: Chrome::new(&s, "verifications"),
            verifications,
            older,
        },
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/messages", get(list))
        .route("/dashboard/messages/{id}", get(one))
        .route("/dashboard/verifications", get(verifications))
}
