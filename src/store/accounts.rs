//! Dashboard accounts: users in a tenant's team, their sessions, invitations.
//! Tokens are stored as their SHA-256; passwords as argon2id PHC strings.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::rows::{TENANT_COLUMNS, tenant_from};
use super::sql::{Columns, Db, FromRow, sql};
use super::{AccountStore, NewApiKey, Result, SqlStore, StoreError, Tenant};
use crate::domain::account::Role;
use crate::domain::ids::{InviteId, TenantId, UserId};
use crate::domain::message::Timestamp;

/// A person in a tenant's team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// A user to insert, with their password's hash.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: User,
    pub password_hash: String,
}

/// A sign-up: a tenant, its owner and a first key, written together.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub tenant_name: String,
    pub owner: NewUser,
    pub key: NewApiKey,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: UserId,
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Who a dashboard request acts for: resolved from a session cookie.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub user: User,
    pub tenant: Tenant,
    /// Every state-changing form must carry it back.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// An invitation not yet accepted.
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: InviteId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewInvite {
    pub invite: Invite,
    pub token_hash: String,
    /// `None`: the operator's command line.
    pub invited_by: Option<UserId>,
}

const USER_COLUMNS: &str = "u.id, u.tenant_id, u.email, u.role, u.created_at";
const INVITE_COLUMNS: &str = "id, tenant_id, role, created_at, expires_at";

fn role<D: Db>(r: &Columns<D>, i: usize) -> Result<Role> {
    Role::parse(&r.get::<String>(i)?).ok_or_else(|| StoreError::Corrupt("role".into()))
}

fn user_from<D: Db>(r: &Columns<D>, at: usize) -> Result<User> {
    Ok(User {
        id: r.get(at)?,
        tenant_id: r.get(at + 1)?,
        email: r.get(at + 2)?,
        role: role(r, at + 3)?,
        created_at: Timestamp(r.get(at + 4)?),
    })
}

impl<D: Db> FromRow<D> for User {
    fn from_row(row: &D::Row) -> Result<Self> {
        user_from(&Columns::<D>(row), 0)
    }
}

/// `USER_COLUMNS`, then the password hash.
impl<D: Db> FromRow<D> for NewUser {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(NewUser {
            user: user_from(&r, 0)?,
            password_hash: r.get(5)?,
        })
    }
}

/// `USER_COLUMNS`, csrf token, expiry, then `TENANT_COLUMNS`.
impl<D: Db> FromRow<D> for SessionContext {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(SessionContext {
            user: user_from(&r, 0)?,
            csrf_token: r.get(5)?,
            expires_at: Timestamp(r.get(6)?),
            tenant: tenant_from(&r, 7)?,
        })
    }
}

impl<D: Db> FromRow<D> for Invite {
    fn from_row(row: &D::Row) -> Result<Self> {
        let r = Columns::<D>(row);
        Ok(Invite {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            role: role(&r, 2)?,
            created_at: Timestamp(r.get(3)?),
            expires_at: Timestamp(r.get(4)?),
        })
    }
}

