//! Where webhooks may go: an SSRF guard used when an endpoint is saved and
//! again before every delivery (and by the dispatcher's DNS), since DNS can change.

use std::net::{IpAddr, SocketAddr};

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

/// The dispatcher's DNS: the addresses a connection may use are the ones this
/// resolves, and it drops internal ones (unless allowed), so a DNS answer that
/// changes between the check and the connection cannot turn a delivery inward.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if usable.is_empty() {
                return Err(format!(
                    "{} resolves to no address a webhook may reach",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        let localhost = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(localhost())
        .await;
        assert!(refused.is_err());
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(localhost())
        .await
        .unwrap();
        assert!(allowed.into_iter().any(|a| a.ip().is_loopback()));
    }
}
