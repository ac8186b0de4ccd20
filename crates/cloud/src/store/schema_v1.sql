-- Sovereign region store, schema version 1 (SQLite).
-- Personal fields are sealed (AES-256-GCM under the owner's data key) before they reach this
-- file; phone numbers are found through a keyed hash. Nothing here is personal in the clear.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    phone_index   BLOB NOT NULL UNIQUE,
    phone_sealed  BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    wrapped_key   BLOB,                 -- NULL once crypto-shredded
    region        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting'))
) STRICT;

CREATE TABLE verifications (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    phone_index   BLOB NOT NULL,
    phone_sealed  BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    wrapped_key   BLOB NOT NULL,
    code_digest   BLOB NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    consumed_at   INTEGER
) STRICT;

CREATE TABLE sessions (
    token_digest  BLOB PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id),
    device_sealed BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_user ON sessions(user_id);

-- The consents in force: a row exists exactly while the scope is granted.
CREATE TABLE consent_state (
    user_id        TEXT NOT NULL REFERENCES users(id),
    scope          TEXT NOT NULL,
    notice_version INTEGER NOT NULL,
    granted_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, scope)
) STRICT;

-- Every grant and withdrawal, append-only.
CREATE TABLE consent_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT NOT NULL,
    scope          TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('grant', 'withdraw')),
    notice_version INTEGER,
    at             INTEGER NOT NULL
) STRICT;
CREATE INDEX consent_events_by_user ON consent_events(user_id, seq);

CREATE TRIGGER consent_events_append_only_update BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent history is append-only'); END;

-- History goes only with the account itself, once it is being deleted.
CREATE TRIGGER consent_events_append_only_delete BEFORE DELETE ON consent_events
WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id AND state = 'active')
BEGIN SELECT RAISE(ABORT, 'consent history is append-only'); END;

CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the sync cursor
    id           TEXT NOT NULL,
    owner_id     TEXT NOT NULL REFERENCES users(id),
    box          TEXT NOT NULL CHECK (box IN ('inbox', 'sent')),
    peer_sealed  BLOB NOT NULL,
    body_sealed  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    expires_at   INTEGER NOT NULL,
    UNIQUE (owner_id, box, id)
) STRICT;

-- Consent is enforced by the store itself: no message row exists for a user without a grant.
CREATE TRIGGER messages_need_consent BEFORE INSERT ON messages
WHEN NOT EXISTS (SELECT 1 FROM consent_state WHERE user_id = NEW.owner_id AND scope = 'messaging')
BEGIN SELECT RAISE(ABORT, 'consent_required:messaging'); END;

CREATE TABLE backup_items (
    owner_id     TEXT NOT NULL REFERENCES users(id),
    kind         TEXT NOT NULL CHECK (kind IN ('contacts', 'sms', 'photos')),
    item_id      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    change_seq   INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    data_sealed  BLOB,          -- contacts and sms; NULL for photos and tombstones
    blob_path    TEXT,          -- photos: sealed bytes in the object store
    content_type TEXT,
    size_bytes   INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (owner_id, kind, item_id)
) STRICT;
CREATE INDEX backup_changes ON backup_items(owner_id, kind, change_seq);

CREATE TRIGGER backup_insert_needs_consent BEFORE INSERT ON backup_items
WHEN NEW.deleted = 0 AND NOT EXISTS (
    SELECT 1 FROM consent_state WHERE user_id = NEW.owner_id AND scope = 'backup.' || NEW.kind)
BEGIN SELECT RAISE(ABORT, 'consent_required:backup'); END;

CREATE TRIGGER backup_update_needs_consent BEFORE UPDATE ON backup_items
WHEN NEW.deleted = 0 AND NOT EXISTS (
    SELECT 1 FROM consent_state WHERE user_id = NEW.owner_id AND scope = 'backup.' || NEW.kind)
BEGIN SELECT RAISE(ABORT, 'consent_required:backup'); END;

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO counters (name, value) VALUES ('backup_change', 0);
