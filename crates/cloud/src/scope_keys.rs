//! Per-scope data keys: one random key per user per consent scope that stores data (messages,
//! contacts, SMS, photos), which seals that scope's records and blobs, and which a withdrawal
//! destroys.
//!
//! The keys live in the region's key store, `DIR/keys/<region>.scopes/<user>/<scope>.key`, each
//! wrapped by the region's key-encryption key and bound to its user and scope, and never in the
//! region's database or data directory (`DIR/regions/<region>/`). So a copy of yesterday's data
//! directory (a backup, a disk image) cannot open a scope's rows and blobs once the scope is
//! withdrawn, even together with today's key files: the key that sealed them is gone from the
//! key store. (A copy of yesterday's key store together with yesterday's data still opens it:
//! keep the two apart; see ARCHITECTURE.md.)
//!
//! Writers of a scope's data hold the user's [`ScopeKeys::write_guard`] shared from taking the
//! key to the commit of their row; a withdrawal (or a move, or the stale-key sweep) holds it
//! exclusively from its commit to the key's destruction, so no row is ever committed sealed
//! with a key that is about to go. The guards are per user, in [`SCOPE_GUARD_SHARDS`] shards:
//! one user's withdrawal holds up only the writes of users in the same shard.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use sovereign_crypto::{DataKey, KeyEncryptionKey};
use sovereign_model::ConsentScope;

use crate::domain::UserId;

/// The scopes whose data is sealed with a key of their own.
pub const KEYED_SCOPES: [ConsentScope; 4] = [
    ConsentScope::Messaging,
    ConsentScope::BackupContacts,
    ConsentScope::BackupSms,
    ConsentScope::BackupPhotos,
];

/// How many guards a region's users share (by a hash of the user id).
pub const SCOPE_GUARD_SHARDS: usize = 256;

/// A region's per-scope keys on disk.
#[derive(Clone)]
pub struct ScopeKeys {
    dir: PathBuf,
    locks: Arc<[Arc<tokio::sync::RwLock<()>>]>,
}

fn shard(user: &UserId) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    (hasher.hash_one(user.as_str()) % SCOPE_GUARD_SHARDS as u64) as usize
}

fn owner(user: &UserId, scope: ConsentScope) -> Vec<u8> {
    format!("scope-key/{user}/{}", scope.as_str()).into_bytes()
}

/// A user id is a file name here: only the characters our ids (UUIDs) are made of.
fn user_dir_name(user: &UserId) -> anyhow::Result<&str> {
    let id = user.as_str();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        bail!("user id {id:?} cannot name a key directory");
    }
    Ok(id)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

impl ScopeKeys {
    /// The key store of `region` under `keys_dir` (`DIR/keys`), created if missing.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(keys_dir: &Path, region: &str) -> anyhow::Result<ScopeKeys> {
        let dir = keys_dir.join(format!("{region}.scopes"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScopeKeys {
            dir,
            locks: (0..SCOPE_GUARD_SHARDS)
                .map(|_| Arc::new(tokio::sync::RwLock::new(())))
                .collect(),
        })
    }

    /// The user's guard: shared by writers of their scoped data (taken before the key, held to
    /// the commit), exclusive for a withdrawal (from its commit to the key's destruction).
    pub fn write_guard(&self, user: &UserId) -> Arc<tokio::sync::RwLock<()>> {
        Arc::clone(&self.locks[shard(user)])
    }

    /// The guards of several users (a message's sender and recipient) held shared, taken in
    /// one order (by shard, each once) so that two such holds never wait for each other.
    pub async fn write_guards_shared(
        &self,
        users: &[&UserId],
    ) -> Vec<tokio::sync::OwnedRwLockReadGuard<()>> {
        let mut shards: Vec<usize> = users.iter().map(|u| shard(u)).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut held = Vec::with_capacity(shards.len());
        for i in shards {
            held.push(Arc::clone(&self.locks[i]).read_owned().await);
        }
        held
    }

    fn path(&self, user: &UserId, scope: ConsentScope) -> anyhow::Result<PathBuf> {
        Ok(self
            .dir
            .join(user_dir_name(user)?)
            .join(format!("{}.key", scope.as_str())))
    }

