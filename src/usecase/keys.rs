//! API keys: created (shown once), listed by their hint, revoked.

use super::Core;
use super::error::ApiError;
use crate::domain::Mode;
use crate::domain::api_key::ApiKey;
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::message::Timestamp;
use crate::store::{ApiKeyInfo, NewApiKey};

const MAX_NAME: usize = 60;

/// A fresh key and the record that stores its hash.
pub fn new_key(
    tenant_id: &TenantId,
    mode: Mode,
    name: &str,
    now: Timestamp,
) -> (NewApiKey, ApiKey) {
    let key = ApiKey::generate(mode);
    let record = NewApiKey {
        id: KeyId::generate(),
        tenant_id: tenant_id.clone(),
        mode,
        key_hash: key.hash(),
        hint: key.hint(),
        name: name.to_string(),
        created_at: now,
    };
    (record, key)
}

/// A key's name: at most 60 characters, trimmed.
pub fn key_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("a key's name is at most {MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_string())
}

/// Creates a key for a tenant; the key itself is shown once, only its hash is kept.
pub async fn create(
    app: &Core,
    tenant_id: &TenantId,
    mode: Mode,
    name: &str,
) -> Result<(KeyId, ApiKey), ApiError> {
    let name = key_name(name)?;
    if !app.store.tenant_exists(tenant_id).await? {
        return Err(ApiError::not_found("tenant"));
    }
    let (record, key) = new_key(tenant_id, mode, &name, app.clock.now());
    app.store.create_api_key(&record).await?;
    tracing::info!(tenant = %tenant_id, key_id = %record.id, mode = mode.as_str(), "api key created");
    Ok((record.id, key))
}

pub async fn list(app: &Core, tenant_id: &TenantId) -> Result<Vec<ApiKeyInfo>, ApiError> {
    Ok(app.store.list_api_keys(tenant_id).await?)
}

/// Revokes a tenant's key; another tenant's (or a revoked one) is a 404.
pub async fn revoke(app: &Core, tenant_id: &TenantId, id: &KeyId) -> Result<(), ApiError> {
    if app
        .store
        .revoke_api_key(Some(tenant_id), id, app.clock.now())
        .await?
    {
        tracing::info!(tenant = %tenant_id, key_id = %id, "api key revoked");
        Ok(())
    } else {
        Err(ApiError::not_found("API key"))
    }
}
