//! The access ledger's SQL. Entries are appended inside the caller's transaction, so an entry
//! exists exactly when the change it records was committed.

use super::db::{Connection, OptionalExtension, Row, params};
use sovereign_crypto::{
    SubtreeSource, chain_hash, completed_by, consistency_proof_from, digest_sha256, frontier_push,
    frontier_root, inclusion_proof_from, leaf_hash, node_hash, verify_signature,
};

use super::{Store, StoreError};
use crate::clock::UnixMs;
use crate::ledger::{
    LedgerKind, LedgerSigner, checkpoint_bytes, expected_leaf, leaf_bytes, seal_bytes,
};

/// Most ledger entries one user's listing returns (newest first).
pub const LEDGER_USER_ROWS_MAX: u32 = 500;

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub seq: i64,
    pub at: UnixMs,
    pub kind: String,
    pub user_id: String,
    pub request_id: String,
    pub operator: String,
    pub detail: Option<String>,
    pub detail_hash: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub chain_hash: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub tree_size: i64,
    pub root: Vec<u8>,
    pub chain_head: Vec<u8>,
    pub at: UnixMs,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct NewLedgerEntry<'a> {
    pub kind: LedgerKind,
    pub user_id: &'a str,
    pub request_id: &'a str,
    pub operator: &'a str,
    /// JSON: what the entry is about (scopes, reason, approvers, expiry).
    pub detail: String,
    pub at: UnixMs,
}

/// A user's entries with an inclusion proof of each against one signed checkpoint.
#[derive(Debug, Clone)]
pub struct UserLedger {
    pub checkpoint: CheckpointRow,
    pub entries: Vec<(LedgerRow, Vec<[u8; 32]>)>,
}

const LEDGER_COLUMNS: &str =
    "seq, at, kind, user_id, request_id, operator, detail, detail_hash, leaf_hash, chain_hash";
const CHECKPOINT_COLUMNS: &str = "tree_size, root, chain_head, at, public_key, signature";

fn ledger_row(r: &Row) -> super::db::DbResult<LedgerRow> {
    Ok(LedgerRow {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        user_id: r.get(3)?,
        request_id: r.get(4)?,
        operator: r.get(5)?,
        detail: r.get(6)?,
        detail_hash: r.get(7)?,
        leaf_hash: r.get(8)?,
        chain_hash: r.get(9)?,
    })
}

fn checkpoint_row(r: &Row) -> super::db::DbResult<CheckpointRow> {
    Ok(CheckpointRow {
        tree_size: r.get(0)?,
        root: r.get(1)?,
        chain_head: r.get(2)?,
        at: r.get(3)?,
        public_key: r.get(4)?,
        signature: r.get(5)?,
    })
}

fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Commit(format!("stored hash has {} bytes", bytes.len())))
}

fn load_frontier(conn: &Connection) -> Result<Vec<Option<[u8; 32]>>, StoreError> {
    let mut stmt = conn.prepare("SELECT height, hash FROM ledger_frontier ORDER BY height")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut frontier = Vec::new();
    for row in rows {
        let (height, hash) = row?;
        let height = usize::try_from(height)
            .ok()
            .filter(|h| *h < 64)
            .ok_or_else(|| StoreError::Commit(format!("ledger frontier height {height}")))?;
        frontier.resize(frontier.len().max(height + 1), None);
        frontier[height] = Some(to_hash(&hash)?);
    }
    Ok(frontier)
}

/// How many leaves a frontier covers.
fn frontier_size(frontier: &[Option<[u8; 32]>]) -> i64 {
    frontier
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_some())
        .map(|(h, _)| 1i64 << h)
        .sum()
}

fn last_entry(conn: &Connection) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, chain_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The complete perfect subtrees of the stored tree, read one indexed row at a time, counting
/// the reads (a proof must cost O(log n) of them).
pub(crate) struct StoredNodes<'a> {
    conn: &'a Connection,
    pub(crate) lookups: u64,
}

