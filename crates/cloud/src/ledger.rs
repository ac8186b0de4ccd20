//! The region's access ledger: every operator request, approval, denial, grant, read, revocation
//! and expiry, appended in the same commit as the change it records.
//!
//! Each entry is a leaf of an RFC 6962 Merkle tree and a link of a hash chain. The region signs a
//! checkpoint (tree size, Merkle root, chain head) with its own Ed25519 key every
//! `ledger_checkpoint_entries` entries and whenever a user asks for their entries, so a user gets
//! an inclusion proof of each entry against a signed tree head. [`verify_file`] checks the whole
//! ledger offline and names the first entry that does not hold.
//!
//! Retention may erase an entry's `detail` (scopes, reason, approvers) after `ledger_days`; the
//! leaf holds only the detail's hash, so the ledger still verifies.

use std::path::Path;

use anyhow::Context;
use sovereign_crypto::{
    SigningKey, canonical, chain_hash, digest_sha256, frontier_push, frontier_root, hex, leaf_hash,
    verify_signature,
};
use sovereign_model::RegionId;

use crate::clock::UnixMs;
use crate::store::{CheckpointRow, LedgerRow, load_ledger, load_seals};

const LEAF_DOMAIN: &str = "sovereign/ledger-entry/v1";
const CHECKPOINT_DOMAIN: &str = "sovereign/ledger-checkpoint/v1";
const SEAL_DOMAIN: &str = "sovereign/ledger-seal/v1";

/// Default of `ledger_checkpoint_secs_max` in ops.toml: the longest an entry waits for a signed
/// checkpoint to cover it.
pub const LEDGER_CHECKPOINT_SECS_MAX_DEFAULT: u64 = 300;

/// Most bytes of a `.ledger.pub` file (64 hex digits and a newline, with room for whitespace).
pub const LEDGER_PUBLIC_KEY_FILE_BYTES_MAX: u64 = 256;

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Request,
    Approve,
    Deny,
    Grant,
    Read,
    Revoke,
    Expire,
    /// A service region handed the user's data to their home, for an export the user asked for.
    Export,
    /// An operator's key was registered (`sovereign ops register`): who may sign requests.
    RegisterOperator,
    /// An operator's key was revoked: nothing they signed counts from then on.
    RevokeOperator,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Request => "request",
            LedgerKind::Approve => "approve",
            LedgerKind::Deny => "deny",
            LedgerKind::Grant => "grant",
            LedgerKind::Read => "read",
            LedgerKind::Revoke => "revoke",
            LedgerKind::Expire => "expire",
            LedgerKind::Export => "export",
            LedgerKind::RegisterOperator => "register_operator",
            LedgerKind::RevokeOperator => "revoke_operator",
        }
    }
}

/// A region's ledger signing key and how often it checkpoints.
#[derive(Debug)]
pub struct LedgerSigner {
    pub region: String,
    pub key: SigningKey,
    /// A checkpoint is signed in the commit of every this-many-th entry (N).
    pub checkpoint_entries: u32,
    /// And no entry waits longer than this for one (T): the server's timer signs the tail.
    pub checkpoint_secs_max: u64,
    /// Set once the tables are found not to extend the last signed checkpoint: from then on the
    /// region signs nothing more over them, and `/healthz` says why.
    refusal: std::sync::Mutex<Option<String>>,
}

impl LedgerSigner {
    /// Stops all signing over this ledger, saying why (the first reason stays).
    pub fn refuse(&self, why: &str) {
        let mut refusal = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        if refusal.is_none() {
            *refusal = Some(why.to_owned());
        }
    }

