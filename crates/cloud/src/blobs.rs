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

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rustix::io::Errno;

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
        // `users/` is made (and its entry made durable) once here, so a put need not fsync the
        // root again.
        let users = dir.join(USERS_DIR);
        if !users.is_dir() {
            std::fs::create_dir_all(&users)?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Blobs {
            store: Arc::new(store),
            local_root: Some(std::fs::canonicalize(dir)?),
        })
    }

    pub fn new_path(user_id: &str) -> String {
        format!("{USERS_DIR}/{user_id}/{}", uuid::Uuid::new_v4())
    }

    /// Copies blobs from another store, as `get` there and `put` here would; returns the bytes
    /// copied. Between two local stores on one filesystem (the one-machine layout) each blob's
    /// file is shared instead, by a hard link: the bytes are the same sealed bytes (a blob is
    /// sealed with its owner's data key, which moves re-wrapped, not re-encrypted), and a blob
    /// is never changed in place, only replaced by a new file or deleted, so neither store can
    /// change the other's copy; deleting one link leaves the other. No byte is written again
    /// and the user's blobs share one thread hop and their directory fsyncs. A link's time is
    /// set to now, as a fresh write's is, for the orphan sweep. A blob already at `path` here,
    /// or one the filesystem will not link, is copied.
    ///
    /// # Errors
    /// When a blob cannot be read at the source or written here.
    pub async fn copy_from(&self, from: &Blobs, paths: Vec<String>) -> anyhow::Result<u64> {
        let mut rest = paths;
        let mut bytes = 0;
        if let (Some(to_root), Some(from_root)) = (&self.local_root, &from.local_root) {
            let (to_root, from_root) = (to_root.clone(), from_root.clone());
            let (linked, unlinked) =
                tokio::task::spawn_blocking(move || link_local(&from_root, &to_root, rest))
                    .await??;
            bytes += linked;
            rest = unlinked;
        }
        for path in rest {
            let sealed = from
                .get(&path)
                .await
                .with_context(|| format!("reading blob {path}"))?;
            bytes += sealed.len() as u64;
            self.put(&path, sealed).await?;
        }
        Ok(bytes)
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

/// The directory under a store's root that holds every user's blobs.
const USERS_DIR: &str = "users";

/// Makes a local blob durable: its file, then each directory from its own up to `users/` (a
/// new user's directory is new too, and its entry lives in its parent; `users/` itself was
/// made durable by [`Blobs::local`]).
fn sync_local(root: &std::path::Path, path: &str) -> anyhow::Result<()> {
    let file = root.join(path);
    std::fs::File::open(&file)?.sync_all()?;
    sync_dirs(root, file.parent())
}

/// Fsyncs `dir` and each directory above it, up to and including `root/users`.
fn sync_dirs(root: &std::path::Path, mut dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let users = root.join(USERS_DIR);
    while let Some(d) = dir {
        if d == root {
            break;
        }
        std::fs::File::open(d)?.sync_all()?;
        if d == users {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Whether a blob path can name a file under a local root as it is: `users/<id>/<id>`, each
/// part made of letters, digits, `-` and `_` (what [`Blobs::new_path`] makes).
fn linkable(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() == 3
        && parts[0] == USERS_DIR
        && parts[1..].iter().all(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// [`Blobs::copy_from`] between two local roots: hard-links each blob it can, fsyncs each
/// linked file and then each directory it linked into, once. Returns the bytes linked and the
/// paths left to copy.
fn link_local(
    from_root: &std::path::Path,
    to_root: &std::path::Path,
    paths: Vec<String>,
) -> anyhow::Result<(u64, Vec<String>)> {
    let mut bytes = 0;
    let mut rest = Vec::new();
    let mut dirs = BTreeSet::new();
    let now = std::time::SystemTime::now();
    for path in paths {
        let (from, to) = (from_root.join(&path), to_root.join(&path));
        if !linkable(&path) || to.symlink_metadata().is_ok() {
            rest.push(path);
            continue;
        }
        let Some(dir) = to.parent() else {
            rest.push(path);
            continue;
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match std::fs::hard_link(&from, &to) {
            Ok(()) => {}
            // Another filesystem, or one without links: copy.
            Err(e)
                if matches!(
                    Errno::from_io_error(&e),
                    Some(Errno::XDEV | Errno::PERM | Errno::MLINK | Errno::OPNOTSUPP)
                ) =>
            {
                rest.push(path);
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("linking blob {path}"));
            }
        }
        let file = std::fs::File::open(&to).with_context(|| format!("opening blob {path}"))?;
        file.set_modified(now)?;
        file.sync_all()?;
        bytes += file.metadata()?.len();
        dirs.insert(dir.to_path_buf());
    }
    for dir in &dirs {
        sync_dirs(to_root, Some(dir))?;
    }
    Ok((bytes, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn two_stores() -> (tempfile::TempDir, Blobs, Blobs) {
        let dir = tempfile::tempdir().unwrap();
        let from = Blobs::local(&dir.path().join("a")).unwrap();
        let to = Blobs::local(&dir.path().join("b")).unwrap();
        (dir, from, to)
    }

    /// On one filesystem a copy shares the file, dated now; deleting the source's leaves the
    /// target's whole, and a blob the target holds already is written again, not linked.
    #[tokio::test]
    async fn copies_between_local_stores_link_the_file() {
        let (dir, from, to) = two_stores();
        let (one, two) = (Blobs::new_path("u-1"), Blobs::new_path("u-1"));
        from.put(&one, b"sealed one".to_vec()).await.unwrap();
        from.put(&two, b"sealed two".to_vec()).await.unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("a").join(&one))
            .unwrap()
            .set_modified(old)
            .unwrap();
        to.put(&two, b"stale copy".to_vec()).await.unwrap();
        let bytes = to
            .copy_from(&from, vec![one.clone(), two.clone()])
            .await
            .unwrap();
        assert_eq!(bytes, 20);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (src, dst) = (
            std::fs::metadata(a.join(&one)).unwrap(),
            std::fs::metadata(b.join(&one)).unwrap(),
        );
        assert_eq!(src.ino(), dst.ino(), "not linked");
        assert!(
            to.exists_recent(&one, 60_000).await,
            "the link keeps the old time"
        );
        assert_ne!(
            std::fs::metadata(a.join(&two)).unwrap().ino(),
            std::fs::metadata(b.join(&two)).unwrap().ino(),
            "a blob already at the target was linked over"
        );
        assert_eq!(to.get(&two).await.unwrap(), b"sealed two");
        from.delete_user("u-1").await;
        assert_eq!(to.get(&one).await.unwrap(), b"sealed one");
        assert_eq!(to.get(&two).await.unwrap(), b"sealed two");
    }

    /// A path that is not one of ours is never joined onto a root: it goes through the object
    /// store, which refuses it, and nothing is written outside the store.
    #[tokio::test]
    async fn odd_paths_are_not_linked() {
        let (dir, from, to) = two_stores();
        for path in [
            "users/../../x",
            "users/u/../../../etc",
            "../a/users/u/b",
            "users//b",
        ] {
            assert!(!linkable(path), "{path}");
            assert!(
                to.copy_from(&from, vec![path.to_owned()]).await.is_err(),
                "{path}"
            );
        }
        assert!(!dir.path().join("x").exists());
        assert!(linkable(&Blobs::new_path(
            "0b0e6f0a-1c7e-4a53-9d2c-3f1e5b7a9c11"
        )));
    }
}
