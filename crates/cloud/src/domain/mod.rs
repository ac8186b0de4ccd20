//! Validated values. Each is parsed once, at the edge, and trusted everywhere after.

mod backup;
mod ids;
mod phone;
mod service;

pub use backup::{BackupKind, ContactRecord, SmsRecord};
pub use ids::{ItemId, MessageId, UserId};
pub use phone::PhoneNumber;
pub use service::Service;

use crate::error::ApiError;

/// Shortest password we accept; NIST SP 800-63B's minimum for user-chosen secrets.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longest password we hash; Argon2 time grows with input and nobody types more.
pub const PASSWORD_BYTES_MAX: usize = 1024;
pub const DEVICE_NAME_CHARS_MAX: usize = 64;
pub const MESSAGE_BODY_BYTES_MAX: usize = 4096;

/// # Errors
/// When the password is too short or too long.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {PASSWORD_CHARS_MIN} characters"),
        ));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {PASSWORD_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// # Errors
/// When the device name is empty, too long or has control characters.
pub fn check_device_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars == 0 || chars > DEVICE_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "device_name",
            format!("must be 1 to {DEVICE_NAME_CHARS_MAX} printable characters"),
        ));
    }
    Ok(())
}

/// # Errors
/// When the body is empty or longer than [`MESSAGE_BODY_BYTES_MAX`].
pub fn check_message_body(body: &str) -> Result<(), ApiError> {
    if body.is_empty() || body.len() > MESSAGE_BODY_BYTES_MAX {
        return Err(ApiError::invalid(
            "body",
            format!("must be 1 to {MESSAGE_BODY_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}
