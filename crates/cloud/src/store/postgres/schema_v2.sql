-- Sovereign region store, schema version 2 (PostgreSQL): online migration between regions.
-- The same tables and refusals as ../schema_v2.sql. SQLite fires the newest trigger first, so
-- there the "not active" and "fenced" checks run before version 1's consent checks; the names
-- here (a1_, a2_) keep that order, since PostgreSQL fires a table's triggers in name order.

CREATE TABLE migration_fences (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    role    TEXT COLLATE "C" NOT NULL CHECK (role IN ('source', 'target')),
    since   BIGINT NOT NULL
);

-- Users who moved away, and the digests of their tokens, so that a client still calling this
-- region is sent to the new one instead of being told its token is unknown.
CREATE TABLE moved_users (
    user_id  TEXT COLLATE "C" PRIMARY KEY,
    region   TEXT COLLATE "C" NOT NULL,
    moved_at BIGINT NOT NULL
);

CREATE TABLE moved_tokens (
    token_digest BYTEA PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- A user fenced as a move's source: every write to their rows is refused. The owning column
-- is `owner_id` or `user_id` depending on the table (TG_ARGV[0]).
CREATE FUNCTION refuse_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        owner := to_jsonb(OLD) ->> TG_ARGV[0];
    ELSE
        owner := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    IF EXISTS (SELECT 1 FROM migration_fences WHERE user_id = owner AND role = 'source') THEN
        RAISE EXCEPTION 'user_migrating';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER a2_messages_fenced_insert BEFORE INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');
CREATE TRIGGER a2_messages_fenced_update BEFORE UPDATE ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');
CREATE TRIGGER a2_messages_fenced_delete BEFORE DELETE ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');

CREATE TRIGGER a2_backup_items_fenced_insert BEFORE INSERT ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');
CREATE TRIGGER a2_backup_items_fenced_update BEFORE UPDATE ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');
CREATE TRIGGER a2_backup_items_fenced_delete BEFORE DELETE ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('owner_id');

CREATE TRIGGER a2_consent_state_fenced_insert BEFORE INSERT ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');
CREATE TRIGGER a2_consent_state_fenced_update BEFORE UPDATE ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');
CREATE TRIGGER a2_consent_state_fenced_delete BEFORE DELETE ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');

CREATE TRIGGER a2_consent_events_fenced_insert BEFORE INSERT ON consent_events
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');

CREATE TRIGGER a2_sessions_fenced_insert BEFORE INSERT ON sessions
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');
CREATE TRIGGER a2_sessions_fenced_update BEFORE UPDATE ON sessions
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');
CREATE TRIGGER a2_sessions_fenced_delete BEFORE DELETE ON sessions
FOR EACH ROW EXECUTE FUNCTION refuse_fenced('user_id');

-- Nothing is written for a user who is not active here: once a move (or a deletion) has
-- destroyed the user's key, a request that was already on its way cannot add rows that the
-- purge would then silently take with it.
CREATE FUNCTION refuse_inactive_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users
                   WHERE id = to_jsonb(NEW) ->> TG_ARGV[0] AND state = 'active') THEN
        RAISE EXCEPTION 'user_migrating';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER a1_messages_owner_active BEFORE INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION refuse_inactive_owner('owner_id');
CREATE TRIGGER a1_backup_items_owner_active_insert BEFORE INSERT ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_inactive_owner('owner_id');
CREATE TRIGGER a1_backup_items_owner_active_update BEFORE UPDATE ON backup_items
FOR EACH ROW EXECUTE FUNCTION refuse_inactive_owner('owner_id');
CREATE TRIGGER a1_consent_state_owner_active BEFORE INSERT ON consent_state
FOR EACH ROW EXECUTE FUNCTION refuse_inactive_owner('user_id');
CREATE TRIGGER a1_sessions_owner_active BEFORE INSERT ON sessions
FOR EACH ROW EXECUTE FUNCTION refuse_inactive_owner('user_id');
