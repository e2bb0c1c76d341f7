//! Dashboard sessions: a random token in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure` and `__Host-` when served over HTTPS), its hash in our store; and
//! the per-session CSRF token every state-changing form carries back.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

use super::WebError;
use super::form::{Fields, cookie, is_https, same_origin};
use crate::domain::Mode;
use crate::domain::account::Role;
use crate::domain::account::Token;
use crate::domain::api_key::constant_eq;
use crate::http::AppState;
use crate::store::{AuthContext, SessionContext};
use crate::usecase::{ApiError, ProblemCode, accounts};

const COOKIE: &str = "line_session";
/// The prefix makes browsers refuse the cookie unless it is Secure, has no
/// Domain and has Path=/: no other host or path can set or shadow it.
const SECURE_COOKIE: &str = "__Host-line_session";

/// The session cookie that carries `token`.
pub fn session_cookie(headers: &HeaderMap, state: &AppState, token: &Token) -> HeaderValue {
    let max_age = state.config.dashboard.session_hours * 3600;
    let value = if is_https(headers, state) {
        format!(
            "{SECURE_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax; Secure",
            token.expose()
        )
    } else {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax",
            token.expose()
        )
    };
    HeaderValue::from_str(&value).expect("a token is a valid header value")
}

/// A cookie that clears the session cookie.
pub fn clear_cookie(headers: &HeaderMap, state: &AppState) -> HeaderValue {
    HeaderValue::from_static(if is_https(headers, state) {
        "__Host-line_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
    } else {
        "line_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    })
}

/// The session token the browser sent, if any: over HTTPS only the
/// `__Host-` cookie counts (a plain one could have been planted by another
/// host or a network attacker), over plain HTTP only the plain one.
pub fn token(headers: &HeaderMap, state: &AppState) -> Option<String> {
    let name = if is_https(headers, state) {
        SECURE_COOKIE
    } else {
        COOKIE
    };
    cookie(headers, name).map(str::to_string)
}

/// A signed-in request: the user, their tenant, and the session's token.
pub struct Signed {
    pub session: SessionContext,
    pub token: String,
}

impl Signed {
    /// What the use cases see: this tenant, acting in `mode`.
    pub fn auth(&self, mode: Mode) -> AuthContext {
        AuthContext {
            tenant: self.session.tenant.clone(),
            mode,
        }
    }

    pub fn is_owner(&self) -> bool {
        self.session.user.role == Role::Owner
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let token = token(&parts.headers, state).ok_or(WebError::LogIn)?;
        let session = accounts::session(state, &token)
            .await?
            .ok_or(WebError::LogIn)?;
        Ok(Signed { session, token })
    }
}

/// A state-changing form from a signed-in page: same origin, and carrying
/// this session's CSRF token in its `csrf` field.
pub struct SignedForm {
    pub signed: Signed,
    pub fields: Fields,
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        let (mut parts, body) = req.into_parts();
        same_origin(&parts.headers, state.config.dashboard.behind_proxy)?;
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| ApiError::invalid("body", "the form could not be read"))?;
        let fields = Fields::parse(&bytes);
        if !constant_eq(fields.get("csrf").as_bytes(), signed.csrf().as_bytes()) {
            return Err(ApiError::new(
                ProblemCode::CsrfRejected,
                "this form is out of date or was not sent from your session; reload the page and try again",
            )
            .into());
        }
        Ok(SignedForm { signed, fields })
    }
}