impl<'a> StoredNodes<'a> {
    pub(crate) fn new(conn: &'a Connection) -> StoredNodes<'a> {
        StoredNodes { conn, lookups: 0 }
    }
}

impl SubtreeSource for StoredNodes<'_> {
    type Error = StoreError;
    fn subtree(&mut self, level: u32, index: u64) -> Result<[u8; 32], StoreError> {
        self.lookups += 1;
        let index = i64::try_from(index)
            .map_err(|_| StoreError::Commit(format!("ledger node index {index}")))?;
        let hash: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM ledger_nodes WHERE level = ?1 AND idx = ?2",
                params![i64::from(level), index],
                |r| r.get(0),
            )
            .optional()?;
        match hash {
            Some(hash) => to_hash(&hash),
            None => Err(StoreError::Commit(format!(
                "ledger node {level}/{index} is missing"
            ))),
        }
    }
}

/// Stores the subtrees leaf `seq` completes (its own leaf, and each perfect subtree ending at it).
fn store_nodes(conn: &Connection, seq: i64, leaf: [u8; 32]) -> Result<(), StoreError> {
    let index = u64::try_from(seq).map_err(|_| StoreError::Commit(format!("ledger seq {seq}")))?;
    let mut hash = leaf;
    let mut nodes = StoredNodes::new(conn);
    for (level, idx) in completed_by(index) {
        if level > 0 {
            // The right child is the node just stored; the left one was completed earlier.
            let left = nodes.subtree(level - 1, 2 * idx)?;
            hash = node_hash(&left, &hash);
        }
        conn.execute(
            "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            params![i64::from(level), idx as i64, hash],
        )?;
    }
    Ok(())
}

/// Why the region will not extend or sign over its ledger as the tables hold it.
fn rewritten(signer: &LedgerSigner, why: String) -> StoreError {
    tracing::error!(
        region = signer.region,
        fault = why,
        "the ledger was changed behind the server's back: refusing to sign over it"
    );
    signer.refuse(&why);
    StoreError::LedgerRewritten(why)
}

/// The seal of entry `seq`, if it has one.
fn seal(conn: &Connection, seq: i64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT signature FROM ledger_seals WHERE seq = ?1",
            params![seq],
            |r| r.get(0),
        )
        .optional()?)
}

/// The newest signed checkpoint.
fn latest_checkpoint(conn: &Connection) -> Result<Option<CheckpointRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1"
            ),
            [],
            checkpoint_row,
        )
        .optional()?)
}

/// Before a new entry is chained onto entry `seq`: that entry's chain hash is one this region
/// sealed (or, for an entry from before seals, the head of its last signed checkpoint).
fn check_last_link(
    conn: &Connection,
    signer: &LedgerSigner,
    seq: i64,
    chain: &[u8],
) -> Result<(), StoreError> {
    let public = signer.key.public_key();
    match seal(conn, seq)? {
        Some(signature) => {
            if verify_signature(&public, &seal_bytes(&signer.region, seq, chain), &signature)
                .is_err()
            {
                return Err(rewritten(
                    signer,
                    format!(
                        "entry {seq}: its seal does not verify (rewritten after it was appended)"
                    ),
                ));
            }
        }
        None => {
            let covered = latest_checkpoint(conn)?
                .is_some_and(|c| c.tree_size == seq + 1 && c.chain_head.as_slice() == chain);
            if !covered {
                return Err(rewritten(
                    signer,
                    format!("entry {seq}: it has no seal and no checkpoint ends at it"),
                ));
            }
        }
    }
    Ok(())
}

