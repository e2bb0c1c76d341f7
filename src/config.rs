//! Configuration: built-in defaults ← optional TOML file ← `LINE_…` environment.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
    pub worker: WorkerConfig,
    pub sandbox: SandboxConfig,
    pub webhooks: WebhooksConfig,
    pub carriers: Vec<CarrierConfig>,
    pub routing: Routing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub message_validity_seconds: u64,
    pub otp_sends_per_number: u32,
    pub otp_sends_per_number_window_seconds: u64,
    pub otp_starts_per_minute: u32,
    pub otp_resend_cooldown_seconds: u64,
    pub otp_max_sends: u32,
    pub monthly_spend_cap_pence: Pence,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub sms_segment_pence: Pence,
    pub number_monthly_pence: Pence,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub batch_size: u32,
    pub lease_seconds: u64,
    pub poll_interval_ms: u64,
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    Sandbox,
    Smpp,
    Http,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CarrierConfig {
    pub name: String,
    pub kind: CarrierKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    pub default: String,
}

fn sender<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Sender, D::Error> {
    let s = String::deserialize(d)?;
    Sender::parse(&s).map_err(serde::de::Error::custom)
}

/// One line naming the key that is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

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
        figment = figment.merge(Env::prefixed("LINE_").ignore(&["config"]).split("__"));
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
        if self.prices.sms_segment_pence.0 < 0 {
            return bad("prices.sms_segment_pence", "must not be negative");
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.carriers.iter().enumerate() {
            if !names.insert(c.name.as_str()) {
                return bad(&format!("carriers[{i}].name"), "is used twice");
            }
            if c.kind != CarrierKind::Sandbox {
                return bad(
                    &format!("carriers[{i}].kind"),
                    "only \"sandbox\" is available in this version",
                );
            }
        }
        if !names.contains(self.routing.default.as_str()) {
            return bad("routing.default", "names no carrier in [[carriers]]");
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
    fn secrets_do_not_debug_print() {
        let c = Config::from_toml("database_url = \"postgres://u:hunter2@h/db\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
