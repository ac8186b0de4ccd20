-- Sovereign region store, schema version 8: TRUNCATE cannot empty the append-only
-- consent history. TRUNCATE skips row triggers, so the history's DELETE trigger of version 1
-- never sees it; a statement-level trigger refuses it (the access ledger has had one since
-- version 3).

CREATE FUNCTION consent_events_append_only_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent history is append-only';
END $$;
CREATE TRIGGER consent_events_append_only_truncate BEFORE TRUNCATE ON consent_events
FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only_truncate();
