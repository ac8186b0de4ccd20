-- Sovereign region store, schema version 7 (PostgreSQL): a ledger anyone holding the
-- region's public key can check (issue 12, finding 3).

-- Signed tree heads are evidence: once signed, a checkpoint never changes and never goes
-- (TRUNCATE skips row triggers, hence the statement trigger).
CREATE FUNCTION ledger_evidence_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % are append-only', TG_ARGV[0];
END $$;
CREATE TRIGGER ledger_checkpoints_append_only BEFORE DELETE OR UPDATE ON ledger_checkpoints
FOR EACH ROW EXECUTE FUNCTION ledger_evidence_append_only('ledger checkpoints');
CREATE TRIGGER ledger_checkpoints_append_only_truncate BEFORE TRUNCATE ON ledger_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION ledger_evidence_append_only('ledger checkpoints');

-- Each entry's seal: the region's ledger key's signature over (region, seq, chain hash), made in
-- the commit that appends the entry. The chain hash covers every earlier entry, so an entry no
-- checkpoint covers yet cannot be rewritten without the key either.
CREATE TABLE ledger_seals (
    seq       BIGINT PRIMARY KEY,
    signature BYTEA NOT NULL
);
CREATE TRIGGER ledger_seals_append_only BEFORE DELETE OR UPDATE ON ledger_seals
FOR EACH ROW EXECUTE FUNCTION ledger_evidence_append_only('ledger seals');
CREATE TRIGGER ledger_seals_append_only_truncate BEFORE TRUNCATE ON ledger_seals
FOR EACH STATEMENT EXECUTE FUNCTION ledger_evidence_append_only('ledger seals');

-- The hash of every complete perfect subtree (2^level entries from entry index << level), so
-- inclusion and consistency proofs take O(log n) lookups. Derived from the entries: whoever
-- checks a proof checks it against a signed root, and `ledger verify` never reads this table.
CREATE TABLE ledger_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