    /// Why the region refuses to sign over its ledger, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The bytes an entry's seal covers: the chain hash commits to it and every entry before.
pub fn seal_bytes(region: &str, seq: i64, chain_hash: &[u8]) -> Vec<u8> {
    canonical(
        SEAL_DOMAIN,
        &[region.as_bytes(), &seq.to_be_bytes(), chain_hash],
    )
}

/// The bytes an entry's leaf hash covers.
#[allow(clippy::too_many_arguments)]
pub fn leaf_bytes(
    seq: i64,
    at: UnixMs,
    kind: &str,
    user_id: &str,
    request_id: &str,
    operator: &str,
    detail_hash: &[u8],
) -> Vec<u8> {
    canonical(
        LEAF_DOMAIN,
        &[
            &seq.to_be_bytes(),
            &at.to_be_bytes(),
            kind.as_bytes(),
            user_id.as_bytes(),
            request_id.as_bytes(),
            operator.as_bytes(),
            detail_hash,
        ],
    )
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_bytes(
    region: &str,
    tree_size: i64,
    root: &[u8],
    chain_head: &[u8],
    at: UnixMs,
) -> Vec<u8> {
    canonical(
        CHECKPOINT_DOMAIN,
        &[
            region.as_bytes(),
            &tree_size.to_be_bytes(),
            root,
            chain_head,
            &at.to_be_bytes(),
        ],
    )
}

/// The leaf hash a row should have, from its fields.
pub fn expected_leaf(row: &LedgerRow) -> [u8; 32] {
    leaf_hash(&leaf_bytes(
        row.seq,
        row.at,
        &row.kind,
        &row.user_id,
        &row.request_id,
        &row.operator,
        &row.detail_hash,
    ))
}

/// Why the ledger does not verify: the first entry or checkpoint that fails, by number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerFault {
    #[error("entry {seq}: expected entry number {expected} (entries missing or reordered)")]
    Gap { seq: i64, expected: i64 },
    #[error("entry {seq}: its detail does not match the detail hash")]
    Detail { seq: i64 },
    #[error("entry {seq}: its fields do not match its leaf hash")]
    Leaf { seq: i64 },
    #[error("entry {seq}: its chain hash does not follow entry {previous}")]
    Chain { seq: i64, previous: i64 },
    #[error(
        "entry {seq}: its seal does not verify with the region's public key (rewritten after it was appended)"
    )]
    Seal { seq: i64 },
    #[error("entry {seq}: it has no seal, though entries before it do (its seal was removed)")]
    Unsealed { seq: i64 },
    #[error("checkpoint at {tree_size} entries: {reason}")]
    Checkpoint { tree_size: i64, reason: String },
    #[error(
        "no checkpoint between entries {from} and {to}: checkpoints are at most {max} entries \
         apart (a checkpoint was removed)"
    )]
    CheckpointMissing { from: i64, to: i64, max: i64 },
    #[error("the ledger is not signed with this public key: its checkpoints carry key {found}")]
    WrongKey { found: String },
    #[error(
        "no seal verifies with this public key: it is not this region's ledger key (or every \
         entry was rewritten)"
    )]
    NoSealVerifies,
    #[error(
        "entries {from} to {to} are not covered by a checkpoint and entry {from} is {age_secs} s \
         old, more than the bound of {max_secs} s (checkpoints removed, or the region stopped \
         signing; for an old copy pass the time it was taken)"
    )]
    TailTooOld {
        from: i64,
        to: i64,
        age_secs: i64,
        max_secs: i64,
    },
}

/// The bounds a region keeps between its tail and its last checkpoint, as a verifier checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagBounds {
    /// Most entries between consecutive checkpoints (and after the last): ops.toml's
    /// `ledger_checkpoint_entries`.
    pub entries_max: i64,
    /// Oldest an uncovered entry may be at `now_ms`: ops.toml's `ledger_checkpoint_secs_max`.
    pub secs_max: i64,
    /// The time the data is judged at (now, or when the copy was taken).
    pub now_ms: Option<UnixMs>,
}

impl LagBounds {
    /// No bound: what the server itself checks at start (the bounds are its own to keep).
    pub fn unbounded() -> LagBounds {
        LagBounds {
            entries_max: i64::MAX,
            secs_max: i64::MAX,
            now_ms: None,
        }
    }
}

/// The entries no checkpoint covers yet: not a fault while within the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub from: i64,
    pub to: i64,
    pub oldest_at: UnixMs,
}

/// What a verified ledger holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSummary {
    pub entries: i64,
    pub checkpoints: usize,
    pub root_hex: String,
    /// Entries that carry a seal.
    pub sealed: usize,
    /// The tail after the last checkpoint, if any.
    pub uncovered: Option<Uncovered>,
}

