-- PostgreSQL leaves room in the pages of messages and webhook deliveries for
-- their updates (its 0014). SQLite has no fill factor. This file keeps the two
-- folders' numbers in step.
SELECT 1;
