//! Photo bytes live in an object store (`object_store`; the local filesystem by default, any
//! S3-compatible store in production), sealed with the owner's data key before they leave the
//! process. Every blob of a user is under `users/<user id>/`, so deleting an account removes one
//! prefix.

use std::sync::Arc;

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
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
        Ok(())
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
