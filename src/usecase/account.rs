//! A tenant's own settings: its name (the OTP brand), default sender, the
//! countries it may send to, and its monthly spend cap.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::Core;
use super::error::ApiError;
use super::limits::spend_cap;
use crate::domain::ids::TenantId;
use crate::domain::message::Pence;
use crate::domain::phone::parse_country;
use crate::domain::sender::Sender;
use crate::store::Tenant;

const MAX_NAME: usize = 100;

/// The account as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: TenantId,
    /// Shown in OTP texts unless a request names a `brand`.
    pub name: String,
    /// The `from` of messages that name none; `null`: the service's default.
    pub default_sender: Option<String>,
    /// ISO 3166-1 alpha-2 codes of the countries messages may go to.
    pub allowed_countries: Vec<String>,
    /// This account's monthly spend cap for live keys, in pence; `null`: none.
    pub spend_cap_pence: Option<i64>,
    /// Whether the cap is this account's own (else the service's default).
    pub spend_cap_is_default: bool,
    /// The highest cap this account may set.
    pub spend_cap_ceiling_pence: i64,
}

/// What `PATCH /v1/account` may change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// An alphanumeric sender ID or an E.164 number; `null` for the service's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^\s*(\+[0-9]{8,15}|[A-Za-z0-9 ]{1,11})\s*$")]
    pub default_sender: Option<Option<String>>,
    #[schema(min_items = 1)]
    pub allowed_countries: Option<Vec<String>>,
    /// 1 up to the ceiling; `null` for the service's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub spend_cap_pence: Option<Option<i64>>,
}

/// Present-but-null and absent differ: null resets to the default.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

pub fn view(app: &Core, t: &Tenant) -> Account {
    Account {
        id: t.id.clone(),
        name: t.name.clone(),
        default_sender: t.default_sender.as_ref().map(|s| s.as_str().to_string()),
        allowed_countries: t.allowed_regions.clone(),
        spend_cap_pence: spend_cap(app, t).map(|p| p.0),
        spend_cap_is_default: t.spend_cap.is_none(),
        spend_cap_ceiling_pence: app.config.limits.spend_cap_ceiling_pence.0,
    }
}

pub async fn get(app: &Core, tenant_id: &TenantId) -> Result<Account, ApiError> {
    let tenant = app
        .store
        .get_tenant(tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(view(app, &tenant))
}

/// Applies a change, all of it or (on the first bad field) none of it.
/// A tenant's name (its OTP brand): 1–100 characters, trimmed.
pub fn checked_name(name: &str) -> Result<String, ApiError> {
    // Counted as sent (the documented maxLength), then trimmed.
    let too_long = name.chars().count() > MAX_NAME;
    let name = name.trim();
    if name.is_empty() || too_long || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("`name` must be 1–{MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_string())
}

pub async fn update(
    app: &Core,
    tenant_id: &TenantId,
    change: AccountChange,
) -> Result<Account, ApiError> {
    let mut t = app
        .store
        .get_tenant(tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if let Some(name) = change.name {
        t.name = checked_name(&name)?;
    }
    if let Some(sender) = change.default_sender {
        t.default_sender = sender
            .map(|s| {
                Sender::parse(&s).map_err(|e| {
                    ApiError::invalid("default_sender", format!("`default_sender` {e}"))
                })
            })
            .transpose()?;
    }
    if let Some(countries) = change.allowed_countries {
        let mut codes = Vec::with_capacity(countries.len());
        for c in &countries {
            let code = parse_country(c).ok_or_else(|| {
                ApiError::invalid(
                    "allowed_countries",
                    format!("`allowed_countries`: {c:?} is not an ISO 3166-1 alpha-2 country code"),
                )
            })?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        if codes.is_empty() {
            return Err(ApiError::invalid(
                "allowed_countries",
                "`allowed_countries` must name at least one country",
            ));
        }
        t.allowed_regions = codes;
    }
    if let Some(cap) = change.spend_cap_pence {
        let ceiling = app.config.limits.spend_cap_ceiling_pence.0;
        t.spend_cap = match cap {
            None => None,
            Some(p) if (1..=ceiling).contains(&p) => Some(Pence(p)),
            Some(_) => {
                return Err(ApiError::invalid(
                    "spend_cap_pence",
                    format!("`spend_cap_pence` must be between 1 and {ceiling}, or null"),
                ));
            }
        };
    }
    if !app.store.update_tenant(&t).await? {
        return Err(ApiError::not_found("account"));
    }
    tracing::info!(tenant = %t.id, "account settings changed");
    Ok(view(app, &t))
}
