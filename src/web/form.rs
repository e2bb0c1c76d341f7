//! What pages read from a request: form fields and query parameters, the
//! client's address, and the same-origin check every POST passes.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::WebError;
use crate::http::AppState;
use crate::usecase::{ApiError, ProblemCode};

/// Fields of a form or a query string, in order (a name may repeat, as
/// checkboxes do).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

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
/// browser's `Sec-Fetch-Site`, else its `Origin`, must name this site.
/// (Requests without either come from no browser, and carry no cookie of a
/// victim's.)
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
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
        let host = headers.get(header::HOST).map(|h| h.as_bytes());
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

/// A form from a page of this site (checked with `same_origin`).
pub struct Form(pub Fields);

impl FromRequest<AppState> for Form {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        same_origin(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::invalid("body", "the form could not be read"))?;
        Ok(Form(Fields::parse(&bytes)))
    }
}

/// The client's address, for throttles: the peer, or with `behind_proxy` the
/// first address of `X-Forwarded-For`.
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        if state.config.dashboard.behind_proxy
            && let Some(first) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
        {
            return Ok(ClientAddr(first.trim().to_string()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        Ok(ClientAddr(peer))
    }
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
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let ok = [
            ("host", "line.test:8080"),
            ("origin", "http://line.test:8080"),
        ];
        assert!(same_origin(&headers(&ok)).is_ok());
        let foreign = [("host", "line.test:8080"), ("origin", "https://evil.test")];
        assert!(same_origin(&headers(&foreign)).is_err());
        assert!(same_origin(&headers(&[("host", "line.test"), ("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[("host", "line.test")])).is_ok());
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
