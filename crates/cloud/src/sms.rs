//! Sending one-time codes by SMS. The service talks to an [`SmsGateway`]; the local one appends a
//! JSON line per message to `DIR/sms-outbox.jsonl`, where a developer (or a test) reads the code.

use std::io::Write;
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
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}