/// Checks every entry (detail hash, leaf hash, chain link) in order, then every checkpoint
/// (signature by `public_key`, root and chain head at its size).
///
/// # Errors
/// The first fault found, naming the entry or checkpoint.
pub fn verify_rows(
    region: &str,
    public_key: &[u8],
    rows: &[LedgerRow],
    checkpoints: &[CheckpointRow],
) -> Result<LedgerSummary, LedgerFault> {
    verify_sealed(
        region,
        public_key,
        rows,
        checkpoints,
        &std::collections::BTreeMap::new(),
        &LagBounds::unbounded(),
    )
}

/// [`verify_rows`] with each entry's seal (`seals`, by entry number) and the region's bounds
/// between checkpoints. An entry must carry a valid seal once any entry before it does (entries
/// from before seals were made have none); checkpoints must be at most `entries_max` apart; and
/// the tail no checkpoint covers is reported, a fault only when older than `secs_max`.
///
/// # Errors
/// The first fault found, naming the entry or checkpoint.
pub fn verify_sealed(
    region: &str,
    public_key: &[u8],
    rows: &[LedgerRow],
    checkpoints: &[CheckpointRow],
    seals: &std::collections::BTreeMap<i64, Vec<u8>>,
    bounds: &LagBounds,
) -> Result<LedgerSummary, LedgerFault> {
    if !checkpoints.is_empty()
        && checkpoints
            .iter()
            .all(|c| c.public_key.as_slice() != public_key)
    {
        return Err(LedgerFault::WrongKey {
            found: hex(&checkpoints[0].public_key),
        });
    }
    // With no checkpoint to name the key, a key under which neither the first nor the last seal
    // holds is not this region's (or everything was rewritten): say that, not "entry 0".
    let holds = |row: &LedgerRow| {
        seals.get(&row.seq).is_some_and(|signature| {
            verify_signature(
                public_key,
                &seal_bytes(region, row.seq, &row.chain_hash),
                signature,
            )
            .is_ok()
        })
    };
    let sealed_rows: Vec<&LedgerRow> = rows.iter().filter(|r| seals.contains_key(&r.seq)).collect();
    if checkpoints.is_empty()
        && let (Some(first), Some(last)) = (sealed_rows.first(), sealed_rows.last())
        && !holds(first)
        && !holds(last)
    {
        return Err(LedgerFault::NoSealVerifies);
    }
    let first_sealed = seals.keys().next().copied();
    let mut sealed = 0usize;
    let mut previous = [0u8; 32];
    let mut leaves = Vec::with_capacity(rows.len());
    let mut heads = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let expected = index as i64;
        if row.seq != expected {
            return Err(LedgerFault::Gap {
                seq: row.seq,
                expected,
            });
        }
        if let Some(detail) = &row.detail
            && digest_sha256(detail.as_bytes()).as_slice() != row.detail_hash.as_slice()
        {
            return Err(LedgerFault::Detail { seq: row.seq });
        }
        let leaf = expected_leaf(row);
        if leaf.as_slice() != row.leaf_hash.as_slice() {
            return Err(LedgerFault::Leaf { seq: row.seq });
        }
        let chain = chain_hash(&previous, &leaf);
        if chain.as_slice() != row.chain_hash.as_slice() {
            return Err(LedgerFault::Chain {
                seq: row.seq,
                previous: row.seq - 1,
            });
        }
        match seals.get(&row.seq) {
            Some(signature) => {
                if verify_signature(public_key, &seal_bytes(region, row.seq, &chain), signature)
                    .is_err()
                {
                    return Err(LedgerFault::Seal { seq: row.seq });
                }
                sealed += 1;
            }
            None if first_sealed.is_some_and(|first| row.seq > first) => {
                return Err(LedgerFault::Unsealed { seq: row.seq });
            }
            None => {}
        }
        previous = chain;
        leaves.push(leaf);
        heads.push(chain);
    }
    // Roots are recomputed with a frontier that advances through the leaves once, so checking
    // every checkpoint costs O(n) hashes in all, not O(n) each.
    let mut ordered: Vec<&CheckpointRow> = checkpoints.iter().collect();
    ordered.sort_by_key(|c| c.tree_size);
    let mut frontier = Vec::new();
    let mut covered = 0usize;
    for checkpoint in ordered.iter().copied() {
        if checkpoint.tree_size - covered as i64 > bounds.entries_max {
            return Err(LedgerFault::CheckpointMissing {
                from: covered as i64,
                to: checkpoint.tree_size,
                max: bounds.entries_max,
            });
        }
        let fault = |reason: &str| LedgerFault::Checkpoint {
            tree_size: checkpoint.tree_size,
            reason: reason.to_owned(),
        };
        if checkpoint.public_key.as_slice() != public_key {
            return Err(fault(
                "signed by a key that is not this region's ledger key",
            ));
        }
        let message = checkpoint_bytes(
            region,
            checkpoint.tree_size,
            &checkpoint.root,
            &checkpoint.chain_head,
            checkpoint.at,
        );
        if verify_signature(public_key, &message, &checkpoint.signature).is_err() {
            return Err(fault("signature does not verify"));
        }
        let size = usize::try_from(checkpoint.tree_size).unwrap_or(usize::MAX);
        if size == 0 || size > leaves.len() {
            return Err(fault("covers entries the ledger does not have"));
        }
        while covered < size {
            frontier_push(&mut frontier, leaves[covered]);
            covered += 1;
        }
        if frontier_root(&frontier).as_slice() != checkpoint.root.as_slice() {
            return Err(fault("Merkle root does not match the entries"));
        }
        if heads[size - 1].as_slice() != checkpoint.chain_head.as_slice() {
            return Err(fault("chain head does not match the entries"));
        }
    }
    let uncovered = rows.get(covered).map(|first| Uncovered {
        from: first.seq,
        to: rows.len() as i64 - 1,
        oldest_at: first.at,
    });
    if let Some(tail) = &uncovered {
        if rows.len() as i64 - covered as i64 > bounds.entries_max {
            return Err(LedgerFault::CheckpointMissing {
                from: covered as i64,
                to: rows.len() as i64,
                max: bounds.entries_max,
            });
        }
        if let Some(now) = bounds.now_ms {
            let age_secs = (now - tail.oldest_at) / 1000;
            if age_secs > bounds.secs_max {
                return Err(LedgerFault::TailTooOld {
                    from: tail.from,
                    to: tail.to,
                    age_secs,
                    max_secs: bounds.secs_max,
                });
            }
        }
    }
    while covered < leaves.len() {
        frontier_push(&mut frontier, leaves[covered]);
        covered += 1;
    }
    Ok(LedgerSummary {
        entries: rows.len() as i64,
        checkpoints: checkpoints.len(),
        root_hex: hex(&frontier_root(&frontier)),
        sealed,
        uncovered,
    })
}

