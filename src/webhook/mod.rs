//! Webhooks: where they may go (an SSRF guard used when an endpoint is saved and
//! again before every delivery, since DNS can change) and the dispatcher.

mod dispatcher;

pub use dispatcher::{Dispatcher, signature};

use std::net::IpAddr;

use url::Url;

use crate::domain::webhook::is_internal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefusedUrl(pub String);

/// Parses a webhook URL and resolves its host; refuses anything but http(s),
/// URLs with credentials, and (unless `allow_private`) hosts that resolve to
/// loopback, private, link-local or other internal addresses.
pub async fn check_destination(input: &str, allow_private: bool) -> Result<Url, RefusedUrl> {
    let refuse = |why: &str| Err(RefusedUrl(why.to_string()));
    if input.len() > 2048 {
        return refuse("the URL is longer than 2048 characters");
    }
    let Ok(url) = Url::parse(input) else {
        return refuse("is not a valid URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return refuse("must be an http or https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not carry credentials; verify the signature instead");
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return refuse("must name a host");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => return refuse("its host does not resolve"),
        },
    };
    if addresses.is_empty() {
        return refuse("its host does not resolve");
    }
    if !allow_private && addresses.iter().any(|ip| is_internal(*ip)) {
        return refuse(
            "resolves to a loopback, private or link-local address (set webhooks.allow_private_addresses to allow it)",
        );
    }
    Ok(url)
}
