//! What pages read from a request: form fields and query parameters, the
//! client's address, and the same-origin check every POST passes.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use super::WebError;
use crate::domain::account::Token;
use crate::domain::api_key::constant_eq;
use crate::http::AppState;
use crate::usecase::{ApiError, ProblemCode};

/// Fields of a form or a query string, in order (a name may repeat, as
/// checkboxes do).
#[derive(Default)]
pub struct Fields(Vec<(String, String)>);

/// Names only: a form may hold a password, an e-mail address or a number.
impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Fields {
    pub fn parse(input: &[u8]) -> Fields {
        Fields(
            url::form_urlencoded::parse(input)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A field's value, trimmed; "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// A field's value, untrimmed (passwords).
    pub fn raw(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// A field that is absent or empty is `None`.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated field.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The query string's fields.
pub struct Query(pub Fields);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, WebError> {
        Ok(Query(Fields::parse(
            parts.uri.query().unwrap_or_default().as_bytes(),
        )))
    }
}

/// Refuses a state-changing request another site made the browser send: the
/// browser's `Sec-Fetch-Site`, else its `Origin`, must name this site (the
/// host a trusted proxy forwarded, behind one). Requests with neither still
/// need the form's token.
pub fn same_origin(headers: &HeaderMap, behind_proxy: bool) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            ProblemCode::CsrfRejected,
            "this form was sent from another site; reload the page and try again",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(refused()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let forwarded = behind_proxy
            .then(|| headers.get("x-forwarded-host"))
            .flatten();
        let host = forwarded
            .or(headers.get(header::HOST))
            .map(|h| h.as_bytes());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h.as_bytes());
        if host.is_none() || origin_host != host {
            return Err(refused());
        }
    }
    Ok(())
}

/// The value of the request's cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether this request reached us over HTTPS (as a trusted proxy says).
pub fn is_https(headers: &HeaderMap, state: &AppState) -> bool {
    state.config.dashboard.behind_proxy
        && headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The cookie behind the forms shown before anyone is signed in (sign-up,
/// login, invitation, demo): a double-submit token, so that even a browser
/// that sends neither `Origin` nor `Sec-Fetch-Site` cannot be made to post them.
const FORM_COOKIE: &str = "line_form";
/// Over HTTPS: no other host may set or shadow it.
const SECURE_FORM_COOKIE: &str = "__Host-line_form";

fn form_cookie(headers: &HeaderMap, state: &AppState) -> &'static str {
    if is_https(headers, state) {
        SECURE_FORM_COOKIE
    } else {
        FORM_COOKIE
    }
}

/// A public form's token: the browser's, or a new one the page's answer sets.
pub struct FormToken {
    pub value: String,
    set: Option<HeaderValue>,
}

impl FromRequestParts<AppState> for FormToken {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let name = form_cookie(&parts.headers, state);
        if let Some(t) = cookie(&parts.headers, name).and_then(Token::parse) {
            return Ok(FormToken {
                value: t.expose().to_string(),
                set: None,
            });
        }
        let t = Token::generate();
        let secure = if is_https(&parts.headers, state) {
            "; Secure"
        } else {
            ""
        };
        let set = format!(
            "{name}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            t.expose()
        );
        Ok(FormToken {
            value: t.expose().to_string(),
            set: Some(HeaderValue::from_str(&set).expect("a token is a valid header value")),
        })
    }
}

impl FormToken {
    /// Sets the cookie on `response` if the browser had none.
    pub fn apply(&self, mut response: Response) -> Response {
        if let Some(set) = &self.set {
            response
                .headers_mut()
                .append(header::SET_COOKIE, set.clone());
        }
        response
    }
}

/// A public form from a page of this site: same origin, and its `csrf` field
/// matching the browser's form cookie.
pub struct Form {
    pub fields: Fields,
    /// For the page shown again on a refusal.
    pub csrf: String,
}

impl FromRequest<AppState> for Form {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        same_origin(req.headers(), state.config.dashboard.behind_proxy)?;
        let name = form_cookie(req.headers(), state);
        let expected = cookie(req.headers(), name).unwrap_or_default().to_string();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::invalid("body", "the form could not be read"))?;
        let fields = Fields::parse(&bytes);
        if expected.is_empty() || !constant_eq(fields.get("csrf").as_bytes(), expected.as_bytes()) {
            return Err(ApiError::new(
                ProblemCode::CsrfRejected,
                "this form has expired or was not sent from this site; reload the page and try again",
            )
            .into());
        }
        Ok(Form {
            fields,
            csrf: expected,
        })
    }
}

/// The client's address, for throttles: the peer, or with `behind_proxy` the
/// last address of `X-Forwarded-For` (the one our proxy appended; earlier ones
/// are the client's to invent). IPv6 clients are counted by their /64, which
/// one subscriber holds whole.
pub struct ClientAddr(pub String);

/// An `X-Forwarded-For` entry: an address, maybe with a port (`a.b.c.d:p`, `[v6]:p`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
}

fn throttle_key(ip: IpAddr) -> String {
    // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        Ok(client_addr(parts, state.config.dashboard.behind_proxy))
    }
}

/// The client's address as throttles count it ([`ClientAddr`]).
pub fn client_addr(parts: &Parts, behind_proxy: bool) -> ClientAddr {
    if behind_proxy
        && let Some(last) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| parse_forwarded(a.trim()))
    {
        return ClientAddr(throttle_key(last));
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| throttle_key(c.0.ip()));
    ClientAddr(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_this_site_may_post() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), false).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")]), false).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")]), false).is_err());
        let ok = [
            ("host", "line.test:8080"),
            ("origin", "http://line.test:8080"),
        ];
        assert!(same_origin(&headers(&ok), false).is_ok());
        let foreign = [("host", "line.test:8080"), ("origin", "https://evil.test")];
        assert!(same_origin(&headers(&foreign), false).is_err());
        assert!(
            same_origin(
                &headers(&[("host", "line.test"), ("origin", "null")]),
                false
            )
            .is_err()
        );
        assert!(same_origin(&headers(&[("host", "line.test")]), false).is_ok());
        let proxied = [
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "line.example"),
            ("origin", "https://line.example"),
        ];
        assert!(same_origin(&headers(&proxied), true).is_ok());
        assert!(same_origin(&headers(&proxied), false).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            throttle_key("::ffff:203.0.113.9".parse().unwrap()),
            "203.0.113.9"
        );
        for entry in [
            "203.0.113.9",
            "203.0.113.9:4711",
            "[2001:db8::1]:443",
            "[2001:db8::1]",
        ] {
            assert!(parse_forwarded(entry).is_some(), "{entry}");
        }
        assert!(parse_forwarded("unknown").is_none());
        assert_eq!(throttle_key("203.0.113.9".parse().unwrap()), "203.0.113.9");
        assert_eq!(
            throttle_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            throttle_key("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_eq!(
            throttle_key("2001:db8:1:2::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; line_session=tok; b=2")]);
        assert_eq!(cookie(&h, "line_session"), Some("tok"));
        assert_eq!(cookie(&h, "__Host-line_session"), None);
    }

    #[test]
    fn fields_keep_repeats_and_trim() {
        let f = Fields::parse(b"a=+x+&e=1&e=2&p=+secret+");
        assert_eq!(f.get("a"), "x");
        assert_eq!(f.all("e"), ["1", "2"]);
        assert_eq!(f.raw("p"), " secret ");
        assert_eq!(f.opt("missing"), None);
    }
}
