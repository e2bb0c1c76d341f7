//! The tenant dashboard: every page is scoped by the session's tenant exactly
//! as an API key scopes the API (another tenant's object is a 404).

mod keys;
mod messages;
mod numbers;
mod settings;
pub mod start;
mod usage;
mod webhooks;

use axum::Router;

use super::session::Signed;
use crate::http::AppState;

/// What every dashboard page shows around its content.
pub struct Chrome {
    pub email: String,
    pub tenant: String,
    pub csrf: String,
    pub nav: &'static str,
    pub owner: bool,
    pub notice: Option<&'static str>,
}

impl Chrome {
    pub fn new(s: &Signed, nav: &'static str) -> Chrome {
        Chrome {
            email: s.session.user.email.clone(),
            tenant: s.session.tenant.name.clone(),
            csrf: s.csrf().to_string(),
            nav,
            owner: s.is_owner(),
            notice: None,
        }
    }

    /// With the notice a redirect's `?done=` names (from a fixed list, so a
    /// link cannot put words on our page).
    pub fn done(mut self, done: &str) -> Chrome {
        self.notice = match done {
            "revoked" => Some("The key is revoked. Requests with it fail within 10 seconds."),
            "released" => Some("The number is released. It is no longer charged."),
            "saved" => Some("Saved."),
            "deleted" => Some("The endpoint is deleted."),
            "replayed" => Some("The delivery is due again; the log shows the new attempt shortly."),
            "removed" => {
                Some("The member is removed and signed out; links they made no longer work.")
            }
            "withdrawn" => Some("The invitation is withdrawn: its link no longer works."),
            "password" => Some("Your password is changed; other browsers are signed out."),
            _ => None,
        };
        self
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(start::router())
        .merge(keys::router())
        .merge(numbers::router())
        .merge(messages::router())
        .merge(webhooks::router())
        .merge(usage::router())
        .merge(settings::router())
}