    /// The user's key for `scope`, if there is one.
    ///
    /// # Errors
    /// When the key file cannot be read or was not wrapped by this region for this user and
    /// scope.
    pub fn get(
        &self,
        kek: &KeyEncryptionKey,
        user: &UserId,
        scope: ConsentScope,
    ) -> anyhow::Result<Option<DataKey>> {
        let path = self.path(user, scope)?;
        match std::fs::read(&path) {
            Ok(wrapped) => Ok(Some(
                kek.unwrap(&wrapped, &owner(user, scope))
                    .with_context(|| format!("opening {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The user's key for `scope`, made now if there is none. Two callers making it at once
    /// get the same key: the file is created by a link that fails if it exists.
    ///
    /// # Errors
    /// When the key store cannot be read or written.
    pub fn get_or_create(
        &self,
        kek: &KeyEncryptionKey,
        user: &UserId,
        scope: ConsentScope,
    ) -> anyhow::Result<DataKey> {
        if let Some(key) = self.get(kek, user, scope)? {
            return Ok(key);
        }
        let key = DataKey::generate()?;
        let path = self.path(user, scope)?;
        let tmp = self.write_tmp(kek, user, scope, &key)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(path.parent().unwrap_or(&self.dir))?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self
                .get(kek, user, scope)?
                .context("a scope key vanished while it was being made"),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// Writes `key` wrapped to a fresh temporary file beside its final place, fsynced.
    fn write_tmp(
        &self,
        kek: &KeyEncryptionKey,
        user: &UserId,
        scope: ConsentScope,
        key: &DataKey,
    ) -> anyhow::Result<PathBuf> {
        let path = self.path(user, scope)?;
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            sync_dir(&self.dir)?;
        }
        let tmp = dir.join(format!(
            "{}.{}.tmp",
            scope.as_str(),
            uuid::Uuid::new_v4().simple()
        ));
        let wrapped = kek.wrap(key, &owner(user, scope))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&wrapped)?;
        file.sync_all()?;
        Ok(tmp)
    }

    /// Installs a key that arrived with a moving user, replacing any this region had.
    ///
    /// # Errors
    /// When the key store cannot be written.
    pub fn install(
        &self,
        kek: &KeyEncryptionKey,
        user: &UserId,
        scope: ConsentScope,
        key: &DataKey,
    ) -> anyhow::Result<()> {
        let path = self.path(user, scope)?;
        let tmp = self.write_tmp(kek, user, scope, key)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        sync_dir(path.parent().unwrap_or(&self.dir))
    }

    /// Every key the user has here.
    ///
    /// # Errors
    /// When a key file cannot be read or opened.
    pub fn all(
        &self,
        kek: &KeyEncryptionKey,
        user: &UserId,
    ) -> anyhow::Result<Vec<(ConsentScope, DataKey)>> {
        let mut out = Vec::new();
        for scope in KEYED_SCOPES {
            if let Some(key) = self.get(kek, user, scope)? {
                out.push((scope, key));
            }
        }
        Ok(out)
    }

    /// Destroys the user's key for `scope`: after this, nothing sealed with it opens. A key
    /// already gone is not an error.
    ///
    /// # Errors
    /// When the file cannot be removed.
    pub fn destroy(&self, user: &UserId, scope: ConsentScope) -> anyhow::Result<()> {
        let path = self.path(user, scope)?;
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Every key file in the store: whose, for which scope, and when it was written (Unix
    /// milliseconds, wall clock). Files that are not keys (a crashed write's temporary) are
    /// listed under no scope and left alone.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn list(&self) -> anyhow::Result<Vec<(UserId, ConsentScope, i64)>> {
        let mut out = Vec::new();
        for user_dir in std::fs::read_dir(&self.dir)? {
            let user_dir = user_dir?;
            if !user_dir.file_type()?.is_dir() {
                continue;
            }
            let user = UserId::from_stored(user_dir.file_name().to_string_lossy().into_owned());
            for file in std::fs::read_dir(user_dir.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let Some(scope) = name
                    .strip_suffix(".key")
                    .and_then(ConsentScope::parse)
                    .filter(|s| KEYED_SCOPES.contains(s))
                else {
                    continue;
                };
                let modified = file.metadata()?.modified()?;
                let ms = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                out.push((user.clone(), scope, ms));
            }
        }
        Ok(out)
    }

    /// Destroys every key of the user (their account was deleted, or moved away).
    ///
    /// # Errors
    /// When the directory cannot be removed.
    pub fn destroy_user(&self, user: &UserId) -> anyhow::Result<()> {
        let dir = self.dir.join(user_dir_name(user)?);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One user's withdrawal (the guard held exclusively) holds up no write of a user in
    /// another shard, and a hold of two users' guards takes a shared shard once.
    #[tokio::test]
    async fn a_withdrawal_holds_up_only_its_own_users_writes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ScopeKeys::open(dir.path(), "in-mumbai").unwrap();
        let alice = UserId::from_stored("alice".to_owned());
        let other = (0..)
            .map(|i| UserId::from_stored(format!("user-{i}")))
            .find(|u| shard(u) != shard(&alice))
            .unwrap();
        let twin = (0..)
            .map(|i| UserId::from_stored(format!("twin-{i}")))
            .find(|u| shard(u) == shard(&alice))
            .unwrap();
        let guard = keys.write_guard(&alice);
        let withdrawing = guard.write().await;
        assert!(keys.write_guard(&other).try_read().is_ok());
        assert!(keys.write_guard(&twin).try_read().is_err());
        drop(withdrawing);
        let both = keys.write_guards_shared(&[&alice, &twin, &other]).await;
        assert_eq!(both.len(), 2);
        assert!(keys.write_guard(&alice).try_write().is_err());
        drop(both);
        assert!(keys.write_guard(&alice).try_write().is_ok());
    }
}
