//! The queries behind what a region believes of another (see [`crate::placement`]): where a
//! token that left with its user went, whether a forwarded message's id is already taken, and
//! the ledger entry a service region writes when it hands a user's data to their home.

use super::db::{OptionalExtension, params};
use super::{MessageRow, NewLedgerEntry, Store, StoreError, append_ledger};
use crate::clock::UnixMs;
use crate::ledger::{LedgerKind, LedgerSigner};

impl Store {
    /// The user a token belonged to when they moved away from here, and where they went.
    pub async fn moved_token_owner(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT t.user_id, m.region FROM moved_tokens t JOIN moved_users m \
                     ON m.user_id = t.user_id WHERE t.token_digest = ?1 AND t.expires_at > ?2",
                    params![token_digest, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
        .await
    }

    /// The user's copy of message `id` in `box_name`, if there is one.
    pub async fn message_copy(
        &self,
        owner_id: String,
        box_name: &'static str,
        id: String,
    ) -> Result<Option<MessageRow>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT box_seq, id, box, peer_sealed, body_sealed, created_at, delivered_at \
                     FROM messages WHERE owner_id = ?1 AND box = ?2 AND id = ?3",
                    params![owner_id, box_name, id],
                    |r| {
                        Ok(MessageRow {
                            seq: r.get(0)?,
                            id: r.get(1)?,
                            box_name: r.get(2)?,
                            peer_sealed: r.get(3)?,
                            body_sealed: r.get(4)?,
                            created_at: r.get(5)?,
                            delivered_at: r.get(6)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Records in this region's ledger that the user's data held here left for `to` (their
    /// home, for an export the user asked for); committed before the data is sent. The entry's
    /// request id is `export-{export_id}`: the pages of that export are handed over on its
    /// strength (see [`Store::export_begun`]).
    pub async fn ledger_export(
        &self,
        signer: std::sync::Arc<LedgerSigner>,
        user_id: String,
        to: String,
        export_id: String,
        detail: String,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let request_id = format!("export-{export_id}");
            let operator = format!("region:{to}");
            append_ledger(
                conn,
                &signer,
                &NewLedgerEntry {
                    kind: LedgerKind::Export,
                    user_id: &user_id,
                    request_id: &request_id,
                    operator: &operator,
                    detail,
                    at: now,
                },
            )?;
            Ok(())
        })
        .await
    }

    /// Whether an export `export_id` of the user to `to` was written in this region's ledger
    /// at or after `since`: the condition for handing over one of its pages.
    pub async fn export_begun(
        &self,
        user_id: String,
        to: String,
        export_id: String,
        since: UnixMs,
    ) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT 1 FROM ledger_entries WHERE user_id = ?1 AND kind = 'export' \
                     AND request_id = ?2 AND operator = ?3 AND at >= ?4",
                    params![
                        user_id,
                        format!("export-{export_id}"),
                        format!("region:{to}"),
                        since
                    ],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }
}
