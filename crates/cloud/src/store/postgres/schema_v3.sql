-- Sovereign region store, schema version 3 (PostgreSQL): staff access, the access ledger and
-- retention. The same tables and refusals as ../schema_v3.sql.

-- Operators are registered with an Ed25519 public key (`sovereign ops register`).
CREATE TABLE operators (
    name          TEXT COLLATE "C" PRIMARY KEY,
    public_key    BYTEA NOT NULL UNIQUE,
    registered_at BIGINT NOT NULL,
    revoked_at    BIGINT
);

-- A request for access to one user's data, signed by its requester. `not_after` is part of what
-- the requester and every approver sign, so nobody can stretch a grant after the fact.
CREATE TABLE ops_requests (
    id           TEXT COLLATE "C" PRIMARY KEY,
    requester    TEXT COLLATE "C" NOT NULL REFERENCES operators(name),
    user_id      TEXT COLLATE "C" NOT NULL,
    scopes       TEXT COLLATE "C" NOT NULL,  -- comma-separated, sorted, as signed
    reason       TEXT COLLATE "C" NOT NULL,
    requested_at BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    signature    BYTEA NOT NULL,
    state        TEXT COLLATE "C" NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'open', 'denied', 'revoked', 'expired')),
    opened_at    BIGINT,
    closed_at    BIGINT
);
CREATE INDEX ops_requests_by_state ON ops_requests(state, not_after);

-- Each operator's signed approval, denial or revocation of a request.
CREATE TABLE ops_decisions (
    request_id TEXT COLLATE "C" NOT NULL REFERENCES ops_requests(id),
    operator   TEXT COLLATE "C" NOT NULL REFERENCES operators(name),
    decision   TEXT COLLATE "C" NOT NULL CHECK (decision IN ('approve', 'deny', 'revoke')),
    at         BIGINT NOT NULL,
    signature  BYTEA NOT NULL,
    PRIMARY KEY (request_id, operator, decision)
);

-- The access ledger: an append-only list of entries, each a leaf of an RFC 6962 Merkle tree and
-- a link of a hash chain. `seq` starts at 0 and is the leaf index. Retention may blank `detail`
-- (its hash stays in the leaf); nothing else ever changes.
CREATE TABLE ledger_entries (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    request_id  TEXT COLLATE "C" NOT NULL,
    operator    TEXT COLLATE "C" NOT NULL,
    detail      TEXT COLLATE "C",
    detail_hash BYTEA NOT NULL,
    leaf_hash   BYTEA NOT NULL,
    chain_hash  BYTEA NOT NULL
);
CREATE INDEX ledger_by_user ON ledger_entries(user_id, seq);

CREATE FUNCTION ledger_append_only_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access ledger is append-only';
END $$;
CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_append_only_delete();
-- A statement-level trigger too: TRUNCATE skips row triggers.
CREATE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON ledger_entries
FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only_delete();

CREATE FUNCTION ledger_append_only_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.detail IS NOT NULL OR NEW.seq IS DISTINCT FROM OLD.seq
        OR NEW.at IS DISTINCT FROM OLD.at OR NEW.kind IS DISTINCT FROM OLD.kind
        OR NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.request_id IS DISTINCT FROM OLD.request_id
        OR NEW.operator IS DISTINCT FROM OLD.operator
        OR NEW.detail_hash IS DISTINCT FROM OLD.detail_hash
        OR NEW.leaf_hash IS DISTINCT FROM OLD.leaf_hash
        OR NEW.chain_hash IS DISTINCT FROM OLD.chain_hash
    THEN
        RAISE EXCEPTION 'the access ledger is append-only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_append_only_update();

-- The Merkle tree's frontier: the root of each perfect subtree on its right edge, by height, so a
-- new root costs O(log n) hashes. Derived from the entries; `ledger verify` never trusts it.
CREATE TABLE ledger_frontier (
    height BIGINT PRIMARY KEY,
    hash   BYTEA NOT NULL
);

-- Signed tree heads: the region's ledger key signs (region, size, Merkle root, chain head, time).
CREATE TABLE ledger_checkpoints (
    tree_size  BIGINT PRIMARY KEY,
    root       BYTEA NOT NULL,
    chain_head BYTEA NOT NULL,
    at         BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    signature  BYTEA NOT NULL
);

CREATE INDEX messages_by_expiry ON messages(expires_at);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
CREATE INDEX verifications_by_expiry ON verifications(expires_at);
