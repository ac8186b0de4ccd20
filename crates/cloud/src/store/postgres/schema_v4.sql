-- Sovereign region store, schema version 4 (PostgreSQL): a user's services placed apart from
-- their account. The same columns, table and refusals as ../schema_v4.sql; the triggers are
-- named a0_ so that, as in SQLite (newest first), they fire before the older checks.

ALTER TABLE users ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'account'
    CHECK (kind IN ('account', 'service'));
ALTER TABLE users ADD COLUMN consent_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE service_fences (
    user_id TEXT COLLATE "C" NOT NULL,
    service TEXT COLLATE "C" NOT NULL CHECK (service IN ('messaging', 'backup')),
    state   TEXT COLLATE "C" NOT NULL CHECK (state IN ('moving', 'gone')),
    since   BIGINT NOT NULL,
    PRIMARY KEY (user_id, service)
);

-- TG_ARGV[0]: the owning column; TG_ARGV[1]: the service fenced, or '*' for any service that
-- is moving right now (consents).
CREATE FUNCTION refuse_service_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        owner := to_jsonb(OLD) ->> TG_ARGV[0];
    ELSE
        owner := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    IF TG_ARGV[1] = '*' THEN
        IF EXISTS (SELECT 1 FROM service_fences WHERE user_id = owner AND state = 'moving') THEN
            RAISE EXCEPTION 'user_migrating';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM service_fences WHERE user_id = owner AND service = TG_ARGV[1]) THEN
        RAISE EXCEPTION 'user_migrating';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER a0_messages_service_fenced_insert BEFORE INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('owner_id', 'messaging');
CREATE TRIGGER a0_messages_service_fenced_update BEFORE UPDATE ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('owner_id', 'messaging');
CREATE TRIGGER a0_backup_items_service_fenced_insert BEFORE INSERT ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('owner_id', 'backup');
CREATE TRIGGER a0_backup_items_service_fenced_update BEFORE UPDATE ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('owner_id', 'backup');
CREATE TRIGGER a0_consent_state_service_fenced_insert BEFORE INSERT ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('user_id', '*');
CREATE TRIGGER a0_consent_state_service_fenced_update BEFORE UPDATE ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('user_id', '*');
CREATE TRIGGER a0_consent_state_service_fenced_delete BEFORE DELETE ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('user_id', '*');
CREATE TRIGGER a0_consent_events_service_fenced_insert BEFORE INSERT ON consent_events
FOR EACH ROW EXECUTE FUNCTION refuse_service_fenced('user_id', '*');
