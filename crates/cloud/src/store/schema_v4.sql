-- Sovereign region store, schema version 4: a user's services placed apart from their account.
--
-- The account (phone index, password, sessions, the authoritative consent history) lives in
-- the user's home region. A region that holds one of the user's services (messaging, backup)
-- while the home is elsewhere holds a 'service' row for them: the sealed phone number (a sender
-- needs it), the data key wrapped under this region's own key, no password and no sessions, and
-- in consent_state a mirror of the user's current consents, kept by the home region
-- (`consent_version` is the length of the home's consent history the mirror reflects), so that
-- the consent checks and triggers of version 1 hold here too.

ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'account'
    CHECK (kind IN ('account', 'service'));
ALTER TABLE users ADD COLUMN consent_version INTEGER NOT NULL DEFAULT 0;

-- One service of one user being moved out of this region ('moving'), or moved out ('gone'):
-- either way nothing of that service is written here for that user any more. While a service
-- moves, the user's consents are frozen here too, so the copy at the target is the last word.
CREATE TABLE service_fences (
    user_id TEXT NOT NULL,
    service TEXT NOT NULL CHECK (service IN ('messaging', 'backup')),
    state   TEXT NOT NULL CHECK (state IN ('moving', 'gone')),
    since   INTEGER NOT NULL,
    PRIMARY KEY (user_id, service)
) STRICT;

CREATE TRIGGER messages_service_fenced_insert BEFORE INSERT ON messages
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.owner_id AND service = 'messaging')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER messages_service_fenced_update BEFORE UPDATE ON messages
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.owner_id AND service = 'messaging')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_service_fenced_insert BEFORE INSERT ON backup_items
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.owner_id AND service = 'backup')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER backup_items_service_fenced_update BEFORE UPDATE ON backup_items
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.owner_id AND service = 'backup')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_service_fenced_insert BEFORE INSERT ON consent_state
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.user_id AND state = 'moving')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_service_fenced_update BEFORE UPDATE ON consent_state
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.user_id AND state = 'moving')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_state_service_fenced_delete BEFORE DELETE ON consent_state
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = OLD.user_id AND state = 'moving')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;

CREATE TRIGGER consent_events_service_fenced_insert BEFORE INSERT ON consent_events
WHEN EXISTS (SELECT 1 FROM service_fences WHERE user_id = NEW.user_id AND state = 'moving')
BEGIN SELECT RAISE(ABORT, 'user_migrating'); END;