async fn insert_user<D: Db>(conn: &mut D::Connection, u: &NewUser) -> Result<()> {
    sql::<D>(
        "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(u.user.id.as_str())
    .bind(u.user.tenant_id.as_str())
    .bind(&u.user.email)
    .bind(&u.password_hash)
    .bind(u.user.role.as_str())
    .bind(u.user.created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Db> AccountStore for SqlStore<D> {
    async fn sign_up(&self, s: &SignUp) -> Result<()> {
        let mut tx = self.begin().await?;
        let owner = &s.owner.user;
        sql::<D>("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(owner.tenant_id.as_str())
            .bind(&s.tenant_name)
            .bind(owner.created_at.millis())
            .execute(&mut tx)
            .await?;
        insert_user::<D>(&mut tx, &s.owner).await?;
        super::tenants::insert_api_key::<D>(&mut tx, &s.key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credentials(&self, email: &str) -> Result<Option<NewUser>> {
        let text = format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
             WHERE u.email = $1 AND u.removed_at IS NULL"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(email)
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn user_credentials(&self, tenant_id: &TenantId, id: &UserId) -> Result<Option<NewUser>> {
        let text = format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
             WHERE u.tenant_id = $1 AND u.id = $2 AND u.removed_at IS NULL"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn list_users(&self, tenant_id: &TenantId) -> Result<Vec<User>> {
        let text = format!(
            "SELECT {USER_COLUMNS} FROM users u \
             WHERE u.tenant_id = $1 AND u.removed_at IS NULL ORDER BY u.id"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn set_password(
        &self,
        tenant_id: &TenantId,
        id: &UserId,
        password_hash: &str,
        keep_session: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = sql::<D>(
            "UPDATE users SET password_hash = $3 \
             WHERE tenant_id = $1 AND id = $2 AND removed_at IS NULL",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(password_hash)
        .execute(&mut tx)
        .await?;
        if done != 1 {
            return Ok(false);
        }
        // A changed password signs out every other browser.
        sql::<D>("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(id.as_str())
            .bind(keep_session)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_user(&self, tenant_id: &TenantId, id: &UserId, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        // The address is freed (it may sign up or be invited again); the row
        // stays, as invitations it sent refer to it.
        let done = sql::<D>(
            "UPDATE users SET removed_at = $3, email = id \
             WHERE tenant_id = $1 AND id = $2 AND removed_at IS NULL",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .bind(now.millis())
        .execute(&mut tx)
        .await?;
        if done != 1 {
            // Not this tenant's member: nothing else is touched.
            return Ok(false);
        }
        sql::<D>("DELETE FROM sessions WHERE user_id = $1")
            .bind(id.as_str())
            .execute(&mut tx)
            .await?;
        // Links they made must not let them (or anyone) back in.
        sql::<D>("DELETE FROM invites WHERE invited_by = $1 AND accepted_by IS NULL")
            .bind(id.as_str())
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_invite(&self, tenant_id: &TenantId, id: &InviteId) -> Result<bool> {
        let done = sql::<D>(
            "DELETE FROM invites WHERE tenant_id = $1 AND id = $2 AND accepted_by IS NULL",
        )
        .bind(tenant_id.as_str())
        .bind(id.as_str())
        .written(self)
        .await?;
        Ok(done == 1)
    }

    async fn create_session(&self, s: &NewSession) -> Result<()> {
        sql::<D>(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_hash)
        .bind(s.user_id.as_str())
        .bind(&s.csrf_token)
        .bind(s.created_at.millis())
        .bind(s.expires_at.millis())
        .written(self)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionContext>> {
        let text = format!(
            "SELECT {USER_COLUMNS}, s.csrf_token, s.expires_at, {TENANT_COLUMNS} \
             FROM sessions s JOIN users u ON u.id = s.user_id JOIN tenants t ON t.id = u.tenant_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.removed_at IS NULL"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(token_hash)
            .bind(now.millis())
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn end_session(&self, token_hash: &str) -> Result<()> {
        sql::<D>("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .written(self)
            .await?;
        Ok(())
    }

    async fn create_invite(&self, i: &NewInvite) -> Result<()> {
        let v = &i.invite;
        sql::<D>(
            "INSERT INTO invites (id, tenant_id, token_hash, role, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(v.id.as_str())
        .bind(v.tenant_id.as_str())
        .bind(&i.token_hash)
        .bind(v.role.as_str())
        .bind(i.invited_by.as_ref().map(UserId::as_str))
        .bind(v.created_at.millis())
        .bind(v.expires_at.millis())
        .written(self)
        .await?;
        Ok(())
    }

    async fn list_invites(&self, tenant_id: &TenantId, now: Timestamp) -> Result<Vec<Invite>> {
        let text = format!(
            "SELECT {INVITE_COLUMNS} FROM invites \
             WHERE tenant_id = $1 AND accepted_by IS NULL AND expires_at > $2 ORDER BY id DESC"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(tenant_id.as_str())
            .bind(now.millis())
            .fetch_all(&mut *self.conn().await?)
            .await
    }

    async fn invite(&self, token_hash: &str, now: Timestamp) -> Result<Option<Invite>> {
        let text = format!(
            "SELECT {INVITE_COLUMNS} FROM invites \
             WHERE token_hash = $1 AND accepted_by IS NULL AND expires_at > $2"
        );
        sql::<D>(AssertSqlSafe(text))
            .bind(token_hash)
            .bind(now.millis())
            .fetch_optional(&mut *self.conn().await?)
            .await
    }

    async fn accept_invite(&self, token_hash: &str, user: &NewUser) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Inserted first: the invitation refers to the new user.
        insert_user::<D>(&mut tx, user).await?;
        let taken = sql::<D>(
            "UPDATE invites SET accepted_by = $2 WHERE token_hash = $1 AND tenant_id = $3 \
             AND role = $4 AND accepted_by IS NULL AND expires_at > $5",
        )
        .bind(token_hash)
        .bind(user.user.id.as_str())
        .bind(user.user.tenant_id.as_str())
        .bind(user.user.role.as_str())
        .bind(user.user.created_at.millis())
        .execute(&mut tx)
        .await?;
        if taken != 1 {
            // Someone used the link first (or it expired): nothing is written.
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}