/// The path of a region's ledger signing key (PKCS#8, mode 0600).
pub fn key_path(data_dir: &Path, region: &RegionId) -> std::path::PathBuf {
    data_dir.join("keys").join(format!("{region}.ledger.p8"))
}

/// Checks a region's ledger offline, straight from its store file, against the region's ledger
/// key under `data_dir/keys/`.
///
/// # Errors
/// When the files cannot be read; a ledger that does not verify is `Ok(Err(fault))`.
pub fn verify_file(
    data_dir: &Path,
    region: &RegionId,
) -> anyhow::Result<Result<LedgerSummary, LedgerFault>> {
    verify_store(data_dir, region, None)
}

/// [`verify_file`] for a region whose store may be a PostgreSQL database (`database`, a
/// `postgres://` URL; `None` reads `DIR/regions/<region>/store.sqlite`). It blocks: call it off
/// the async runtime.
///
/// # Errors
/// When the key or the store cannot be read; a ledger that does not verify is `Ok(Err(fault))`.
pub fn verify_store(
    data_dir: &Path,
    region: &RegionId,
    database: Option<&str>,
) -> anyhow::Result<Result<LedgerSummary, LedgerFault>> {
    let key_file = key_path(data_dir, region);
    let pkcs8 = std::fs::read(&key_file)
        .with_context(|| format!("reading the ledger key {}", key_file.display()))?;
    let key = SigningKey::from_pkcs8(&pkcs8)
        .with_context(|| format!("in the ledger key {}", key_file.display()))?;
    verify_store_with(
        data_dir,
        region,
        database,
        &key.public_key(),
        &LagBounds::unbounded(),
    )
}

