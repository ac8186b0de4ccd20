-- Sovereign region store, schema version 8: nothing to change in SQLite.
--
-- SQLite has no TRUNCATE: `DELETE FROM consent_events` without a WHERE clause still runs the
-- row triggers of version 1 (SQLite skips its truncate optimisation on a table with triggers),
-- so the append-only consent history already refuses it. PostgreSQL's TRUNCATE skips row
-- triggers; its version 5 adds a statement-level one.
SELECT 1;
