//! Dashboard sessions: a random token in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure` and `__Host-` when served over HTTPS), its hash in our store; and
//! the per-session CSRF token every state-changing form carries back.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use subtle_eq::eq;

use super::WebError;
use super::form::{Fields, same_origin};
use crate::domain::Mode;
use crate::domain::account::Role;
use crate::domain::account::Token;
use crate::http::AppState;
use crate::store::{AuthContext, SessionContext};
use crate::usecase::{ApiError, ProblemCode, accounts};

const COOKIE: &str = "line_session";
/// The prefix makes browsers refuse the cookie unless it is Secure, has no
/// Domain and has Path=/: no other host or path can set or shadow it.
const SECURE_COOKIE: &str = "__Host-line_session";

/// Whether this request reached us over HTTPS (as a trusted proxy says).
fn is_https(headers: &HeaderMap, state: &AppState) -> bool {
    state.config.dashboard.behind_proxy
        && headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The session cookie that carries `token`.
pub fn cookie(headers: &HeaderMap, state: &AppState, token: &Token) -> HeaderValue {
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

/// The session token the browser sent, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SECURE_COOKIE || *name == COOKIE)
        .map(|(_, v)| v.to_string())
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
        let token = token(&parts.headers).ok_or(WebError::LogIn)?;
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
        same_origin(&parts.headers)?;
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| ApiError::invalid("body", "the form could not be read"))?;
        let fields = Fields::parse(&bytes);
        if !eq(fields.get("csrf").as_bytes(), signed.csrf().as_bytes()) {
            return Err(ApiError::new(
                ProblemCode::CsrfRejected,
                "this form is out of date or was not sent from your session; reload the page and try again",
            )
            .into());
        }
        Ok(SignedForm { signed, fields })
    }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; line_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(token(&h).as_deref(), Some("tok"));
        h.insert(header::COOKIE, "__Host-line_session=sec".parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("sec"));
        h.insert(header::COOKIE, "other=1".parse().unwrap());
        assert_eq!(token(&h), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(subtle_eq::eq(b"abc", b"abc"));
        assert!(!subtle_eq::eq(b"abc", b"abd"));
        assert!(!subtle_eq::eq(b"abc", b"ab"));
        assert!(!subtle_eq::eq(b"", b"a"));
    }
}