/// Reads a region's published ledger public key (`<region>.ledger.pub`: 64 hex digits).
///
/// # Errors
/// When the file cannot be read, is too large, or is not one Ed25519 public key in hex.
pub fn read_public_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading the public key {}", path.display()))?
        .len();
    if size > LEDGER_PUBLIC_KEY_FILE_BYTES_MAX {
        anyhow::bail!(
            "{} has {size} bytes: a ledger public key file is 64 hex digits (at most {} bytes)",
            path.display(),
            LEDGER_PUBLIC_KEY_FILE_BYTES_MAX
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    // A binary file (the private PKCS#8 key, say) is "not a public key" too, not a UTF-8 error.
    let key = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| sovereign_crypto::from_hex(text.trim()).ok())
        .filter(|k| k.len() == sovereign_crypto::PUBLIC_KEY_BYTES);
    key.with_context(|| {
        format!(
            "{} is not a ledger public key: expected the 64 hex digits of the region's \
             <region>.ledger.pub (not its private .ledger.p8)",
            path.display()
        )
    })
}

/// Checks a region's ledger from its store (a copy will do) with nothing of the region's but its
/// published public key: entries, seals, checkpoints and the bounds between them.
///
/// # Errors
/// When the store cannot be opened or read (a missing or truncated copy); a ledger that does
/// not verify is `Ok(Err(fault))`.
pub fn verify_store_with(
    data_dir: &Path,
    region: &RegionId,
    database: Option<&str>,
    public_key: &[u8],
    bounds: &LagBounds,
) -> anyhow::Result<Result<LedgerSummary, LedgerFault>> {
    let location = crate::store::region_store_location(data_dir, region, database);
    let conn = crate::store::open_read_only(&location)
        .with_context(|| format!("opening {}", location.display()))?;
    let (rows, checkpoints) =
        load_ledger(&conn).with_context(|| format!("reading {}", location.display()))?;
    let seals = if has_seals(&conn) {
        load_seals(&conn).with_context(|| format!("reading {}", location.display()))?
    } else {
        Default::default()
    };
    Ok(verify_sealed(
        region.as_str(),
        public_key,
        &rows,
        &checkpoints,
        &seals,
        bounds,
    ))
}

/// Whether the store has the seals table (a store from before schema 5 has not).
fn has_seals(conn: &crate::store::db::Connection) -> bool {
    conn.query_row("SELECT count(*) FROM ledger_seals", [], |r| {
        r.get::<_, i64>(0)
    })
    .is_ok()
}

