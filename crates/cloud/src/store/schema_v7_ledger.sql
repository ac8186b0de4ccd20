-- Sovereign region store, schema version 7: a ledger anyone holding the region's
-- public key can check (issue 12, finding 3).

-- Signed tree heads are evidence: once signed, a checkpoint never changes and never goes.
CREATE TRIGGER ledger_checkpoints_append_only_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'the ledger checkpoints are append-only'); END;
CREATE TRIGGER ledger_checkpoints_append_only_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'the ledger checkpoints are append-only'); END;

-- Each entry's seal: the region's ledger key's signature over (region, seq, chain hash), made in
-- the commit that appends the entry. The chain hash covers every earlier entry, so an entry no
-- checkpoint covers yet cannot be rewritten without the key either.
CREATE TABLE ledger_seals (
    seq       INTEGER PRIMARY KEY,
    signature BLOB NOT NULL
) STRICT;
CREATE TRIGGER ledger_seals_append_only_delete BEFORE DELETE ON ledger_seals
BEGIN SELECT RAISE(ABORT, 'the ledger seals are append-only'); END;
CREATE TRIGGER ledger_seals_append_only_update BEFORE UPDATE ON ledger_seals
BEGIN SELECT RAISE(ABORT, 'the ledger seals are append-only'); END;

-- The hash of every complete perfect subtree (2^level entries from entry index << level), so
-- inclusion and consistency proofs take O(log n) lookups. Derived from the entries: whoever
-- checks a proof checks it against a signed root, and `ledger verify` never reads this table.
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT;