/// Appends an entry in the caller's transaction; signs a checkpoint when one is due.
pub(crate) fn append_ledger(
    conn: &Connection,
    signer: &LedgerSigner,
    entry: &NewLedgerEntry<'_>,
) -> Result<i64, StoreError> {
    if let Some(why) = signer.refusal() {
        return Err(StoreError::LedgerRewritten(why));
    }
    let (seq, previous) = match last_entry(conn)? {
        Some((seq, chain)) => {
            check_last_link(conn, signer, seq, &chain)?;
            (seq + 1, to_hash(&chain)?)
        }
        None => (0, [0u8; 32]),
    };
    let detail_hash = digest_sha256(entry.detail.as_bytes());
    let leaf = leaf_hash(&leaf_bytes(
        seq,
        entry.at,
        entry.kind.as_str(),
        entry.user_id,
        entry.request_id,
        entry.operator,
        &detail_hash,
    ));
    let chain = chain_hash(&previous, &leaf);
    conn.execute(
        &format!("INSERT INTO ledger_entries ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            seq,
            entry.at,
            entry.kind.as_str(),
            entry.user_id,
            entry.request_id,
            entry.operator,
            entry.detail,
            detail_hash,
            leaf,
            chain
        ],
    )?;
    let sealed = signer.key.sign(&seal_bytes(&signer.region, seq, &chain));
    conn.execute(
        "INSERT INTO ledger_seals (seq, signature) VALUES (?1, ?2)",
        params![seq, sealed.to_vec()],
    )?;
    store_nodes(conn, seq, leaf)?;
    let mut frontier = load_frontier(conn)?;
    if frontier_size(&frontier) != seq {
        return Err(StoreError::Commit(format!(
            "ledger frontier covers {} entries, the ledger has {seq}",
            frontier_size(&frontier)
        )));
    }
    frontier_push(&mut frontier, leaf);
    conn.execute("DELETE FROM ledger_frontier", [])?;
    for (height, hash) in frontier.iter().enumerate() {
        if let Some(hash) = hash {
            conn.execute(
                "INSERT INTO ledger_frontier (height, hash) VALUES (?1, ?2)",
                params![height as i64, hash],
            )?;
        }
    }
    if (seq + 1) % i64::from(signer.checkpoint_entries.max(1)) == 0 {
        checkpoint(conn, signer, entry.at)?;
    }
    Ok(seq)
}

