-- Times are unix milliseconds (UTC) on both backends: one format, compared as integers.
-- Text is compared bytewise (COLLATE "C"): ids sort as their bytes, and B-tree
-- comparisons skip the locale, whatever the database default is.

CREATE TABLE tenants (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    allowed_regions TEXT COLLATE "C" NOT NULL DEFAULT 'GB',
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    mode TEXT COLLATE "C" NOT NULL CHECK (mode IN ('test', 'live')),
    key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    hint TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    mode TEXT COLLATE "C" NOT NULL,
    to_number TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    body TEXT, -- erased once a carrier accepts the message (or it ends)
    body_hmac TEXT COLLATE "C" NOT NULL,
    encoding TEXT COLLATE "C" NOT NULL,
    segments BIGINT NOT NULL,
    price_pence BIGINT NOT NULL,
    reference TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL,
    carrier TEXT COLLATE "C",
    carrier_message_id TEXT COLLATE "C",
    error_code TEXT COLLATE "C",
    error_message TEXT COLLATE "C",
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_token TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_tenant ON messages (tenant_id, id DESC);
CREATE INDEX messages_tenant_to ON messages (tenant_id, to_number, id DESC);
CREATE INDEX messages_tenant_status ON messages (tenant_id, status, id DESC);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_carrier_id ON messages (carrier, carrier_message_id) WHERE carrier_message_id IS NOT NULL;

CREATE TABLE message_events (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id),
    status TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, id);

CREATE TABLE idempotency_keys (
    tenant_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    request_hash TEXT COLLATE "C" NOT NULL,
    status BIGINT NOT NULL,
    response TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- What sandbox handsets received (test keys only; kept one hour by design).
CREATE TABLE sandbox_messages (
    message_id TEXT COLLATE "C" PRIMARY KEY REFERENCES messages (id),
    tenant_id TEXT COLLATE "C" NOT NULL,
    to_number TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    body TEXT, -- kept for test keys only
    received_at BIGINT NOT NULL,
    receipt_status TEXT COLLATE "C" NOT NULL,
    receipt_due BIGINT NOT NULL,
    receipt_done BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sandbox_messages_due ON sandbox_messages (receipt_due) WHERE NOT receipt_done;
CREATE INDEX sandbox_messages_inbox ON sandbox_messages (tenant_id, to_number, received_at);
CREATE INDEX sandbox_messages_received ON sandbox_messages (received_at);
