//! Dashboard accounts: sign-up (a tenant, its owner, a first test key), login,
//! sessions, password changes, and the team (invitations, roles, removal).
//! Passwords are hashed with argon2id on the blocking pool, never on the
//! async threads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use sha2::{Digest, Sha256};

use super::Core;
use super::account::checked_name;
use super::error::{ApiError, ProblemCode};
use super::keys::new_key;
use super::limits::admit;
use crate::config::SignUp as SignUpMode;
use crate::domain::Mode;
use crate::domain::account::{Email, Password, Role, Token};
use crate::domain::api_key::ApiKey;
use crate::domain::ids::{InviteId, TenantId, UserId};
use crate::store::{
    Invite, NewInvite, NewSession, NewUser, SessionContext, SignUp, StoreError, User,
};

/// The one answer to a failed login, whatever failed: no user enumeration.
const BAD_LOGIN: &str = "that e-mail address and password do not match an account";
/// A hash no password matches, checked when the address is unknown so that a
/// miss takes as long as a wrong password.
const NO_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
    J1xSYzvLDFJx8Rq5v3I1kJ3VY1Zc8yq4H6vP6Y3m2Hk";

/// What sign-up and invitation forms carry.
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// At most this many argon2 runs at once (each holds 19 MiB and a core for
/// ~20 ms); more wait their turn instead of exhausting memory.
/// The permit moves into the blocking job, so a client that hangs up cannot
/// free it while its hash still runs.
async fn hashing<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    static PERMITS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores * 2))
    });
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let out = job();
        drop(permit);
        out
    })
    .await
    .map_err(ApiError::internal)
}

async fn hash_password(p: Password) -> Result<(Password, String), ApiError> {
    hashing(move || {
        let h = p.hash();
        (p, h)
    })
    .await
}

async fn password_matches(p: Password, stored: String) -> Result<bool, ApiError> {
    hashing(move || p.matches(&stored)).await
}

/// Accounts are made at sign-up (`open`) or by invitation (`open`, `invite`);
/// with `closed` only operators make tenants.
fn accounts_allowed(app: &Core, by_invitation: bool) -> Result<(), ApiError> {
    match (app.config.dashboard.signup, by_invitation) {
        (SignUpMode::Open, _) | (SignUpMode::Invite, true) => Ok(()),
        (SignUpMode::Invite, false) => Err(ApiError::new(
            ProblemCode::SignUpClosed,
            "sign-up is by invitation only here: ask your team for an invitation link",
        )),
        (SignUpMode::Closed, _) => Err(ApiError::new(
            ProblemCode::SignUpClosed,
            "accounts are made by the operator here; ask them for one",
        )),
    }
}

/// Throttles account creation per client address and per e-mail address.
async fn admit_new_account(app: &Core, client: &str, email: &str) -> Result<(), ApiError> {
    let d = &app.config.dashboard;
    admit(
        app,
        &format!("signup-ip:{client}"),
        d.signups_per_ip_per_hour,
        Duration::from_secs(3600),
        "too many sign-ups from this address",
    )
    .await?;
    admit(
        app,
        &account_key("signup", email),
        d.logins_per_account_per_hour,
        Duration::from_secs(3600),
        "too many attempts for this e-mail address",
    )
    .await
}

fn parse(c: Credentials) -> Result<(Email, Password), ApiError> {
    let email = Email::parse(&c.email).ok_or_else(|| {
        ApiError::invalid("email", "enter an e-mail address such as ada@example.com")
    })?;
    let password = Password::parse(c.password).map_err(|e| ApiError::invalid("password", e))?;
    Ok((email, password))
}

fn hours(n: u64) -> i64 {
    i64::try_from(n.saturating_mul(3_600_000)).unwrap_or(i64::MAX / 2)
}

/// A limiter key for an e-mail address that never stores the address itself.
fn account_key(what: &str, email: &str) -> String {
    let email = email.trim().to_lowercase();
    format!(
        "{what}-account:{}",
        &hex::encode(Sha256::digest(email.as_bytes()))[..32]
    )
}

/// Opens a session for `user`: the token goes into the cookie, its hash into the store.
async fn open_session(app: &Core, user: &UserId) -> Result<Token, ApiError> {
    let token = Token::generate();
    let now = app.clock.now();
    app.store
        .create_session(&NewSession {
            token_hash: token.hash(),
            user_id: user.clone(),
            csrf_token: Token::generate().expose().to_string(),
            created_at: now,
            expires_at: now.plus_ms(hours(app.config.dashboard.session_hours)),
        })
        .await?;
    Ok(token)
}

