//! Named crash points for the crash tests: `SOVEREIGN_FAULT=name[,name...]` makes the process
//! end at once, without unwinding or flushing anything (as SIGKILL would), the first time it
//! reaches a point of one of those names. Unset, every point is one read of a cached empty list.
//!
//! A test that kills a process at a random moment rarely lands between two particular
//! commits; these let it stop a process exactly there, at every step of a move, and rerun it.

use std::sync::OnceLock;

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
