//! Pushes new messages to the recipient's open WebSockets. Only a hint: the store is the truth,
//! and a client that misses a push catches up from its cursor.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Pushes buffered per user before a slow socket starts missing them (it then re-reads the store).
pub const PUSH_QUEUE_MESSAGES_MAX: usize = 256;

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, broadcast::Sender<i64>>>,
}

impl Hub {
    /// Subscribes to the cursor positions of new messages for `user_id`.
    pub fn subscribe(&self, user_id: &str) -> broadcast::Receiver<i64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, sender| sender.receiver_count() > 0);
        users
            .entry(user_id.to_owned())
            .or_insert_with(|| broadcast::channel(PUSH_QUEUE_MESSAGES_MAX).0)
            .subscribe()
    }

    pub fn notify(&self, user_id: &str, seq: i64) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = users.get(user_id) {
            let _ = sender.send(seq);
        }
    }
}
