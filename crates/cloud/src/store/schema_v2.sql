-- Sovereign region store, schema version 2: online migration between regions.
--
-- A user being moved out of this region is fenced ('source'): the triggers below refuse every
-- write to their data until the move ends, so the copy at the target can be verified against a
-- source that no longer changes. A user being moved in ('target') is invisible here until the
-- directory points at this region.

CREATE TABLE migration_fences (
    user_id TEXT PRIMARY KEY,
    role    TEXT NOT NULL CHECK (role IN ('source', 'target')),
    since   INTEGER NOT NULL
) STRICT;

-- Users who moved away, and the digests of their tokens, so that a client still calling this
-- region is sent to the new one instead of being told its token is unknown.
CREATE TABLE moved_users (
    user_id  TEXT PRIMARY KEY,
    region   TEXT NOT NULL,
    moved_at INTEGER NOT NULL
) STRICT;

CREATE TABLE moved_tokens (
    token_digest BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE TRIGGER messages_fenced_insert BEFORE INSERT ON messages
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER messages_fenced_update BEFORE UPDATE ON messages
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER messages_fenced_delete BEFORE DELETE ON messages
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = OLD.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_fenced_insert BEFORE INSERT ON backup_items
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_fenced_update BEFORE UPDATE ON backup_items
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_fenced_delete BEFORE DELETE ON backup_items
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = OLD.owner_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_fenced_insert BEFORE INSERT ON consent_state
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_fenced_update BEFORE UPDATE ON consent_state
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_fenced_delete BEFORE DELETE ON consent_state
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = OLD.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_events_fenced_insert BEFORE INSERT ON consent_events
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER sessions_fenced_insert BEFORE INSERT ON sessions
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER sessions_fenced_update BEFORE UPDATE ON sessions
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = NEW.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER sessions_fenced_delete BEFORE DELETE ON sessions
WHEN EXISTS (SELECT 1 FROM migration_fences WHERE user_id = OLD.user_id AND role = 'source')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

-- Nothing is written for a user who is not active here: once a move (or a deletion) has
-- destroyed the user's key, a request that was already on its way cannot add rows that the
-- purge would then silently take with it.
CREATE TRIGGER messages_owner_active BEFORE INSERT ON messages
WHEN NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.owner_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_owner_active_insert BEFORE INSERT ON backup_items
WHEN NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.owner_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_owner_active_update BEFORE UPDATE ON backup_items
WHEN NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.owner_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_owner_active BEFORE INSERT ON consent_state
WHEN NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER sessions_owner_active BEFORE INSERT ON sessions
WHEN NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;
