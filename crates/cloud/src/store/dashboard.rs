//! What the privacy dashboard needs beyond the API's operations.

use super::db::params;

use super::{Store, StoreError};

impl Store {
    /// Ends one session (signing out of the dashboard).
    pub async fn end_session(&self, token_digest: [u8; 32]) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE token_digest = ?1",
                params![token_digest],
            )?;
            Ok(())
        })
        .await
    }
}
