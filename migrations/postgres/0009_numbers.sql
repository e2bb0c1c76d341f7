-- Numbers: the operator's inventory (`line numbers import`) and tenants' rentals.
CREATE TABLE numbers (
    number TEXT COLLATE "C" PRIMARY KEY, -- E.164, a UK mobile
    monthly_price_pence BIGINT NOT NULL,
    rental_id TEXT COLLATE "C", -- the rental holding it, NULL while free
    available_from BIGINT NOT NULL DEFAULT 0, -- a released number rests until then
    created_at BIGINT NOT NULL
);

-- One rental of a number by a tenant. Sandbox rentals (mode test, the drama
-- range, free) are the tenant's own: they hold no inventory row.
CREATE TABLE rentals (
    id TEXT COLLATE "C" PRIMARY KEY, -- num_…
    tenant_id TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL CHECK (mode IN ('test', 'live')),
    number TEXT COLLATE "C" NOT NULL,
    monthly_price_pence BIGINT NOT NULL,
    status TEXT COLLATE "C" NOT NULL CHECK (status IN ('rented', 'released')),
    rented_at BIGINT NOT NULL,
    renews_at BIGINT,
    released_at BIGINT
);
CREATE INDEX rentals_tenant ON rentals (tenant_id, mode, id);
-- A number is rented by at most one tenant at a time (per mode: each tenant's
-- sandbox is its own).
CREATE UNIQUE INDEX rentals_live_number ON rentals (number) WHERE status = 'rented' AND mode = 'live';
CREATE UNIQUE INDEX rentals_test_number ON rentals (tenant_id, number) WHERE status = 'rented' AND mode = 'test';
CREATE INDEX rentals_due ON rentals (renews_at) WHERE status = 'rented';

-- A monthly fee is charged once per rental and renewal date, whatever nodes do.
CREATE UNIQUE INDEX ledger_fee_once ON ledger (number_id, at) WHERE kind = 'number_fee';
