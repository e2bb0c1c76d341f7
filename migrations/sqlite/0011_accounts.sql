-- Dashboard accounts: people (users) in a tenant's team, their sessions, and
-- invitations. Passwords are argon2id PHC strings; session and invite tokens
-- are random and only their SHA-256 is kept.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE users (
    id TEXT PRIMARY KEY, -- usr_…
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL UNIQUE, -- lower-cased
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'developer')),
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX users_tenant ON users (tenant_id, id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE invites (
    id TEXT PRIMARY KEY, -- inv_…
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'developer')),
    invited_by TEXT REFERENCES users (id), -- NULL: the operator (`line tenant invite`)
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_by TEXT REFERENCES users (id)
);
CREATE INDEX invites_tenant ON invites (tenant_id, id);

-- The dashboard lists a tenant's verifications newest first.
CREATE INDEX verifications_tenant ON verifications (tenant_id, id);
