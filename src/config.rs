//! Configuration: built-in defaults ← optional TOML file ← `LINE_…` environment.
//! (One file over 400 lines: every key with its check and its one-line error, beside the others.)

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::domain::message::Pence;
use crate::domain::sender::Sender;

pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// A value that never shows in `Debug` or logs.
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

/// Which parts of the service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    pub fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: Secret,
    pub otp_secret: Secret,
    #[serde(deserialize_with = "sender")]
    pub default_sender: Sender,
    pub log_format: LogFormat,
    pub database_max_connections: u32,
    pub role: Role,
    pub limits: Limits,
    pub prices: Prices,
    pub numbers: NumbersConfig,
    pub dashboard: DashboardConfig,
    pub worker: WorkerConfig,
    pub sandbox: SandboxConfig,
    pub webhooks: WebhooksConfig,
    pub operator: OperatorConfig,
    pub carriers: Vec<CarrierConfig>,
    pub routing: Routing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub request_timeout_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    pub failed_auths_per_ip_per_minute: u32,
    pub message_validity_seconds: u64,
    pub otp_sends_per_number: u32,
    pub otp_sends_per_number_window_seconds: u64,
    pub otp_starts_per_minute: u32,
    pub otp_resend_cooldown_seconds: u64,
    pub otp_max_sends: u32,
    pub monthly_spend_cap_pence: Pence,
    pub spend_cap_ceiling_pence: Pence,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub sms_segment_pence: Pence,
    pub number_monthly_pence: Pence,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersConfig {
    pub quarantine_days: u32,
}

/// Who may create an account on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignUp {
    /// Anyone.
    Open,
    /// Only with an invitation link (a team's, or `line tenant invite`).
    Invite,
    /// No new accounts at all; existing users still log in.
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    pub signup: SignUp,
    pub session_hours: u64,
    pub invite_days: u64,
    /// Trust `X-Forwarded-For` / `X-Forwarded-Proto` from a proxy in front.
    pub behind_proxy: bool,
    pub signups_per_ip_per_hour: u32,
    pub logins_per_ip_per_minute: u32,
    pub logins_per_account_per_hour: u32,
    pub demo_previews_per_ip_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub batch_size: u32,
    pub lease_seconds: u64,
    pub poll_interval_ms: u64,
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
    pub heartbeat_ms: u64,
    pub presumed_dead_ms: u64,
    pub receipt_timeout_hours: u64,
    pub retention_days: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub receipt_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub allow_private_addresses: bool,
    pub retry_schedule_seconds: Vec<u64>,
    pub batch_size: u32,
    pub lease_seconds: u64,
    pub in_flight: u32,
    pub in_flight_per_endpoint: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Bearer token for `/metrics` and `/readyz`'s detail; empty: loopback clients only.
    pub token: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    Sandbox,
    Smpp,
    Http,
}

/// How a carrier writes its message ids, so that a receipt's id can be matched
/// to the id the carrier gave on submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdBase {
    /// Compared as text, ignoring case and leading zeros.
    #[default]
    Text,
    /// A hexadecimal number.
    Hex,
    /// A decimal number.
    Decimal,
}

/// One `[[carriers]]` entry. Which keys apply depends on `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    pub name: String,
    pub kind: CarrierKind,
    // smpp
    pub host: Option<String>,
    pub port: Option<u16>,
    pub system_id: Option<String>,
    #[serde(default)]
    pub password: Secret,
    #[serde(default)]
    pub system_type: String,
    /// Outstanding submit_sm at once.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Submissions (parts) per second, at most.
    #[serde(default = "default_max_per_second")]
    pub max_per_second: u32,
    #[serde(default = "default_enquire_link_seconds")]
    pub enquire_link_seconds: u64,
    #[serde(default = "default_response_timeout_seconds")]
    pub response_timeout_seconds: u64,
    /// Longest wait between two reconnection attempts.
    #[serde(default = "default_reconnect_max_seconds")]
    pub reconnect_max_seconds: u64,
    /// Id formats in submit_sm_resp and in receipts.
    #[serde(default)]
    pub submit_id_base: IdBase,
    #[serde(default)]
    pub receipt_id_base: IdBase,
    // http
    pub url: Option<String>,
    #[serde(default = "default_auth_header")]
    pub auth_header: String,
    #[serde(default)]
    pub auth_value: Secret,
    /// Shared secret for the HMAC-SHA256 signature of receipts posted to us.
    #[serde(default)]
    pub receipt_secret: Secret,
}

