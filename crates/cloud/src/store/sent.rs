//! What a send without a client id derives its id from.

use super::db::{OptionalExtension, params};
use super::{Store, StoreError};

impl Store {
    /// The id of the user's most recently stored sent message, if any.
    pub async fn latest_sent_id(&self, owner_id: String) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id FROM messages WHERE owner_id = ?1 AND box = 'sent' \
                     ORDER BY seq DESC LIMIT 1",
                    params![owner_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }
}