/// Signs a checkpoint over the whole ledger as it is now, unless one at this size exists.
pub(crate) fn checkpoint(
    conn: &Connection,
    signer: &LedgerSigner,
    at: UnixMs,
) -> Result<Option<CheckpointRow>, StoreError> {
    // A region that found its ledger rewritten says so at every attempt to sign, even when
    // nothing new would be signed.
    if let Some(why) = signer.refusal() {
        return Err(StoreError::LedgerRewritten(why));
    }
    let Some((last_seq, head)) = last_entry(conn)? else {
        return Ok(None);
    };
    let size = last_seq + 1;
    let existing = conn
        .query_row(
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints WHERE tree_size = ?1"),
            params![size],
            checkpoint_row,
        )
        .optional()?;
    if existing.is_some() {
        return Ok(existing);
    }
    let root = checked_root(conn, signer, size, &head)?;
    let signature = signer
        .key
        .sign(&checkpoint_bytes(&signer.region, size, &root, &head, at));
    let row = CheckpointRow {
        tree_size: size,
        root: root.to_vec(),
        chain_head: head,
        at,
        public_key: signer.key.public_key().to_vec(),
        signature: signature.to_vec(),
    };
    conn.execute(
        &format!(
            "INSERT INTO ledger_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ),
        params![
            row.tree_size,
            row.root,
            row.chain_head,
            row.at,
            row.public_key,
            row.signature
        ],
    )?;
    Ok(Some(row))
}

/// The root to sign at `size` entries, once the tables are shown to extend the last signed
/// checkpoint: its signature holds, the entries up to it still give its root and chain head
/// (from the stored subtrees, O(log n), and the stored link at its end), and every entry since
/// is recomputed from its fields (leaf, chain link, seal) and pushed onto that tree. Costs
/// O(log n + entries since the last checkpoint); a full recomputation runs at start
/// ([`Store::ledger_startup`]) and in `sovereign ledger verify`.
fn checked_root(
    conn: &Connection,
    signer: &LedgerSigner,
    size: i64,
    head: &[u8],
) -> Result<[u8; 32], StoreError> {
    let public = signer.key.public_key();
    let (mut frontier, mut previous, from) = match latest_checkpoint(conn)? {
        None => (Vec::new(), [0u8; 32], 0i64),
        Some(last) => {
            let message = checkpoint_bytes(
                &signer.region,
                last.tree_size,
                &last.root,
                &last.chain_head,
                last.at,
            );
            if last.public_key.as_slice() != public.as_slice()
                || verify_signature(&public, &message, &last.signature).is_err()
            {
                return Err(rewritten(
                    signer,
                    format!(
                        "checkpoint at {} entries: not signed by this region's ledger key",
                        last.tree_size
                    ),
                ));
            }
            let end: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT chain_hash FROM ledger_entries WHERE seq = ?1",
                    params![last.tree_size - 1],
                    |r| r.get(0),
                )
                .optional()?;
            if end.as_deref() != Some(last.chain_head.as_slice()) {
                return Err(rewritten(
                    signer,
                    format!(
                        "entries before {}: they no longer give the chain head of the checkpoint                          at {} entries",
                        last.tree_size, last.tree_size
                    ),
                ));
            }
            let frontier = stored_frontier(conn, last.tree_size)?;
            if frontier_root(&frontier).as_slice() != last.root.as_slice() {
                return Err(rewritten(
                    signer,
                    format!(
                        "entries before {}: they no longer give the Merkle root of the checkpoint                          at {} entries",
                        last.tree_size, last.tree_size
                    ),
                ));
            }
            (frontier, to_hash(&last.chain_head)?, last.tree_size)
        }
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE seq >= ?1 AND seq < ?2 ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map(params![from, size], ledger_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let first_sealed: Option<i64> = conn
        .query_row("SELECT min(seq) FROM ledger_seals", [], |r| r.get(0))
        .optional()?
        .flatten();
    let mut expected = from;
    for row in rows {
        if row.seq != expected {
            return Err(rewritten(
                signer,
                format!("entry {expected}: missing (entries removed or renumbered)"),
            ));
        }
        let leaf = expected_leaf(&row);
        if leaf.as_slice() != row.leaf_hash.as_slice() {
            return Err(rewritten(
                signer,
                format!("entry {}: its fields do not match its leaf hash", row.seq),
            ));
        }
        let chain = chain_hash(&previous, &leaf);
        if chain.as_slice() != row.chain_hash.as_slice() {
            return Err(rewritten(
                signer,
                format!(
                    "entry {}: its chain hash does not follow the entry before",
                    row.seq
                ),
            ));
        }
        match seal(conn, row.seq)? {
            Some(signature)
                if verify_signature(
                    &public,
                    &seal_bytes(&signer.region, row.seq, &chain),
                    &signature,
                )
                .is_err() =>
            {
                return Err(rewritten(
                    signer,
                    format!("entry {}: its seal does not verify", row.seq),
                ));
            }
            Some(_) => {}
            None if first_sealed.is_some_and(|first| row.seq >= first) => {
                return Err(rewritten(
                    signer,
                    format!("entry {}: its seal is missing", row.seq),
                ));
            }
            None => {}
        }
        frontier_push(&mut frontier, leaf);
        previous = chain;
        expected += 1;
    }
    if expected != size || previous.as_slice() != head {
        return Err(rewritten(
            signer,
            format!(
                "entry {}: the entries end differently than they did a moment ago",
                size - 1
            ),
        ));
    }
    let root = frontier_root(&frontier);
    let stored = load_frontier(conn)?;
    if frontier_size(&stored) != size || frontier_root(&stored) != root {
        return Err(rewritten(
            signer,
            "the stored frontier does not match the entries".to_owned(),
        ));
    }
    Ok(root)
}

/// The frontier of the first `size` entries, from the stored subtrees (O(log n) reads).
fn stored_frontier(conn: &Connection, size: i64) -> Result<Vec<Option<[u8; 32]>>, StoreError> {
    let size = u64::try_from(size).map_err(|_| StoreError::Commit(format!("tree size {size}")))?;
    let mut nodes = StoredNodes::new(conn);
    let mut frontier = vec![None; 64 - size.leading_zeros() as usize];
    let mut start = 0u64;
    for level in (0..frontier.len()).rev() {
        if size & (1u64 << level) != 0 {
            frontier[level] = Some(nodes.subtree(level as u32, start >> level)?);
            start += 1u64 << level;
        }
    }
    Ok(frontier)
}

/// Every entry's seal, by entry number.
///
/// # Errors
/// When the table cannot be read.
pub fn load_seals(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<i64, Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare("SELECT seq, signature FROM ledger_seals ORDER BY seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = std::collections::BTreeMap::new();
    for row in rows {
        let (seq, signature) = row?;
        out.insert(seq, signature);
    }
    Ok(out)
}

/// Every entry and checkpoint, in order, for verification.
///
/// # Errors
/// When the tables cannot be read.
pub fn load_ledger(conn: &Connection) -> Result<(Vec<LedgerRow>, Vec<CheckpointRow>), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map([], ledger_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints ORDER BY tree_size"
    ))?;
    let checkpoints = stmt
        .query_map([], checkpoint_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, checkpoints))
}