fn default_window() -> u32 {
    10
}
fn default_max_per_second() -> u32 {
    100
}
fn default_enquire_link_seconds() -> u64 {
    30
}
fn default_response_timeout_seconds() -> u64 {
    10
}
fn default_reconnect_max_seconds() -> u64 {
    60
}
fn default_auth_header() -> String {
    "Authorization".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    pub default: String,
    /// Used when `default` is down or throttling.
    pub fallback: Option<String>,
    /// Destination prefixes ("+447") and their carriers; the longest match wins.
    #[serde(default)]
    pub prefixes: std::collections::BTreeMap<String, RouteConfig>,
}

/// `"+447" = "primary"` or `"+447" = { carrier = "primary", fallback = "backup" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteConfig {
    Carrier(String),
    WithFallback {
        carrier: String,
        fallback: Option<String>,
    },
}

impl RouteConfig {
    pub fn carrier(&self) -> &str {
        match self {
            RouteConfig::Carrier(c) | RouteConfig::WithFallback { carrier: c, .. } => c,
        }
    }
    pub fn fallback(&self) -> Option<&str> {
        match self {
            RouteConfig::Carrier(_) => None,
            RouteConfig::WithFallback { fallback, .. } => fallback.as_deref(),
        }
    }
}

fn sender<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Sender, D::Error> {
    let s = String::deserialize(d)?;
    Sender::parse(&s).map_err(serde::de::Error::custom)
}

/// One line naming the key that is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

/// The top-level keys of [`Config`] (each a field or a section).
const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "otp_secret",
    "default_sender",
    "log_format",
    "database_max_connections",
    "role",
    "limits",
    "prices",
    "numbers",
    "dashboard",
    "worker",
    "sandbox",
    "webhooks",
    "operator",
    "carriers",
    "routing",
];

