//! A region's keys on disk: its key-encryption key and the phone index key, each 32 random bytes
//! in a file readable only by the server's user (mode 0600), created on first start; and its
//! per-scope data keys ([`crate::scope_keys`]), which withdrawals destroy.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sovereign_crypto::{
    DataKey, KEY_BYTES, KeyEncryptionKey, KeyedHasher, MOVE_PUBLIC_KEY_BYTES, SealedForMove,
    random_bytes,
};
use sovereign_model::RegionId;

use crate::domain::{PhoneNumber, UserId};
use crate::scope_keys::ScopeKeys;
use sovereign_model::ConsentScope;

/// The keys one region's handlers hold. There is no way to reach another region's keys from it.
#[derive(Clone)]
pub struct RegionKeys {
    kek: KeyEncryptionKey,
    phone_index: KeyedHasher,
    scopes: ScopeKeys,
}

impl RegionKeys {
    /// Loads the region's keys from `DIR/keys/`, creating any that do not exist yet.
    ///
    /// # Errors
    /// When a key file cannot be read or written, has the wrong length, or is readable by others.
    pub fn load_or_create(data_dir: &Path, region: &RegionId) -> anyhow::Result<RegionKeys> {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
        let kek = load_or_create_key(&dir.join(format!("{region}.kek")))?;
        // The phone index key is the directory's: in one process it is shared by every region,
        // because routing must find a number whichever region it lands in.
        let index = load_or_create_key(&dir.join("phone-index.key"))?;
        Ok(RegionKeys {
            kek: KeyEncryptionKey::from_bytes(&kek)?,
            phone_index: KeyedHasher::new(&index)?,
            scopes: ScopeKeys::open(&dir, region.as_str())?,
        })
    }

    pub fn phone_index(&self, phone: &PhoneNumber) -> [u8; 32] {
        self.phone_index.hash("phone", phone.as_e164().as_bytes())
    }

    /// # Errors
    /// When the random generator fails.
    pub fn wrap(&self, key: &DataKey, user: &UserId) -> anyhow::Result<Vec<u8>> {
        Ok(self.kek.wrap(key, user.as_str().as_bytes())?)
    }

    /// # Errors
    /// When the wrapped key was not wrapped by this region for this user.
    pub fn unwrap(&self, wrapped: &[u8], user: &UserId) -> anyhow::Result<DataKey> {
        Ok(self.kek.unwrap(wrapped, user.as_str().as_bytes())?)
    }

    /// The public key this region publishes for a user moving in: the source seals the user's
    /// data key to it ([`sovereign_crypto::seal_for_move`]).
    ///
    /// # Errors
    /// Never for a loaded key; kept for the derivation's error path.
    pub fn move_public_key(&self, user: &UserId) -> anyhow::Result<[u8; MOVE_PUBLIC_KEY_BYTES]> {
        Ok(sovereign_crypto::move_public_key(
            &self.kek,
            user.as_str().as_bytes(),
        )?)
    }

    /// The user's key for a scope's data, if there is one (see [`crate::scope_keys`]).
    ///
    /// # Errors
    /// When the key store cannot be read.
    pub fn scope_key(&self, user: &UserId, scope: ConsentScope) -> anyhow::Result<Option<DataKey>> {
        self.scopes.get(&self.kek, user, scope)
    }

    /// The user's key for a scope's data, made now if there is none.
    ///
    /// # Errors
    /// When the key store cannot be read or written.
    pub fn scope_key_or_create(
        &self,
        user: &UserId,
        scope: ConsentScope,
    ) -> anyhow::Result<DataKey> {
        self.scopes.get_or_create(&self.kek, user, scope)
    }

    /// Every per-scope key of the user here, for a move.
    ///
    /// # Errors
    /// When the key store cannot be read.
    pub fn scope_keys(&self, user: &UserId) -> anyhow::Result<Vec<(ConsentScope, DataKey)>> {
        self.scopes.all(&self.kek, user)
    }

    /// Installs a per-scope key that arrived with a moving user.
    ///
    /// # Errors
    /// When the key store cannot be written.
    pub fn install_scope_key(
        &self,
        user: &UserId,
        scope: ConsentScope,
        key: &DataKey,
    ) -> anyhow::Result<()> {
        self.scopes.install(&self.kek, user, scope, key)
    }

    /// Destroys the user's key for a scope: what it sealed never opens again.
    ///
    /// # Errors
    /// When the key file cannot be removed.
    pub fn destroy_scope_key(&self, user: &UserId, scope: ConsentScope) -> anyhow::Result<()> {
        self.scopes.destroy(user, scope)
    }

    /// Destroys every per-scope key of the user; a failure is logged (the data it sealed is
    /// erased anyway).
    pub fn destroy_scope_keys(&self, user: &UserId) {
        if let Err(error) = self.scopes.destroy_user(user) {
            tracing::warn!(%error, user_id = %user, "could not destroy per-scope keys");
        }
    }

    /// See [`ScopeKeys::list`].
    ///
    /// # Errors
    /// When the key store cannot be listed.
    pub fn list_scope_keys(&self) -> anyhow::Result<Vec<(UserId, ConsentScope, i64)>> {
        self.scopes.list()
    }

    /// See [`ScopeKeys::write_guard`].
    pub fn scope_guard(&self, user: &UserId) -> std::sync::Arc<tokio::sync::RwLock<()>> {
        self.scopes.write_guard(user)
    }

    /// See [`ScopeKeys::write_guards_shared`].
    pub async fn scope_guards_shared(
        &self,
        users: &[&UserId],
    ) -> Vec<tokio::sync::OwnedRwLockReadGuard<()>> {
        self.scopes.write_guards_shared(users).await
    }

    /// Opens a data key a source region sealed to [`RegionKeys::move_public_key`].
    ///
    /// # Errors
    /// When it was sealed for another region or user, or tampered with.
    pub fn open_move(&self, sealed: &SealedForMove, user: &UserId) -> anyhow::Result<DataKey> {
        Ok(self.kek.open_move(sealed, user.as_str().as_bytes())?)
    }
}

fn load_or_create_key(path: &PathBuf) -> anyhow::Result<[u8; KEY_BYTES]> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "key file {} has mode {:o}; it must be readable by its owner only (chmod 600)",
                    path.display(),
                    mode & 0o777
                );
            }
            bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "key file {} has {} bytes, expected {KEY_BYTES}",
                    path.display(),
                    bytes.len()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; KEY_BYTES] = random_bytes()?;
            write_private(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading key file {}", path.display())),
    }
}

/// Writes a file readable by its owner only, atomically: it either appears whole or not at all.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
