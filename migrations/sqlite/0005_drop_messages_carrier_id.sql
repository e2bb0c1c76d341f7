-- Receipts are matched through message_parts now; this index only cost every
-- update of a message.
DROP INDEX messages_carrier_id;
