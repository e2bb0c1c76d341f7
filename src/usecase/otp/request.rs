//! What a verification request may ask, parsed into values that can only be valid.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ids::VerificationId;
use crate::domain::otp::{MAX_LENGTH, MIN_LENGTH, OtpText, TemplateError};
use crate::domain::phone::PhoneNumber;
use crate::domain::verification::VerificationStatus;
use crate::domain::{Hidden, MaskedInput};
use crate::store::AuthContext;
use crate::usecase::error::ApiError;
use crate::usecase::sms::destination;

const MAX_BRAND: usize = 30;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartVerification {
    /// E.164 or UK national format.
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub to: String,
    /// Digits in the code, 4–10 (default 6).
    #[schema(minimum = 4, maximum = 10)]
    pub length: Option<u32>,
    /// How long the code works, 60–3600 s (default 600).
    #[schema(minimum = 60, maximum = 3600)]
    pub ttl_seconds: Option<u32>,
    /// Wrong codes allowed before the verification locks, 1–10 (default 5).
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: Option<u32>,
    /// Shown in the text (default: the tenant's name); at most 30 characters.
    #[schema(min_length = 1, max_length = 30)]
    pub brand: Option<String>,
    /// Must contain `{code}`; may use `{brand}` and `{minutes}`; must fit one segment.
    #[schema(pattern = r"\{code\}")]
    pub template: Option<String>,
    /// Adds the WebOTP / Android autofill line `@{app_domain} #{code}`.
    #[schema(
        min_length = 3,
        max_length = 253,
        pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    )]
    pub app_domain: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCode {
    #[schema(pattern = "^[0-9]{4,10}$", example = "424242")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCodeFor {
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub to: String,
    #[schema(pattern = "^[0-9]{4,10}$", example = "424242")]
    pub code: String,
}

// The number masked, a code hidden: a request may be logged, a code never.
impl std::fmt::Debug for StartVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartVerification")
            .field("to", &MaskedInput(Some(&self.to)))
            .field("length", &self.length)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("max_attempts", &self.max_attempts)
            .field("brand", &self.brand)
            .field("template", &self.template)
            .field("app_domain", &self.app_domain)
            .finish()
    }
}

impl std::fmt::Debug for CheckCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckCode")
            .field("code", &Hidden(&self.code))
            .finish()
    }
}

impl std::fmt::Debug for CheckCodeFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckCodeFor")
            .field("to", &MaskedInput(Some(&self.to)))
            .field("code", &Hidden(&self.code))
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub id: VerificationId,
    pub status: VerificationStatus,
    pub valid: bool,
    pub attempts_remaining: u32,
}

fn within(
    value: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    param: &str,
) -> Result<u32, ApiError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            param,
            format!(
                "`{param}` must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

fn valid_domain(d: &str) -> bool {
    (3..=253).contains(&d.len())
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A start request, checked.
pub(super) struct Start {
    pub to: PhoneNumber,
    pub length: u32,
    pub ttl_seconds: u32,
    pub max_attempts: u32,
    pub brand: String,
    pub template: Option<String>,
    pub app_domain: Option<String>,
}

impl StartVerification {
    /// Checks every field, filling in the defaults (the brand is the tenant's name).
    pub(super) fn parse(self, auth: &AuthContext) -> Result<Start, ApiError> {
        let to = destination(auth, &self.to)?;
        let length = within(self.length, 6, MIN_LENGTH..=MAX_LENGTH, "length")?;
        let ttl_seconds = within(self.ttl_seconds, 600, 60..=3600, "ttl_seconds")?;
        let max_attempts = within(self.max_attempts, 5, 1..=10, "max_attempts")?;
        let brand = self
            .brand
            .as_deref()
            .unwrap_or(&auth.tenant.name)
            .trim()
            .to_string();
        // A brand sent is counted as sent (the documented maxLength).
        let sent_too_long = self
            .brand
            .as_deref()
            .is_some_and(|b| b.chars().count() > MAX_BRAND);
        if brand.is_empty() || sent_too_long || brand.chars().count() > MAX_BRAND {
            return Err(ApiError::invalid(
                "brand",
                format!("`brand` must be 1–{MAX_BRAND} characters"),
            ));
        }
        if self.app_domain.as_deref().is_some_and(|d| !valid_domain(d)) {
            return Err(ApiError::invalid(
                "app_domain",
                "`app_domain` must be a host name such as example.com",
            ));
        }
        let text = OtpText {
            template: self.template.as_deref(),
            brand: &brand,
            minutes: u64::from(ttl_seconds).div_ceil(60),
            app_domain: self.app_domain.as_deref(),
        };
        text.check().map_err(|e| {
            let param = match (&e, &self.template) {
                (TemplateError::TooLong(_), None) => "brand",
                _ => "template",
            };
            ApiError::invalid(param, format!("the text {e}"))
        })?;
        Ok(Start {
            to,
            length,
            ttl_seconds,
            max_attempts,
            brand,
            template: self.template,
            app_domain: self.app_domain,
        })
    }
}