/// A new tenant named `company`, its owner, and a first test key (shown once).
pub async fn sign_up(
    app: &Core,
    client: &str,
    company: &str,
    credentials: Credentials,
) -> Result<(Token, ApiKey), ApiError> {
    accounts_allowed(app, false)?;
    admit_new_account(app, client, &credentials.email).await?;
    let name = checked_name(company).map_err(|e| ApiError::invalid("company", e.detail))?;
    let (email, password) = parse(credentials)?;
    let (_, password_hash) = hash_password(password).await?;
    let now = app.clock.now();
    let tenant_id = TenantId::generate();
    let (key, test_key) = new_key(&tenant_id, Mode::Test, "first test key", now);
    let user = User {
        id: UserId::generate(),
        tenant_id,
        email: email.as_str().to_string(),
        role: Role::Owner,
        created_at: now,
    };
    let signup = SignUp {
        tenant_name: name,
        owner: NewUser {
            user: user.clone(),
            password_hash,
        },
        key,
    };
    match app.store.sign_up(&signup).await {
        Ok(()) => {}
        // Saying "taken" would confirm the address has an account, but a
        // sign-up cannot hide it either way; the per-address throttle bounds probing.
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::invalid(
                "email",
                "an account could not be created with that e-mail address; if you have one, log in",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %user.tenant_id, user = %user.id, "signed up");
    Ok((open_session(app, &user.id).await?, test_key))
}

/// Checks an e-mail address and password; throttled per client and per account.
pub async fn log_in(app: &Core, client: &str, credentials: Credentials) -> Result<Token, ApiError> {
    let d = &app.config.dashboard;
    admit(
        app,
        &format!("login-ip:{client}"),
        d.logins_per_ip_per_minute,
        Duration::from_secs(60),
        "too many login attempts from this address",
    )
    .await?;
    let email = credentials.email.trim().to_lowercase();
    admit(
        app,
        &account_key("login", &email),
        d.logins_per_account_per_hour,
        Duration::from_secs(3600),
        "too many login attempts for this account",
    )
    .await?;
    let password = Password::parse(credentials.password).ok();
    let found = app.store.credentials(&email).await?;
    let stored = found
        .as_ref()
        .map_or(NO_USER_HASH, |u| u.password_hash.as_str())
        .to_string();
    let matches = match password {
        Some(p) => password_matches(p, stored).await?,
        None => false,
    };
    match found {
        Some(u) if matches => {
            tracing::info!(tenant = %u.user.tenant_id, user = %u.user.id, "logged in");
            open_session(app, &u.user.id).await
        }
        _ => Err(ApiError::new(ProblemCode::Unauthorized, BAD_LOGIN)),
    }
}

/// The session a cookie's token opens, if it is live.
pub async fn session(app: &Core, token: &str) -> Result<Option<SessionContext>, ApiError> {
    let Some(token) = Token::parse(token) else {
        return Ok(None);
    };
    Ok(app.store.session(&token.hash(), app.clock.now()).await?)
}

pub async fn log_out(app: &Core, token: &str) -> Result<(), ApiError> {
    if let Some(token) = Token::parse(token) {
        app.store.end_session(&token.hash()).await?;
    }
    Ok(())
}

/// Changes the signed-in user's password; their other sessions end.
pub async fn change_password(
    app: &Core,
    s: &SessionContext,
    token: &str,
    current: String,
    new: String,
) -> Result<(), ApiError> {
    // A stolen session must not be a way to guess the password at leisure.
    admit(
        app,
        &format!("password-user:{}", s.user.id),
        app.config.dashboard.logins_per_account_per_hour,
        Duration::from_secs(3600),
        "too many password changes",
    )
    .await?;
    let user = app
        .store
        .user_credentials(&s.tenant.id, &s.user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let ok = match Password::parse(current) {
        Ok(p) => password_matches(p, user.password_hash).await?,
        Err(_) => false,
    };
    if !ok {
        return Err(ApiError::invalid(
            "current_password",
            "the current password is not right",
        ));
    }
    let new = Password::parse(new).map_err(|e| ApiError::invalid("new_password", e))?;
    let (_, hash) = hash_password(new).await?;
    let keep = Token::parse(token).map(|t| t.hash()).unwrap_or_default();
    app.store
        .set_password(&s.tenant.id, &s.user.id, &hash, &keep)
        .await?;
    tracing::info!(user = %s.user.id, "password changed");
    Ok(())
}

/// 403 unless the signed-in user is an owner.
pub fn require_owner(s: &SessionContext) -> Result<(), ApiError> {
    if s.user.role == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemCode::OwnerRequired,
            "only an owner of this account can do that",
        ))
    }
}

