//! Named points where a test can make the server stop a multi-step operation half-way, as a
//! crash there would, to prove the operation is finished or retried correctly afterwards.
//!
//! Nothing is armed unless a test arms it; an armed point fires once and disarms. In-process
//! tests arm a point here (the request fails there); process tests name it in `SOVEREIGN_FAULT`
//! (the process aborts there).

use std::sync::Mutex;

use crate::error::ApiError;

/// Account deletion: after the key is destroyed (step one).
pub const DELETE_AFTER_SHRED: &str = "delete:after-shred";
/// Account deletion: after the blobs are deleted.
pub const DELETE_AFTER_BLOBS: &str = "delete:after-blobs";
/// Account deletion: after the directory entry is removed, before the rows are purged.
pub const DELETE_AFTER_DIRECTORY: &str = "delete:after-directory";
/// A send to another region: after that region stored the recipient's copy, before the
/// sender's copy is stored here (as a lost answer or a crash there would leave it).
pub const SEND_AFTER_FORWARD: &str = "send:after-forward";
/// An export: after a page was written to the client (the response must be cut, not closed).
pub const EXPORT_AFTER_PAGE: &str = "export:after-page";

#[derive(Default)]
pub struct Faults {
    armed: Mutex<Option<String>>,
}

impl Faults {
    /// Makes the next pass through `point` fail.
    pub fn arm(&self, point: &str) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(point.to_owned());
    }

    /// # Errors
    /// [`ApiError::Internal`] when `point` is armed (which disarms it).
    pub fn check(&self, point: &str) -> Result<(), ApiError> {
        // The same name also stops the whole process under `SOVEREIGN_FAULT` (see
        // [`crate::fault`]), for tests that kill a `sovereign serve` there.
        crate::fault::point(point);
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if armed.as_deref() == Some(point) {
            *armed = None;
            return Err(ApiError::Internal(anyhow::anyhow!(
                "fault injected at {point}"
            )));
        }
        Ok(())
    }
}
