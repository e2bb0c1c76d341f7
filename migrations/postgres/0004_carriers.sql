-- Each part a carrier accepted, under its normalised carrier id: receipts find
-- their message here in one index lookup. A message ends when all its parts have.
CREATE TABLE message_parts (
    carrier TEXT COLLATE "C" NOT NULL,
    carrier_message_id TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id),
    part BIGINT NOT NULL,
    status TEXT COLLATE "C", -- NULL until its final receipt
    error TEXT COLLATE "C",
    PRIMARY KEY (carrier, carrier_message_id)
);
CREATE INDEX message_parts_message ON message_parts (message_id, part);

-- Final receipts as they arrive, before they are matched to a part: a receipt
-- that overtakes the record of its submission waits here instead of being lost.
CREATE TABLE carrier_receipts (
    id BIGSERIAL PRIMARY KEY,
    carrier TEXT COLLATE "C" NOT NULL,
    carrier_message_id TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    error TEXT COLLATE "C",
    received_at BIGINT NOT NULL
);
CREATE INDEX carrier_receipts_part ON carrier_receipts (carrier, carrier_message_id);
CREATE INDEX carrier_receipts_received ON carrier_receipts (received_at);

-- Mobile-originated messages, kept for a later inbound feature.
CREATE TABLE inbound_messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    carrier TEXT COLLATE "C" NOT NULL,
    from_number TEXT COLLATE "C" NOT NULL,
    to_number TEXT COLLATE "C" NOT NULL,
    body TEXT,
    received_at BIGINT NOT NULL
);
