//! Sending one-time codes by SMS. The service talks to an [`SmsGateway`]; the local one appends a
//! JSON line per message to `DIR/sms-outbox.jsonl`, where a developer (or a test) reads the code.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;

pub trait SmsGateway: Send + Sync {
    /// # Errors
    /// When the message could not be handed to the gateway.
    fn send(&self, to: &str, code: &str, text: &str) -> anyhow::Result<()>;
}

/// The local gateway: a file outbox, one JSON object per line.
pub struct FileOutbox {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileOutbox {
    pub fn new(path: PathBuf) -> FileOutbox {
        FileOutbox {
            path,
            lock: Mutex::new(()),
        }
    }
}

impl SmsGateway for FileOutbox {
    fn send(&self, to: &str, code: &str, text: &str) -> anyhow::Result<()> {
        let line = serde_json::json!({ "to": to, "code": code, "text": text }).to_string() + "\n";
        // One writer at a time, one write per line: lines never interleave.
        let _guard = self
            .lock
            .lock()
            .map_err(|_| anyhow::anyhow!("outbox lock poisoned"))?;
        // The outbox holds sign-in codes: readable by the server's user only, like a key file.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        // One made before (or by someone else) with a wider mode is narrowed.
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}
