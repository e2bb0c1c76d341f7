-- Times are unix milliseconds (UTC) on both backends: one format, compared as integers.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    allowed_regions TEXT NOT NULL DEFAULT 'GB',
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    mode TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    mode TEXT NOT NULL,
    to_number TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT, -- erased once a carrier accepts the message (or it ends)
    body_hmac TEXT NOT NULL,
    encoding TEXT NOT NULL,
    segments BIGINT NOT NULL,
    price_pence BIGINT NOT NULL,
    reference TEXT,
    status TEXT NOT NULL,
    carrier TEXT,
    carrier_message_id TEXT,
    error_code TEXT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_token TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_tenant ON messages (tenant_id, id DESC);
CREATE INDEX messages_tenant_to ON messages (tenant_id, to_number, id DESC);
CREATE INDEX messages_tenant_status ON messages (tenant_id, status, id DESC);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_carrier_id ON messages (carrier, carrier_message_id) WHERE carrier_message_id IS NOT NULL;

CREATE TABLE message_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id),
    status TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, id);

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- What sandbox handsets received (test keys only; kept one hour by design).
CREATE TABLE sandbox_messages (
    message_id TEXT PRIMARY KEY REFERENCES messages (id),
    tenant_id TEXT NOT NULL,
    to_number TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT, -- kept for test keys only
    received_at BIGINT NOT NULL,
    receipt_status TEXT NOT NULL,
    receipt_due BIGINT NOT NULL,
    receipt_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sandbox_messages_due ON sandbox_messages (receipt_due) WHERE receipt_done = 0;
CREATE INDEX sandbox_messages_inbox ON sandbox_messages (tenant_id, to_number, received_at);
CREATE INDEX sandbox_messages_received ON sandbox_messages (received_at);