/// Whether `LINE_<key>` names configuration (`config` is the file's path).
fn ours(key: &str) -> bool {
    let top = key
        .split("__")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    top == "config" || KEYS.contains(&top.as_str())
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Other tools' LINE_* variables (LINE_TEST_DATABASE_URL, a benchmark's
        // LINE_BIN) are not ours: named, and left alone. A wrong key inside a
        // section still stops start-up.
        for (key, _) in std::env::vars() {
            if let Some(rest) = key.strip_prefix("LINE_")
                && !ours(rest)
            {
                eprintln!("line: ignoring {key}: not a configuration key");
            }
        }
        figment = figment.merge(
            Env::prefixed("LINE_")
                .ignore(&["config"])
                .filter(|k| ours(k.as_str()))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Defaults plus the given TOML text (no environment): for tests and tools.
    pub fn from_toml(extra: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(extra)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let what = e.kind.to_string();
            ConfigError(if key.is_empty() {
                what
            } else {
                format!("`{key}`: {what}")
            })
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return bad("database_url", "must start with sqlite: or postgres://");
        }
        let secret = self.otp_secret.expose();
        if !secret.is_empty() && secret.len() < 32 {
            return bad(
                "otp_secret",
                "must be at least 32 characters (or empty to generate one)",
            );
        }
        if self.database_max_connections == 0 {
            return bad("database_max_connections", "must be at least 1");
        }
        if self.worker.batch_size == 0 {
            return bad("worker.batch_size", "must be at least 1");
        }
        if self.worker.lease_seconds < 5 {
            return bad("worker.lease_seconds", "must be at least 5");
        }
        let token = self.operator.token.expose();
        if !token.is_empty() && token.len() < 16 {
            return bad(
                "operator.token",
                "must be at least 16 characters (or empty)",
            );
        }
        if self.limits.request_timeout_seconds == 0 {
            return bad("limits.request_timeout_seconds", "must be at least 1");
        }
        if self.limits.shutdown_timeout_seconds < self.limits.request_timeout_seconds {
            return bad(
                "limits.shutdown_timeout_seconds",
                "must be at least limits.request_timeout_seconds",
            );
        }
        if self.worker.heartbeat_ms < 100 {
            return bad("worker.heartbeat_ms", "must be at least 100");
        }
        if self.worker.presumed_dead_ms < 2 * self.worker.heartbeat_ms
            || self.worker.presumed_dead_ms >= self.worker.lease_seconds * 1000
        {
            return bad(
                "worker.presumed_dead_ms",
                "must be at least twice worker.heartbeat_ms and less than worker.lease_seconds",
            );
        }
        if self.worker.receipt_timeout_hours == 0 {
            return bad("worker.receipt_timeout_hours", "must be at least 1");
        }
        if self.worker.retention_days == 0 {
            return bad("worker.retention_days", "must be at least 1");
        }
        // The timeout counts from acceptance: a message may wait in the queue
        // up to its validity before it is sent, and then wait for its receipt.
        if self.worker.receipt_timeout_hours * 3600 < self.limits.message_validity_seconds + 3600 {
            return bad(
                "worker.receipt_timeout_hours",
                "must be at least an hour longer than limits.message_validity_seconds",
            );
        }
        // A message still waiting for its receipt is never aged out.
        if self.worker.receipt_timeout_hours >= self.worker.retention_days * 24 {
            return bad(
                "worker.receipt_timeout_hours",
                "must be shorter than worker.retention_days",
            );
        }
        for (key, value) in [
            (
                "limits.otp_sends_per_number",
                self.limits.otp_sends_per_number,
            ),
            (
                "limits.otp_starts_per_minute",
                self.limits.otp_starts_per_minute,
            ),
            ("limits.otp_max_sends", self.limits.otp_max_sends),
            (
                "limits.failed_auths_per_ip_per_minute",
                self.limits.failed_auths_per_ip_per_minute,
            ),
            ("webhooks.in_flight", self.webhooks.in_flight),
            (
                "webhooks.in_flight_per_endpoint",
                self.webhooks.in_flight_per_endpoint,
            ),
            (
                "dashboard.signups_per_ip_per_hour",
                self.dashboard.signups_per_ip_per_hour,
            ),
            (
                "dashboard.logins_per_ip_per_minute",
                self.dashboard.logins_per_ip_per_minute,
            ),
            (
                "dashboard.logins_per_account_per_hour",
                self.dashboard.logins_per_account_per_hour,
            ),
            (
                "dashboard.demo_previews_per_ip_per_minute",
                self.dashboard.demo_previews_per_ip_per_minute,
            ),
            (
                "dashboard.session_hours",
                self.dashboard.session_hours as u32,
            ),
            ("dashboard.invite_days", self.dashboard.invite_days as u32),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.limits.otp_sends_per_number_window_seconds == 0 {
            return bad(
                "limits.otp_sends_per_number_window_seconds",
                "must be at least 1",
            );
        }
        if self.webhooks.retry_schedule_seconds.is_empty() {
            return bad(
                "webhooks.retry_schedule_seconds",
                "must list at least one attempt",
            );
        }
        if self.webhooks.batch_size == 0 {
            return bad("webhooks.batch_size", "must be at least 1");
        }
        if self.webhooks.lease_seconds < 20 {
            return bad(
                "webhooks.lease_seconds",
                "must be at least 20 (a delivery may take 15 s)",
            );
        }
        if self.limits.monthly_spend_cap_pence.0 < 0 {
            return bad(
                "limits.monthly_spend_cap_pence",
                "must not be negative (0 = unlimited)",
            );
        }
        if self.limits.spend_cap_ceiling_pence.0 < 1 {
            return bad("limits.spend_cap_ceiling_pence", "must be at least 1");
        }
        if self.prices.number_monthly_pence.0 < 0 {
            return bad("prices.number_monthly_pence", "must not be negative");
        }
        if self.prices.sms_segment_pence.0 < 0 {
            return bad("prices.sms_segment_pence", "must not be negative");
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.carriers.iter().enumerate() {
            if !names.insert(c.name.as_str()) {
                return bad(&format!("carriers[{i}].name"), "is used twice");
            }
            let key = |field: &str| format!("carriers[{i}].{field}");
            if c.name == "sandbox" && c.kind != CarrierKind::Sandbox {
                return bad(&key("name"), "\"sandbox\" is the built-in sandbox's name");
            }
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad(&key("name"), "letters, digits, - and _ only");
            }
            match c.kind {
                CarrierKind::Sandbox => {}
                CarrierKind::Smpp => {
                    if c.host.as_deref().is_none_or(str::is_empty) {
                        return bad(&key("host"), "an smpp carrier needs a host");
                    }
                    if c.port.is_none() {
                        return bad(&key("port"), "an smpp carrier needs a port");
                    }
                    match c.system_id.as_deref() {
                        Some(id) if !id.is_empty() && id.len() <= 15 => {}
                        _ => return bad(&key("system_id"), "must be 1–15 characters"),
                    }
                    if c.password.expose().len() > 8 {
                        return bad(&key("password"), "SMPP passwords are at most 8 characters");
                    }
                    if c.system_type.len() > 12 {
                        return bad(&key("system_type"), "must be at most 12 characters");
                    }
                    if c.window == 0 {
                        return bad(&key("window"), "must be at least 1");
                    }
                    if c.max_per_second == 0 {
                        return bad(&key("max_per_second"), "must be at least 1");
                    }
                    if c.response_timeout_seconds == 0 {
                        return bad(&key("response_timeout_seconds"), "must be at least 1");
                    }
                    if c.reconnect_max_seconds == 0 {
                        return bad(&key("reconnect_max_seconds"), "must be at least 1");
                    }
                }
                CarrierKind::Http => {
                    match c.url.as_deref().map(url::Url::parse) {
                        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {}
                        _ => return bad(&key("url"), "an http carrier needs an http(s) URL"),
                    }
                    if c.receipt_secret.expose().len() < 16 {
                        return bad(
                            &key("receipt_secret"),
                            "an http carrier needs a receipt secret of at least 16 characters",
                        );
                    }
                    if axum::http::HeaderName::try_from(c.auth_header.as_str()).is_err() {
                        return bad(&key("auth_header"), "is not a valid header name");
                    }
                }
            }
        }
        let known = |key: &str, name: &str| {
            if names.contains(name) {
                Ok(())
            } else {
                bad(key, "names no carrier in [[carriers]]")
            }
        };
        known("routing.default", &self.routing.default)?;
        if let Some(f) = &self.routing.fallback {
            known("routing.fallback", f)?;
        }
        for (prefix, route) in &self.routing.prefixes {
            let key = format!("routing.prefixes.\"{prefix}\"");
            if !(prefix.len() >= 2
                && prefix.starts_with('+')
                && prefix[1..].bytes().all(|b| b.is_ascii_digit()))
            {
                return bad(&key, "a prefix is + and digits, like \"+447\"");
            }
            known(&key, route.carrier())?;
            if let Some(f) = route.fallback() {
                known(&key, f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.prices.sms_segment_pence, Pence(1));
        assert_eq!(c.routing.default, "sandbox");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::from_toml("listen = \"nowhere\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = Config::from_toml("[worker]\nbatch_size = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.batch_size"), "{e}");
        let e = Config::from_toml("[routing]\ndefault = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.default"), "{e}");
        let e = Config::from_toml("bogus = 1").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::from_toml("otp_secret = \"short\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("otp_secret") && !e.contains("short\""), "{e}");
    }

    #[test]
    fn only_our_keys_are_read_from_the_environment() {
        // Top-level keys come before the first section; then section names.
        let mut in_section = false;
        for line in DEFAULTS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            in_section |= line.starts_with('[');
            if in_section && !line.starts_with('[') {
                continue;
            }
            let key = line
                .trim_start_matches('[')
                .split([' ', '=', ']'])
                .next()
                .unwrap();
            assert!(ours(key), "{key} from the defaults");
        }
        assert!(ours("DATABASE_URL") && ours("WEBHOOKS__BATCH_SIZE") && ours("CONFIG"));
        assert!(!ours("TEST_DATABASE_URL") && !ours("REPO") && !ours("BIN"));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let c = Config::from_toml("database_url = \"postgres://u:hunter2@h/db\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
