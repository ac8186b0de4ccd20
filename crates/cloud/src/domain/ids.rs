use std::fmt;

use crate::error::ApiError;

/// Longest client-chosen backup item id.
pub const ITEM_ID_BYTES_MAX: usize = 128;

/// A user's identity: a random UUID, never derived from anything about them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn random() -> UserId {
        UserId(uuid::Uuid::new_v4().to_string())
    }

    /// For ids read back from our own store.
    pub fn from_stored(id: String) -> UserId {
        UserId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message's identity, shared by the sender's and the recipient's copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    pub fn random() -> MessageId {
        MessageId(uuid::Uuid::new_v4().to_string())
    }

    pub fn from_uuid(id: uuid::Uuid) -> MessageId {
        MessageId(id.to_string())
    }

    /// # Errors
    /// When `id` is not a UUID.
    pub fn parse(id: &str) -> Result<MessageId, ApiError> {
        uuid::Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
        Ok(MessageId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A backup item's id, chosen by the client so that puts are idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemId(String);

impl ItemId {
    /// # Errors
    /// When the id is empty, longer than [`ITEM_ID_BYTES_MAX`], or has characters outside
    /// `A-Z a-z 0-9 . _ -`.
    pub fn parse(id: &str) -> Result<ItemId, ApiError> {
        let valid = !id.is_empty()
            && id.len() <= ITEM_ID_BYTES_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(ItemId(id.to_owned()))
        } else {
            Err(ApiError::invalid(
                "id",
                format!("must be 1 to {ITEM_ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ -"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
