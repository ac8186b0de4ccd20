//! The access ledger's SQL. Entries are appended inside the caller's transaction, so an entry
//! exists exactly when the change it records was committed.

use super::db::{Connection, OptionalExtension, Row, params};
use sovereign_crypto::{
    MerkleTree, chain_hash, digest_sha256, frontier_push, frontier_root, leaf_hash,
};

use super::{Store, StoreError};
use crate::clock::UnixMs;
use crate::ledger::{LedgerKind, LedgerSigner, checkpoint_bytes, leaf_bytes};

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

fn leaves(conn: &Connection, size: i64) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT leaf_hash FROM ledger_entries WHERE seq < ?1 ORDER BY seq")?;
    let rows = stmt.query_map(params![size], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(to_hash(&row?)?);
    }
    Ok(out)
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

/// Appends an entry in the caller's transaction; signs a checkpoint when one is due.
pub(crate) fn append_ledger(
    conn: &Connection,
    signer: &LedgerSigner,
    entry: &NewLedgerEntry<'_>,
) -> Result<i64, StoreError> {
    let (seq, previous) = match last_entry(conn)? {
        Some((seq, chain)) => (seq + 1, to_hash(&chain)?),
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
    let frontier = load_frontier(conn)?;
    if frontier_size(&frontier) != size {
        return Err(StoreError::Commit(format!(
            "ledger frontier covers {} entries, the ledger has {size}",
            frontier_size(&frontier)
        )));
    }
    let root = frontier_root(&frontier);
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
            let tree = MerkleTree::new(leaves(conn, checkpoint.tree_size)?);
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
            for row in rows {
                let index = usize::try_from(row.seq).unwrap_or(usize::MAX);
                let proof = tree.proof(index).ok_or(StoreError::NotFound)?;
                entries.push((row, proof));
            }
            Ok(Some(UserLedger {
                checkpoint,
                entries,
            }))
        })
        .await
    }

    /// Every entry and checkpoint.
    pub async fn ledger_all(&self) -> Result<(Vec<LedgerRow>, Vec<CheckpointRow>), StoreError> {
        self.read(load_ledger).await
    }
}
