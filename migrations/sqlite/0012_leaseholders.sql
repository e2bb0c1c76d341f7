-- Who holds leases: every worker and webhook dispatcher writes its heartbeat
-- here. The claims of a holder that has gone quiet are freed by the others in
-- seconds, instead of waiting out their lease.
CREATE TABLE leaseholders (
    token TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
