//! Named points where a test can make a multi-step operation stop half-way, as a crash there
//! would, to prove the operation is finished or retried correctly afterwards.
//!
//! Nothing is armed unless a test arms it. Two ways:
//! - **The whole process**: `SOVEREIGN_FAULT=name[,name...]` makes it end at once, without
//!   unwinding or flushing anything (as SIGKILL would), the first time it reaches a point of
//!   one of those names ([`point`]). Unset, every point is one read of a cached empty list. A
//!   test that kills a process at a random moment rarely lands between two particular commits;
//!   these let it stop `sovereign migrate` or `sovereign serve` exactly there, at every step of
//!   a move, and rerun it.
//! - **One request**, in-process: [`Faults::arm`] makes the next pass through a point fail
//!   that request ([`Faults::check`], which also honours `SOVEREIGN_FAULT`); it fires once and
//!   disarms.

use std::sync::{Mutex, OnceLock};

use crate::error::ApiError;

/// The environment variable that names the points to stop at.
pub const FAULT_ENV: &str = "SOVEREIGN_FAULT";

fn points() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(FAULT_ENV)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Ends the process here if `name` is one of the points [`FAULT_ENV`] names.
pub fn point(name: &str) {
    if points().iter().any(|p| p == name) {
        eprintln!("{FAULT_ENV}: stopping at {name}");
        std::process::abort();
    }
}

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
        // The same name also stops the whole process under `SOVEREIGN_FAULT` (see [`point`]),
        // for tests that kill a `sovereign serve` there.
        self::point(point);
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
