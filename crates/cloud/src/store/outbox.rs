//! The consent outbox (schema_v6_consent_outbox.sql): which users' consent changes the regions
//! holding their services may not have applied yet.

use super::db::params;
use super::{Store, StoreError};

impl Store {
    /// Up to `limit` users after `after` (a user id; empty for the first) with consent changes
    /// not confirmed everywhere, in user id order, with the history length each must be
    /// brought to.
    pub async fn consent_outbox_due(
        &self,
        after: String,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT user_id, version FROM consent_outbox WHERE user_id > ?1 \
                 ORDER BY user_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Every region holding one of the user's services has applied their consents as of
    /// `version` (the history's length when they were read): the row goes unless a newer
    /// change has raised it meanwhile.
    pub async fn consent_outbox_done(
        &self,
        user_id: String,
        version: i64,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM consent_outbox WHERE user_id = ?1 AND version <= ?2",
                params![user_id, version],
            )?;
            Ok(())
        })
        .await
    }
}