impl Store {
    /// Signs a checkpoint covering every entry so far (none when the ledger is empty).
    pub async fn ledger_checkpoint(
        &self,
        signer: std::sync::Arc<LedgerSigner>,
        now: UnixMs,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        self.write(move |conn| checkpoint(conn, &signer, now)).await
    }

    /// A user's newest entries, each with its inclusion proof against the latest checkpoint.
    /// Entries after that checkpoint are left out; call [`Store::ledger_checkpoint`] first.
    pub async fn user_ledger(&self, user_id: String) -> Result<Option<UserLedger>, StoreError> {
        self.read(move |conn| {
            let Some(checkpoint) = conn
                .query_row(
                    &format!(
                        "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints \
                         ORDER BY tree_size DESC LIMIT 1"
                    ),
                    [],
                    checkpoint_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE user_id = ?1 AND seq < ?2 \
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(
                    params![user_id, checkpoint.tree_size, LEDGER_USER_ROWS_MAX],
                    ledger_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = Vec::with_capacity(rows.len());
            let size = u64::try_from(checkpoint.tree_size).unwrap_or(0);
            let mut nodes = StoredNodes::new(conn);
            for row in rows {
                let index = u64::try_from(row.seq).unwrap_or(u64::MAX);
                let proof =
                    inclusion_proof_from(&mut nodes, index, size)?.ok_or(StoreError::NotFound)?;
                entries.push((row, proof));
            }
            Ok(Some(UserLedger {
                checkpoint,
                entries,
            }))
        })
        .await
    }

    /// At start: checks the whole ledger against the region's key (every entry recomputed, every
    /// checkpoint's root), fills the stored subtrees of entries from before they were kept, and
    /// signs a checkpoint over the tail. A ledger that does not verify is not signed over: the
    /// signer is marked as refusing (`/healthz` says so) and the server still starts.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn ledger_startup(
        &self,
        signer: std::sync::Arc<LedgerSigner>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let (rows, checkpoints) = load_ledger(conn)?;
            let seals = load_seals(conn)?;
            let bounds = crate::ledger::LagBounds::unbounded();
            if let Err(fault) = crate::ledger::verify_sealed(
                &signer.region,
                &signer.key.public_key(),
                &rows,
                &checkpoints,
                &seals,
                &bounds,
            ) {
                rewritten(&signer, fault.to_string());
                return Ok(());
            }
            let stored: i64 = conn.query_row(
                "SELECT count(*) FROM ledger_nodes WHERE level = 0",
                [],
                |r| r.get(0),
            )?;
            if stored != rows.len() as i64 {
                conn.execute("DELETE FROM ledger_nodes", [])?;
                for row in &rows {
                    store_nodes(conn, row.seq, to_hash(&row.leaf_hash)?)?;
                }
            }
            checkpoint(conn, &signer, now)?;
            Ok(())
        })
        .await
    }

    /// The RFC 9162 consistency proof from the tree of `first` entries to the signed checkpoint
    /// of `second` entries (the newest when `None`), in O(log n) reads of the stored subtrees.
    /// `Ok(None)` when there is no such checkpoint or `first` is not in `1..=second`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn ledger_consistency(
        &self,
        first: i64,
        second: Option<i64>,
    ) -> Result<Option<(CheckpointRow, Vec<[u8; 32]>)>, StoreError> {
        self.read(move |conn| {
            let checkpoint = match second {
                None => latest_checkpoint(conn)?,
                Some(size) => conn
                    .query_row(
                        &format!(
                            "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints WHERE tree_size = ?1"
                        ),
                        params![size],
                        checkpoint_row,
                    )
                    .optional()?,
            };
            let Some(checkpoint) = checkpoint else {
                return Ok(None);
            };
            let (Ok(first), Ok(second)) = (u64::try_from(first), u64::try_from(checkpoint.tree_size))
            else {
                return Ok(None);
            };
            let proof = consistency_proof_from(&mut StoredNodes::new(conn), first, second)?;
            Ok(proof.map(|proof| (checkpoint, proof)))
        })
        .await
    }

    /// Every entry and checkpoint.
    pub async fn ledger_all(&self) -> Result<(Vec<LedgerRow>, Vec<CheckpointRow>), StoreError> {
        self.read(load_ledger).await
    }
}
