-- Each part a carrier accepted, under its normalised carrier id: receipts find
-- their message here in one index lookup. A message ends when all its parts have.
CREATE TABLE message_parts (
    carrier TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages (id),
    part BIGINT NOT NULL,
    status TEXT, -- NULL until its final receipt
    error TEXT,
    PRIMARY KEY (carrier, carrier_message_id)
);
CREATE INDEX message_parts_message ON message_parts (message_id, part);

-- Final receipts as they arrive, before they are matched to a part: a receipt
-- that overtakes the record of its submission waits here instead of being lost.
CREATE TABLE carrier_receipts (
    id INTEGER PRIMARY KEY,
    carrier TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX carrier_receipts_part ON carrier_receipts (carrier, carrier_message_id);
CREATE INDEX carrier_receipts_received ON carrier_receipts (received_at);

-- Mobile-originated messages, kept for a later inbound feature.
CREATE TABLE inbound_messages (
    id TEXT PRIMARY KEY,
    carrier TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    body TEXT,
    received_at BIGINT NOT NULL
);
