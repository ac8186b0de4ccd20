-- Consent changes not yet confirmed by every region holding the user's services (issue 12,
-- finding 4): see the SQLite schema_v6_consent_outbox.sql.
CREATE TABLE consent_outbox (
    user_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE FUNCTION consent_outbox_on_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND kind = 'account') THEN
        INSERT INTO consent_outbox (user_id, version)
        VALUES (NEW.user_id, (SELECT count(*) FROM consent_events WHERE user_id = NEW.user_id))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_outbox_on_event AFTER INSERT ON consent_events
FOR EACH ROW EXECUTE FUNCTION consent_outbox_on_event();
