use serde::{Deserialize, Serialize};
use sovereign_model::ConsentScope;

use crate::error::ApiError;

pub const CONTACT_NAME_CHARS_MAX: usize = 256;
pub const CONTACT_PHONES_MAX: usize = 16;
pub const SMS_TEXT_BYTES_MAX: usize = 16 * 1024;
pub const SMS_ADDRESS_BYTES_MAX: usize = 64;

/// The three things a phone backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackupKind {
    Contacts,
    Sms,
    Photos,
}

impl BackupKind {
    pub const ALL: [BackupKind; 3] = [BackupKind::Contacts, BackupKind::Sms, BackupKind::Photos];

    /// # Errors
    /// [`ApiError::NotFound`] for anything else, as for an unknown path.
    pub fn parse(name: &str) -> Result<BackupKind, ApiError> {
        match name {
            "contacts" => Ok(BackupKind::Contacts),
            "sms" => Ok(BackupKind::Sms),
            "photos" => Ok(BackupKind::Photos),
            _ => Err(ApiError::NotFound),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Contacts => "contacts",
            BackupKind::Sms => "sms",
            BackupKind::Photos => "photos",
        }
    }

    pub fn scope(self) -> ConsentScope {
        match self {
            BackupKind::Contacts => ConsentScope::BackupContacts,
            BackupKind::Sms => ConsentScope::BackupSms,
            BackupKind::Photos => ConsentScope::BackupPhotos,
        }
    }
}

/// A backed-up contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRecord {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<String>,
}

/// A backed-up SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRecord {
    /// The other party's number or short code, as the phone shows it.
    pub address: String,
    pub text: String,
    /// "inbox" or "sent".
    pub direction: String,
    /// When the phone sent or received it, RFC 3339.
    pub at: String,
}

impl ContactRecord {
    /// # Errors
    /// When a field is empty or over its limit.
    pub fn check(&self) -> Result<(), ApiError> {
        let name_chars = self.name.chars().count();
        if name_chars == 0 || name_chars > CONTACT_NAME_CHARS_MAX {
            return Err(ApiError::invalid(
                "name",
                format!("must be 1 to {CONTACT_NAME_CHARS_MAX} characters"),
            ));
        }
        if self.phones.len() > CONTACT_PHONES_MAX {
            return Err(ApiError::invalid(
                "phones",
                format!("at most {CONTACT_PHONES_MAX} numbers"),
            ));
        }
        if self
            .phones
            .iter()
            .any(|p| p.is_empty() || p.len() > SMS_ADDRESS_BYTES_MAX)
        {
            return Err(ApiError::invalid(
                "phones",
                format!("each number must be 1 to {SMS_ADDRESS_BYTES_MAX} bytes"),
            ));
        }
        Ok(())
    }
}

impl SmsRecord {
    /// # Errors
    /// When a field is empty, over its limit, or `at` is not RFC 3339.
    pub fn check(&self) -> Result<(), ApiError> {
        if self.address.is_empty() || self.address.len() > SMS_ADDRESS_BYTES_MAX {
            return Err(ApiError::invalid(
                "address",
                format!("must be 1 to {SMS_ADDRESS_BYTES_MAX} bytes"),
            ));
        }
        if self.text.len() > SMS_TEXT_BYTES_MAX {
            return Err(ApiError::invalid(
                "text",
                format!("at most {SMS_TEXT_BYTES_MAX} bytes"),
            ));
        }
        if !matches!(self.direction.as_str(), "inbox" | "sent") {
            return Err(ApiError::invalid(
                "direction",
                "must be \"inbox\" or \"sent\"",
            ));
        }
        if chrono::DateTime::parse_from_rfc3339(&self.at).is_err() {
            return Err(ApiError::invalid("at", "must be an RFC 3339 timestamp"));
        }
        Ok(())
    }
}
