//! Pushes new messages to the recipient's open WebSockets, tells sockets when their session
//! ended, and counts each user's open sockets. A push is only a hint: the store is the truth,
//! and a client that misses a push catches up from its cursor. A session's end is also checked
//! by every socket on its own timer, so a missed notice only delays the close.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::state::AppState;

/// Pushes buffered per user before a slow socket starts missing them (it then re-reads the store).
pub const PUSH_QUEUE_MESSAGES_MAX: usize = 256;
/// Open WebSockets one user may hold in one region; one more is refused with `429`.
pub const WS_SOCKETS_PER_USER_MAX: usize = 8;

/// What a user's sockets are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// A message was stored at this cursor position.
    Message(i64),
    /// The session with this id ended (revoked, signed out or deleted).
    SessionEnded(String),
}

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, broadcast::Sender<HubEvent>>>,
    sockets: Mutex<HashMap<String, usize>>,
}

impl Hub {
    /// Subscribes to the events for `user_id`'s sockets.
    pub fn subscribe(&self, user_id: &str) -> broadcast::Receiver<HubEvent> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, sender| sender.receiver_count() > 0);
        users
            .entry(user_id.to_owned())
            .or_insert_with(|| broadcast::channel(PUSH_QUEUE_MESSAGES_MAX).0)
            .subscribe()
    }

    fn send(&self, user_id: &str, event: HubEvent) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = users.get(user_id) {
            let _ = sender.send(event);
        }
    }

    pub fn notify(&self, user_id: &str, seq: i64) {
        self.send(user_id, HubEvent::Message(seq));
    }

    /// Tells the sockets of `user_id` opened with session `session_id` to close.
    pub fn end_session(&self, user_id: &str, session_id: &str) {
        self.send(user_id, HubEvent::SessionEnded(session_id.to_owned()));
    }

    fn open(&self, user_id: &str) -> bool {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let open = sockets.entry(user_id.to_owned()).or_insert(0);
        if *open >= WS_SOCKETS_PER_USER_MAX {
            return false;
        }
        *open += 1;
        true
    }

    fn close(&self, user_id: &str) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = sockets.get_mut(user_id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sockets.remove(user_id);
            }
        }
    }
}

/// One open WebSocket, counted against its user's cap and in the metrics until dropped.
pub struct SocketPermit {
    state: AppState,
    user_id: String,
}

impl SocketPermit {
    /// A permit for one more socket of `user_id`; `None` when the user has
    /// [`WS_SOCKETS_PER_USER_MAX`] open already.
    pub fn acquire(state: &AppState, user_id: &str) -> Option<SocketPermit> {
        if !state.hub.open(user_id) {
            state.metrics.websockets_refused.inc();
            return None;
        }
        state.metrics.websockets_open.inc();
        Some(SocketPermit {
            state: state.clone(),
            user_id: user_id.to_owned(),
        })
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.state.hub.close(&self.user_id);
        self.state.metrics.websockets_open.dec();
    }
}