/// The team: its members, and invitations still open.
pub async fn team(app: &Core, s: &SessionContext) -> Result<(Vec<User>, Vec<Invite>), ApiError> {
    let users = app.store.list_users(&s.tenant.id).await?;
    let invites = app
        .store
        .list_invites(&s.tenant.id, app.clock.now())
        .await?;
    Ok((users, invites))
}

/// An invitation link's token (shown once to the inviter), for `role`.
pub async fn invite(app: &Core, s: &SessionContext, role: &str) -> Result<Token, ApiError> {
    require_owner(s)?;
    new_invite(app, &s.tenant.id, role, Some(&s.user.id)).await
}

/// The operator's invitation into a tenant (`line tenant invite`): how a
/// tenant made on the command line gets its first dashboard user.
pub async fn operator_invite(
    app: &Core,
    tenant_id: &TenantId,
    role: &str,
) -> Result<Token, ApiError> {
    if !app.store.tenant_exists(tenant_id).await? {
        return Err(ApiError::not_found("tenant"));
    }
    new_invite(app, tenant_id, role, None).await
}

async fn new_invite(
    app: &Core,
    tenant_id: &TenantId,
    role: &str,
    invited_by: Option<&UserId>,
) -> Result<Token, ApiError> {
    accounts_allowed(app, true)?;
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::invalid("role", "a role is owner or developer"))?;
    let now = app.clock.now();
    let token = Token::generate();
    let invite = Invite {
        id: InviteId::generate(),
        tenant_id: tenant_id.clone(),
        role,
        created_at: now,
        expires_at: now.plus_ms(hours(app.config.dashboard.invite_days.saturating_mul(24))),
    };
    app.store
        .create_invite(&NewInvite {
            token_hash: token.hash(),
            invited_by: invited_by.cloned(),
            invite: invite.clone(),
        })
        .await?;
    tracing::info!(tenant = %tenant_id, invite = %invite.id, role = role.as_str(), "invited");
    Ok(token)
}

/// The open invitation a link's token names.
pub async fn find_invite(app: &Core, token: &str) -> Result<Invite, ApiError> {
    let gone = || ApiError::not_found("invitation (it may have been used or have expired)");
    let token = Token::parse(token).ok_or_else(gone)?;
    app.store
        .invite(&token.hash(), app.clock.now())
        .await?
        .ok_or_else(gone)
}

/// Joins the inviting team as a new user, once per link; signs them in.
pub async fn accept_invite(
    app: &Core,
    client: &str,
    token: &str,
    credentials: Credentials,
) -> Result<Token, ApiError> {
    accounts_allowed(app, true)?;
    admit_new_account(app, client, &credentials.email).await?;
    let invite = find_invite(app, token).await?;
    let (email, password) = parse(credentials)?;
    let (_, password_hash) = hash_password(password).await?;
    let user = User {
        id: UserId::generate(),
        tenant_id: invite.tenant_id.clone(),
        email: email.as_str().to_string(),
        role: invite.role,
        created_at: app.clock.now(),
    };
    let hash = Token::parse(token).map(|t| t.hash()).unwrap_or_default();
    let new = NewUser {
        user: user.clone(),
        password_hash,
    };
    match app.store.accept_invite(&hash, &new).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::not_found(
                "invitation (it may have been used or have expired)",
            ));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::invalid(
                "email",
                "an account could not be created with that e-mail address; if you have one, log in",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %user.tenant_id, user = %user.id, "joined by invitation");
    open_session(app, &user.id).await
}

/// Withdraws an invitation not yet used.
pub async fn revoke_invite(app: &Core, s: &SessionContext, id: &InviteId) -> Result<(), ApiError> {
    require_owner(s)?;
    if !app.store.revoke_invite(&s.tenant.id, id).await? {
        return Err(ApiError::not_found("invitation"));
    }
    tracing::info!(tenant = %s.tenant.id, invite = %id, "invitation revoked");
    Ok(())
}

/// Removes a member (not oneself) from the team.
pub async fn remove_member(app: &Core, s: &SessionContext, id: &UserId) -> Result<(), ApiError> {
    require_owner(s)?;
    if *id == s.user.id {
        return Err(ApiError::invalid("user", "you cannot remove yourself"));
    }
    if !app
        .store
        .remove_user(&s.tenant.id, id, app.clock.now())
        .await?
    {
        return Err(ApiError::not_found("team member"));
    }
    tracing::info!(tenant = %s.tenant.id, user = %id, "member removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown address must cost a full argon2 check, as a known one does.
    #[test]
    fn the_stand_in_hash_is_a_real_argon2id_hash() {
        let p = Password::parse("any password at all".into()).unwrap();
        assert!(
            argon2::password_hash::phc::PasswordHash::new(NO_USER_HASH).is_ok(),
            "{NO_USER_HASH}"
        );
        assert!(!p.matches(NO_USER_HASH));
    }
}
