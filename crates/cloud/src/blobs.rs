//! Photo bytes live in an object store (`object_store`; the local filesystem by default, any
//! S3-compatible store in production), sealed with the owner's data key before they leave the
//! process. Every blob of a user is under `users/<user id>/`, so deleting an account removes one
//! prefix.
//!
//! A blob is written before the row that points at it commits, and a replaced or erased blob is
//! deleted after the commit that drops its row; a crash, a cancelled request or a failed delete
//! between the two leaves a blob no row points at. [`crate::erasure::sweep_orphan_blobs`] deletes
//! those once they are older than [`crate::erasure::BLOB_ORPHAN_GRACE_MS`], so none outlives it.
//! On the local filesystem a blob (its file and its directories) is fsynced before `put`
//! returns, so a row never commits pointing at bytes a power cut could take back.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, whose files and directories `put` fsyncs.
    local_root: Option<PathBuf>,
}

/// One stored blob, as the orphan sweep sees it.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    pub path: String,
    /// When it was last written, in Unix milliseconds.
    pub modified_ms: i64,
}

impl Blobs {
    /// Blobs in a local directory.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Blobs {
            store: Arc::new(store),
            local_root: Some(std::fs::canonicalize(dir)?),
        })
    }

    pub fn new_path(user_id: &str) -> String {
        format!("users/{user_id}/{}", uuid::Uuid::new_v4())
    }

    /// # Errors
    /// When the object store fails.
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&ObjectPath::from(path), bytes.into())
            .await?;
        if let Some(root) = &self.local_root {
            let root = root.clone();
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || sync_local(&root, &path)).await??;
        }
        Ok(())
    }

    /// Whether a blob exists and was written less than `fresh_ms` ago (by the wall clock, as the
    /// store dates its objects): a copy that finds an older one writes it again, so the orphan
    /// sweep cannot take it between the copy and the commit of its row.
    pub async fn exists_recent(&self, path: &str, fresh_ms: i64) -> bool {
        match self.store.head(&ObjectPath::from(path)).await {
            Ok(meta) => meta.last_modified.timestamp_millis() > wall_clock_ms() - fresh_ms,
            Err(_) => false,
        }
    }

    /// Every blob in the store with the time it was written.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub async fn list(&self) -> anyhow::Result<Vec<BlobMeta>> {
        let mut out = Vec::new();
        let mut listing = self.store.list(None);
        while let Some(item) = listing.next().await {
            let meta = item?;
            out.push(BlobMeta {
                path: meta.location.as_ref().to_owned(),
                modified_ms: meta.last_modified.timestamp_millis(),
            });
        }
        Ok(out)
    }

    /// # Errors
    /// When the object store fails or the blob is missing.
    pub async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let result = self.store.get(&ObjectPath::from(path)).await?;
        Ok(result.bytes().await?.to_vec())
    }

    /// Whether a blob exists.
    pub async fn exists(&self, path: &str) -> bool {
        self.store.head(&ObjectPath::from(path)).await.is_ok()
    }

    /// Deletes a blob; a blob already gone is not an error.
    pub async fn delete(&self, path: &str) {
        match self.store.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, path, "could not delete blob"),
        }
    }

    /// Deletes every blob of a user.
    pub async fn delete_user(&self, user_id: &str) {
        let prefix = ObjectPath::from(format!("users/{user_id}"));
        let mut listing = self.store.list(Some(&prefix));
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) => self.delete(meta.location.as_ref()).await,
                Err(e) => tracing::warn!(error = %e, user_id, "could not list blobs"),
            }
        }
    }
}

/// The wall clock in Unix milliseconds: the clock the object store dates its objects by.
pub fn wall_clock_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Makes a local blob durable: its file, then each directory from its own up to the root (a
/// new user's directory is new too, and its entry lives in its parent).
fn sync_local(root: &std::path::Path, path: &str) -> anyhow::Result<()> {
    let file = root.join(path);
    std::fs::File::open(&file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
