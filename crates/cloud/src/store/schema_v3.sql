-- Sovereign region store, schema version 3: staff access, the access ledger and retention.
-- ledger, and what retention needs. Portable SQL: INTEGER/TEXT/BLOB only.

-- Operators are registered with an Ed25519 public key (`sovereign ops register`).
CREATE TABLE operators (
    name          TEXT PRIMARY KEY,
    public_key    BLOB NOT NULL UNIQUE,
    registered_at INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;

-- A request for access to one user's data, signed by its requester. `not_after` is part of what
-- the requester and every approver sign, so nobody can stretch a grant after the fact.
CREATE TABLE ops_requests (
    id           TEXT PRIMARY KEY,
    requester    TEXT NOT NULL REFERENCES operators(name),
    user_id      TEXT NOT NULL,
    scopes       TEXT NOT NULL,          -- comma-separated, sorted, as signed
    reason       TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    signature    BLOB NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'open', 'denied', 'revoked', 'expired')),
    opened_at    INTEGER,
    closed_at    INTEGER
) STRICT;
CREATE INDEX ops_requests_by_state ON ops_requests(state, not_after);

-- Each operator's signed approval, denial or revocation of a request.
CREATE TABLE ops_decisions (
    request_id TEXT NOT NULL REFERENCES ops_requests(id),
    operator   TEXT NOT NULL REFERENCES operators(name),
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'deny', 'revoke')),
    at         INTEGER NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (request_id, operator, decision)
) STRICT;

-- The access ledger: an append-only list of entries, each a leaf of an RFC 6962 Merkle tree and
-- a link of a hash chain. `seq` starts at 0 and is the leaf index. Retention may blank `detail`
-- (its hash stays in the leaf); nothing else ever changes.
CREATE TABLE ledger_entries (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    operator    TEXT NOT NULL,
    detail      TEXT,
    detail_hash BLOB NOT NULL,
    leaf_hash   BLOB NOT NULL,
    chain_hash  BLOB NOT NULL
) STRICT;
CREATE INDEX ledger_by_user ON ledger_entries(user_id, seq);

CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'the access ledger is append-only'); END;

CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger_entries
WHEN NEW.detail IS NOT NULL OR NEW.seq IS NOT OLD.seq OR NEW.at IS NOT OLD.at
    OR NEW.kind IS NOT OLD.kind OR NEW.user_id IS NOT OLD.user_id
    OR NEW.request_id IS NOT OLD.request_id OR NEW.operator IS NOT OLD.operator
    OR NEW.detail_hash IS NOT OLD.detail_hash OR NEW.leaf_hash IS NOT OLD.leaf_hash
    OR NEW.chain_hash IS NOT OLD.chain_hash
BEGIN SELECT RAISE(ABORT, 'the access ledger is append-only'); END;

-- The Merkle tree's frontier: the root of each perfect subtree on its right edge, by height, so a
-- new root costs O(log n) hashes. Derived from the entries; `ledger verify` never trusts it.
CREATE TABLE ledger_frontier (
    height INTEGER PRIMARY KEY,
    hash   BLOB NOT NULL
) STRICT;

-- Signed tree heads: the region's ledger key signs (region, size, Merkle root, chain head, time).
CREATE TABLE ledger_checkpoints (
    tree_size  INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    chain_head BLOB NOT NULL,
    at         INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL
) STRICT;

CREATE INDEX messages_by_expiry ON messages(expires_at);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
CREATE INDEX verifications_by_expiry ON verifications(expires_at);