/// Loads the region's ledger key from `DIR/keys/<region>.ledger.p8` (PKCS#8, mode 0600),
/// creating it on first start, and writes its public key beside it (`.ledger.pub`, hex) for
/// anyone who checks checkpoints.
///
/// # Errors
/// When the key file cannot be read or written, is not an Ed25519 key, or is readable by others.
pub fn load_or_create_signer(
    data_dir: &Path,
    region: &RegionId,
    checkpoint_entries: u32,
) -> anyhow::Result<LedgerSigner> {
    use std::os::unix::fs::PermissionsExt;
    let path = key_path(data_dir, region);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pkcs8 = match std::fs::read(&path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "key file {} has mode {:o}; it must be readable by its owner only (chmod 600)",
                    path.display(),
                    mode & 0o777
                );
            }
            zeroize::Zeroizing::new(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pkcs8 = SigningKey::generate_pkcs8()?;
            crate::keys::write_private(&path, &pkcs8)?;
            pkcs8
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading key file {}", path.display()));
        }
    };
    let key = SigningKey::from_pkcs8(&pkcs8).with_context(|| format!("in {}", path.display()))?;
    let public = path.with_extension("pub");
    std::fs::write(&public, format!("{}\n", hex(&key.public_key())))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(LedgerSigner {
        region: region.as_str().to_owned(),
        key,
        checkpoint_entries,
        checkpoint_secs_max: LEDGER_CHECKPOINT_SECS_MAX_DEFAULT,
        refusal: std::sync::Mutex::new(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sovereign_crypto::merkle_root;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    /// A valid ledger of `n` entries with a checkpoint at every entry.
    fn ledger(key: &SigningKey, n: i64) -> (Vec<LedgerRow>, Vec<CheckpointRow>) {
        let mut rows: Vec<LedgerRow> = Vec::new();
        let mut checkpoints = Vec::new();
        let mut previous = [0u8; 32];
        for seq in 0..n {
            let detail = format!("{{\"reason\":\"r{seq}\"}}");
            let mut row = LedgerRow {
                seq,
                at: 1000 + seq,
                kind: "read".into(),
                user_id: "u".into(),
                request_id: "q".into(),
                operator: "ana".into(),
                detail_hash: digest_sha256(detail.as_bytes()).to_vec(),
                detail: Some(detail),
                leaf_hash: Vec::new(),
                chain_hash: Vec::new(),
            };
            let leaf = expected_leaf(&row);
            previous = chain_hash(&previous, &leaf);
            row.leaf_hash = leaf.to_vec();
            row.chain_hash = previous.to_vec();
            rows.push(row);
            let leaves: Vec<[u8; 32]> = rows
                .iter()
                .map(|r| r.leaf_hash.as_slice().try_into().unwrap())
                .collect();
            let root = merkle_root(&leaves);
            let size = seq + 1;
            checkpoints.push(CheckpointRow {
                tree_size: size,
                root: root.to_vec(),
                chain_head: previous.to_vec(),
                at: 5,
                public_key: key.public_key().to_vec(),
                signature: key
                    .sign(&checkpoint_bytes("r1", size, &root, &previous, 5))
                    .to_vec(),
            });
        }
        (rows, checkpoints)
    }

    #[test]
    fn the_ledger_key_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let region = RegionId::parse("in-mumbai").unwrap();
        let first = load_or_create_signer(dir.path(), &region, 16).unwrap();
        let path = key_path(dir.path(), &region);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_signer(dir.path(), &region, 16).unwrap();
        assert_eq!(first.key.public_key(), again.key.public_key());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create_signer(dir.path(), &region, 16).unwrap_err();
        assert!(format!("{error:#}").contains("chmod 600"), "{error:#}");
        std::fs::write(&path, b"garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = load_or_create_signer(dir.path(), &region, 16).unwrap_err();
        assert!(
            format!("{error:#}").contains("not an Ed25519 PKCS#8 key"),
            "{error:#}"
        );
    }

    #[test]
    fn a_good_ledger_verifies() {
        let key = key();
        let (rows, checkpoints) = ledger(&key, 7);
        let summary = verify_rows("r1", &key.public_key(), &rows, &checkpoints).unwrap();
        assert_eq!(summary.entries, 7);
        assert_eq!(summary.checkpoints, 7);
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let key = key();
        let (rows, checkpoints) = ledger(&key, 6);
        let check = |rows: &[LedgerRow], checkpoints: &[CheckpointRow]| {
            verify_rows("r1", &key.public_key(), rows, checkpoints).unwrap_err()
        };

        let mut r = rows.clone();
        r[3].detail = Some("{\"reason\":\"changed\"}".into());
        assert_eq!(check(&r, &checkpoints), LedgerFault::Detail { seq: 3 });

        let mut r = rows.clone();
        r[2].operator = "mallory".into();
        assert_eq!(check(&r, &checkpoints), LedgerFault::Leaf { seq: 2 });

        let mut r = rows.clone();
        r[4].chain_hash[0] ^= 1;
        assert_eq!(
            check(&r, &checkpoints),
            LedgerFault::Chain {
                seq: 4,
                previous: 3
            }
        );

        let mut r = rows.clone();
        r.remove(1);
        assert_eq!(
            check(&r, &checkpoints),
            LedgerFault::Gap {
                seq: 2,
                expected: 1
            }
        );

        // An entry rewritten whole (fields, leaf and chain recomputed from there on) still
        // contradicts the signed checkpoints.
        let (mut forged, _) = ledger(&key, 6);
        forged[5].kind = "approve".into();
        let leaf = expected_leaf(&forged[5]);
        let previous: [u8; 32] = forged[4].chain_hash.as_slice().try_into().unwrap();
        forged[5].leaf_hash = leaf.to_vec();
        forged[5].chain_hash = chain_hash(&previous, &leaf).to_vec();
        assert!(matches!(
            check(&forged, &checkpoints),
            LedgerFault::Checkpoint { tree_size: 6, .. }
        ));

        let mut c = checkpoints.clone();
        c[0].signature[10] ^= 1;
        assert!(matches!(
            check(&rows, &c),
            LedgerFault::Checkpoint { tree_size: 1, .. }
        ));
        let other = self::key();
        let (_, foreign) = ledger(&other, 6);
        assert!(matches!(
            check(&rows, &foreign),
            LedgerFault::WrongKey { .. }
        ));

        // Seals: a rewritten entry's seal fails at that entry; a removed seal is named.
        let seals: std::collections::BTreeMap<i64, Vec<u8>> = rows
            .iter()
            .map(|r| {
                (
                    r.seq,
                    key.sign(&seal_bytes("r1", r.seq, &r.chain_hash)).to_vec(),
                )
            })
            .collect();
        let sealed = |rows: &[LedgerRow], seals, bounds: &LagBounds| {
            verify_sealed("r1", &key.public_key(), rows, &[], seals, bounds)
        };
        let summary = sealed(&rows, &seals, &LagBounds::unbounded()).unwrap();
        assert_eq!(summary.sealed, 6);
        assert_eq!(
            summary.uncovered,
            Some(Uncovered {
                from: 0,
                to: 5,
                oldest_at: 1000
            })
        );
        assert_eq!(
            sealed(&forged, &seals, &LagBounds::unbounded()).unwrap_err(),
            LedgerFault::Seal { seq: 5 }
        );
        let mut fewer = seals.clone();
        fewer.remove(&3);
        assert_eq!(
            sealed(&rows, &fewer, &LagBounds::unbounded()).unwrap_err(),
            LedgerFault::Unsealed { seq: 3 }
        );
        // The bounds: at most 4 entries uncovered, none older than 10 s.
        let bounds = LagBounds {
            entries_max: 4,
            secs_max: 10,
            now_ms: Some(1000 + 10_000),
        };
        assert_eq!(
            sealed(&rows, &seals, &bounds).unwrap_err(),
            LedgerFault::CheckpointMissing {
                from: 0,
                to: 6,
                max: 4
            }
        );
        let bounds = LagBounds {
            entries_max: 6,
            secs_max: 10,
            now_ms: Some(1000 + 11_000),
        };
        assert!(matches!(
            sealed(&rows, &seals, &bounds).unwrap_err(),
            LedgerFault::TailTooOld {
                from: 0,
                to: 5,
                age_secs: 11,
                max_secs: 10
            }
        ));
        let bounds = LagBounds {
            entries_max: 6,
            secs_max: 10,
            now_ms: Some(1000 + 10_999),
        };
        assert!(sealed(&rows, &seals, &bounds).is_ok());
        // Checkpoints further apart than the bound: one was removed.
        let sparse: Vec<CheckpointRow> = checkpoints
            .iter()
            .filter(|c| c.tree_size != 2 && c.tree_size != 3)
            .cloned()
            .collect();
        let bounds = LagBounds {
            entries_max: 2,
            secs_max: 10,
            now_ms: None,
        };
        assert_eq!(
            verify_sealed("r1", &key.public_key(), &rows, &sparse, &seals, &bounds).unwrap_err(),
            LedgerFault::CheckpointMissing {
                from: 1,
                to: 4,
                max: 2
            }
        );

        // Retention's erased details still verify.
        let mut r = rows.clone();
        r[0].detail = None;
        assert!(verify_rows("r1", &key.public_key(), &r, &checkpoints).is_ok());
    }
}
