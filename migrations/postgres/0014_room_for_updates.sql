-- Room in each page for a row's next version. A message is updated three
-- times after its insert (claimed, sent, ended) and a webhook delivery twice
-- (claimed, finished). Pages filled to the brim by inserts leave no room, so
-- every update wrote the new version on another page and a new entry in each
-- of the table's indexes. With room, an update that changes no indexed column
-- (the claims' lease) is a heap-only tuple: one page written, no index entry.
-- Applies to pages written from now on.
ALTER TABLE messages SET (fillfactor = 60);
ALTER TABLE webhook_deliveries SET (fillfactor = 50);
