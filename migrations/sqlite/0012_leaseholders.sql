-- Who holds leases: every worker and webhook dispatcher writes its heartbeat
-- here. The claims of a holder that has gone quiet are freed by the others in
-- seconds, instead of waiting out their lease.
CREATE TABLE leaseholders (
    token TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

-- Retention deletes a message only once nothing refers to it: the check
-- looks its verifications up here, not through the whole table.
CREATE INDEX verifications_message ON verifications (message_id);
