//! Cloud messaging: store-and-forward between users who both opted in, pushed over WebSocket
//! with polling as the fallback, acknowledged by the recipient.

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sovereign_model::ConsentScope;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339;
use crate::domain::{MessageId, PhoneNumber, Service, UserId, check_message_body};
use crate::error::ApiError;
use crate::extract::{AuthUser, StrictJson, aad};
use crate::hub::{HubEvent, SocketPermit};
use crate::state::AppState;
use crate::store::{MessageCopy, MessageRow, PAGE_ROWS_MAX};

/// How far a forwarded message's `sent_at_ms` may be from our clock: the sending site stamps
/// it, so it cannot date a message into the past or future beyond this.
pub const FORWARDED_SENT_AT_SKEW_MS_MAX: i64 = 5 * 60 * 1000;

const DAY_MS: i64 = 86_400_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(send).get(list))
        .route("/v1/messages/{id}/ack", post(ack))
        .route("/v1/messages/ws", get(socket))
        .route(FORWARD_PATH, post(receive_forwarded))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The recipient's phone number, international format.
    to: String,
    body: String,
    /// A UUID the client picks so that retrying the same send stores the message once.
    /// Omitted: the server picks one.
    id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SendResponse {
    id: String,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct MessageView {
    id: String,
    /// "inbox" or "sent".
    #[serde(rename = "box")]
    box_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    body: String,
    sent_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    /// Position in the owner's mailbox, for `after=`.
    cursor: String,
}

fn seal_copy(
    key: &sovereign_crypto::DataKey,
    owner: &UserId,
    box_name: &str,
    id: &MessageId,
    peer: &str,
    body: &str,
) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let record = format!("{box_name}:{}", id.as_str());
    let peer = key.seal(&aad("messages", owner, &record, "peer"), peer.as_bytes());
    let body = key.seal(&aad("messages", owner, &record, "body"), body.as_bytes());
    Ok((
        peer.map_err(ApiError::internal)?,
        body.map_err(ApiError::internal)?,
    ))
}

/// The keys a user's messages open with. A message is sealed with its owner's messaging key
/// ([`crate::scope_keys`]), which a withdrawal of messaging destroys, so that yesterday's copy
/// of the region's files cannot open withdrawn messages even with the account's key. Messages
/// stored by a version before messages had a key of their own were sealed with the account's
/// key: they still open with it, until their retention ends them.
pub(crate) struct MessageKeys {
    owner: UserId,
    messaging: Option<sovereign_crypto::DataKey>,
    account: sovereign_crypto::DataKey,
}

impl MessageKeys {
    /// `messaging`: the owner's messaging key, if they have one here.
    pub(crate) fn new(
        owner: UserId,
        messaging: Option<sovereign_crypto::DataKey>,
        account: sovereign_crypto::DataKey,
    ) -> MessageKeys {
        MessageKeys {
            owner,
            messaging,
            account,
        }
    }

    /// The keys of a signed-in user's messages.
    pub(crate) fn of(state: &AppState, user: &AuthUser) -> Result<MessageKeys, ApiError> {
        let messaging = state
            .keys
            .scope_key(&user.id, ConsentScope::Messaging)
            .map_err(ApiError::Internal)?;
        Ok(MessageKeys::new(
            user.id.clone(),
            messaging,
            user.key.clone(),
        ))
    }

    /// Opens one sealed field of the owner's message `record` (`<box>:<id>`).
    ///
    /// # Errors
    /// When neither key opens it.
    pub(crate) fn open(
        &self,
        record: &str,
        field: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, sovereign_crypto::CryptoError> {
        let aad = aad("messages", &self.owner, record, field);
        if let Some(key) = &self.messaging
            && let Ok(plain) = key.open(&aad, sealed)
        {
            return Ok(plain);
        }
        self.account.open(&aad, sealed)
    }
}

/// The user's messaging key, made now if there is none, when the user has granted messaging
/// here; `None` when not (and no key is made). The caller holds the scope guard
/// ([`crate::keys::RegionKeys::scope_guard`]) shared from here to the commit of what it seals,
/// so that a withdrawal cannot destroy the key in between.
async fn messaging_key_for_write(
    state: &AppState,
    user: &UserId,
) -> Result<Option<sovereign_crypto::DataKey>, ApiError> {
    if !state
        .store
        .has_consent_to_write(
            user.to_string(),
            ConsentScope::Messaging,
            Service::Messaging,
        )
        .await?
    {
        return Ok(None);
    }
    state
        .keys
        .scope_key_or_create(user, ConsentScope::Messaging)
        .map(Some)
        .map_err(ApiError::Internal)
}

pub(crate) fn open_message(keys: &MessageKeys, row: &MessageRow) -> Result<MessageView, ApiError> {
    let record = format!("{}:{}", row.box_name, row.id);
    let peer = keys
        .open(&record, "peer", &row.peer_sealed)
        .map_err(ApiError::internal)?;
    let body = keys
        .open(&record, "body", &row.body_sealed)
        .map_err(ApiError::internal)?;
    let peer = String::from_utf8_lossy(&peer).into_owned();
    let inbox = row.box_name == "inbox";
    Ok(MessageView {
        id: row.id.clone(),
        box_name: row.box_name.clone(),
        from: inbox.then(|| peer.clone()),
        to: (!inbox).then_some(peer),
        body: String::from_utf8_lossy(&body).into_owned(),
        sent_at: rfc3339(row.created_at),
        delivered_at: row.delivered_at.map(rfc3339),
        cursor: row.seq.to_string(),
    })
}

/// Sends a message. Refused with `consent_required` when the sender has not opted in, and with
/// `recipient_unavailable` when the number has no account or has not opted in (the two are
/// indistinguishable on purpose).
#[utoipa::path(post, path = "/v1/messages", request_body = SendRequest,
    responses((status = 202, body = SendResponse), (status = 403, description = "consent_required"), (status = 422, description = "recipient_unavailable or invalid_phone")),
    security(("bearer" = [])))]
pub async fn send(
    State(state): State<AppState>,
    user: AuthUser,
    StrictJson(request): StrictJson<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), ApiError> {
    let to = PhoneNumber::parse(&request.to)?;
    check_message_body(&request.body)?;
    // The sender's own consent is checked before anything about the recipient is looked up, so
    // that a sender without consent learns nothing about the number.
    if !state
        .store
        .has_consent(user.id.to_string(), ConsentScope::Messaging)
        .await?
    {
        return Err(ApiError::ConsentRequired(ConsentScope::Messaging));
    }
    let sender_phone = user
        .key
        .open(
            &aad("users", &user.id, user.id.as_str(), "phone"),
            &user.row.phone_sealed,
        )
        .map_err(ApiError::internal)?;
    let sender_phone = String::from_utf8_lossy(&sender_phone).into_owned();
    // The recipient's messaging lives with their account unless it was placed elsewhere.
    let (recipient_user, home) = state
        .directory
        .lookup_service(state.keys.phone_index(&to), Service::Messaging)
        .await?
        .ok_or(ApiError::RecipientUnavailable)?;

    let id = match &request.id {
        Some(id) => MessageId::parse(id).map_err(|_| ApiError::invalid("id", "must be a UUID"))?,
        // A send to another region is two commits in two places: if the answer is lost after
        // the recipient's region stored its copy, the client retries. Without a client id the
        // retry must still carry the same id, or the recipient gets the message twice: it is
        // derived from the message and the sender's last stored sent message, which the
        // interrupted attempt did not change (and a completed one did, so a deliberate repeat
        // is a new message).
        None if home != state.region.id => {
            let previous = state.store.latest_sent_id(user.id.to_string()).await?;
            derived_message_id(&user.id, to.as_e164(), &request.body, previous.as_deref())
        }
        None => MessageId::random(),
    };
    let now = state.now_ms();
    // The sender's copy, sealed with their messaging key; the scope guard is held shared from
    // taking the key to the commit (see `messaging_key_for_write`).
    let sent_copy = |key: &sovereign_crypto::DataKey| -> Result<MessageCopy, ApiError> {
        let (peer, body) = seal_copy(key, &user.id, "sent", &id, to.as_e164(), &request.body)?;
        Ok(MessageCopy {
            id: id.as_str().to_owned(),
            owner_id: user.id.to_string(),
            peer_sealed: peer,
            body_sealed: body,
            created_at: now,
            expires_at: now + i64::from(state.policies.retention.delivered_messages_days) * DAY_MS,
        })
    };
    if home != state.region.id {
        // The recipient's copy is stored only in the recipient's region: hand it over, signed,
        // and keep only the sender's copy here.
        let forwarded = serde_json::json!({
            "id": id.as_str(), "from": sender_phone, "to": to.as_e164(),
            "body": request.body, "sent_at_ms": now,
        });
        let (status, answer) = state
            .federation
            .post(&home, FORWARD_PATH, &forwarded, now)
            .await?;
        match status {
            202 => state.faults.check(crate::faults::SEND_AFTER_FORWARD)?,
            422 => return Err(ApiError::RecipientUnavailable),
            // The recipient's inbox is full (their region counted the refusal).
            507 => {
                return Err(ApiError::quota_exceeded(
                    crate::store::Quota::InboxPending,
                    answer["limit"].as_i64().unwrap_or(0),
                ));
            }
            // The recipient's messaging is moving: the sender retries and is routed anew.
            503 => return Err(ApiError::UserMigrating),
            _ => return Err(ApiError::RegionUnavailable(home.to_string())),
        }
        // Not held across the forward: a slow peer would hold up the user's withdrawals.
        let guard = state.keys.scope_guard(&user.id);
        let _shared = guard.read().await;
        let key = messaging_key_for_write(&state, &user.id)
            .await?
            .ok_or(ApiError::ConsentRequired(ConsentScope::Messaging))?;
        state
            .store
            .store_message_copy(sent_copy(&key)?, "sent", None)
            .await?;
        state.metrics.messages_stored.inc();
        return Ok((
            StatusCode::ACCEPTED,
            Json(SendResponse {
                id: id.as_str().to_owned(),
            }),
        ));
    }
    // Both users' keys are taken below: both guards are held.
    let _shared = state
        .keys
        .scope_guards_shared(&[&user.id, &UserId::from_stored(recipient_user.clone())])
        .await;
    let key = messaging_key_for_write(&state, &user.id)
        .await?
        .ok_or(ApiError::ConsentRequired(ConsentScope::Messaging))?;
    let sent = sent_copy(&key)?;
    let (recipient_id, inbox) = inbox_copy(
        &state,
        &recipient_user,
        &id,
        &sender_phone,
        &request.body,
        now,
    )
    .await?;
    let seq = state
        .store
        .send_message(
            sent,
            inbox,
            Some(state.policies.limits.inbox_pending_per_user_max),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::RecipientUnavailable,
            other => state.metrics.count_quota(other.into()),
        })?;
    state.metrics.messages_stored.inc();
    state.hub.notify(recipient_id.as_str(), seq);
    Ok((
        StatusCode::ACCEPTED,
        Json(SendResponse {
            id: id.as_str().to_owned(),
        }),
    ))
}

/// The id of a send without a client id: the same for a retry of an interrupted send (nothing
/// was stored for the sender since), different for the next message.
fn derived_message_id(
    sender: &UserId,
    to: &str,
    body: &str,
    previous_sent: Option<&str>,
) -> MessageId {
    let mut input = Vec::new();
    for part in [
        "sovereign-derived-message-id",
        sender.as_str(),
        to,
        body,
        previous_sent.unwrap_or(""),
    ] {
        // Length-prefixed, so that no two different inputs run together into one.
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest = sovereign_crypto::digest_sha256(&input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    MessageId::from_uuid(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

/// The recipient's copy of a message, sealed with the recipient's messaging key, for a
/// recipient whose messaging the directory places in this region. The caller holds the scope
/// guard shared to the commit.
async fn inbox_copy(
    state: &AppState,
    recipient_user: &str,
    id: &MessageId,
    from: &str,
    body: &str,
    now: i64,
) -> Result<(UserId, MessageCopy), ApiError> {
    let Some(recipient) = state.store.user(recipient_user.to_owned()).await? else {
        // The directory says the recipient's messaging is here, but it is not live here: it is
        // moving in or out right now. The client retries and is routed to where it went.
        return Err(ApiError::UserMigrating);
    };
    let recipient_id = UserId::from_stored(recipient.id.clone());
    // No key is made for a recipient who has not opted in; the store refuses them anyway.
    let key = messaging_key_for_write(state, &recipient_id)
        .await?
        .ok_or(ApiError::RecipientUnavailable)?;
    let (peer, body) = seal_copy(&key, &recipient_id, "inbox", id, from, body)?;
    let copy = MessageCopy {
        id: id.as_str().to_owned(),
        owner_id: recipient.id,
        peer_sealed: peer,
        body_sealed: body,
        created_at: now,
        expires_at: now + i64::from(state.policies.retention.undelivered_messages_days) * DAY_MS,
    };
    Ok((recipient_id, copy))
}

/// Where regions hand each other messages for their users.
pub const FORWARD_PATH: &str = "/internal/v1/messages";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardedMessage {
    id: String,
    from: String,
    to: String,
    body: String,
    sent_at_ms: i64,
}

/// Receives a message forwarded by another region for a user whose messaging is here. It is
/// believed only from the region that holds the sender's messaging (by the directory), with a
/// send time within the federation's clock window, and never under an id the recipient already
/// has for another message: a retry of the same message is answered as before, anything else
/// with that id is `409 conflict` and changes nothing.
async fn receive_forwarded(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let headers = request.headers().clone();
    let bytes =
        crate::extract::read_body(request, state.policies.limits.json_body_bytes_max).await?;
    let from_region =
        state
            .federation
            .verify(&headers, "POST", FORWARD_PATH, &bytes, state.now_ms())?;
    let message: ForwardedMessage = crate::extract::parse_json(&bytes)?;
    let id = MessageId::parse(&message.id)?;
    let to = PhoneNumber::parse(&message.to)?;
    let from = PhoneNumber::parse(&message.from)?;
    check_message_body(&message.body)?;
    // Only the site that holds the sender's messaging speaks for the sender.
    let sender_site = state
        .directory
        .lookup_service(state.keys.phone_index(&from), Service::Messaging)
        .await?
        .map(|(_, region)| region);
    if sender_site.as_ref() != Some(&from_region) {
        tracing::warn!(%from_region, "refused a message forwarded for a sender it does not hold");
        return Err(ApiError::Unauthorized);
    }
    let now = state.now_ms();
    if (now - message.sent_at_ms).abs() > FORWARDED_SENT_AT_SKEW_MS_MAX {
        return Err(ApiError::invalid(
            "sent_at_ms",
            "is outside the federation's clock window",
        ));
    }
    let (recipient_user, region) = state
        .directory
        .lookup_service(state.keys.phone_index(&to), Service::Messaging)
        .await?
        .ok_or(ApiError::RecipientUnavailable)?;
    if region != state.region.id {
        // Placed elsewhere since the sender looked: the sender retries and is routed anew.
        return Err(ApiError::UserMigrating);
    }
    if let Some(seq) = existing_copy(&state, &recipient_user, &id, from.as_e164(), &message).await?
    {
        // The same message again (a retry after a lost answer): stored once already.
        state.hub.notify(&recipient_user, seq);
        return Ok(StatusCode::ACCEPTED);
    }
    let guard = state
        .keys
        .scope_guard(&UserId::from_stored(recipient_user.clone()));
    let _shared = guard.read().await;
    let (recipient_id, inbox) = inbox_copy(
        &state,
        &recipient_user,
        &id,
        from.as_e164(),
        &message.body,
        message.sent_at_ms,
    )
    .await?;
    let seq = state
        .store
        .store_message_copy(
            inbox,
            "inbox",
            Some(state.policies.limits.inbox_pending_per_user_max),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::RecipientUnavailable,
            other => state.metrics.count_quota(other.into()),
        })?;
    tracing::debug!(%from_region, "stored a forwarded message");
    state.metrics.messages_stored.inc();
    state.hub.notify(recipient_id.as_str(), seq);
    Ok(StatusCode::ACCEPTED)
}

/// The seq of the recipient's copy of message `id` if it is this very message (same sender and
/// body); `409 conflict` if the recipient already has another message under
/// that id, in either box.
async fn existing_copy(
    state: &AppState,
    recipient_user: &str,
    id: &MessageId,
    from: &str,
    message: &ForwardedMessage,
) -> Result<Option<i64>, ApiError> {
    let taken = || ApiError::Conflict(format!("message id {} is taken", id.as_str()));
    if state
        .store
        .message_copy(recipient_user.to_owned(), "sent", id.as_str().to_owned())
        .await?
        .is_some()
    {
        return Err(taken());
    }
    let Some(row) = state
        .store
        .message_copy(recipient_user.to_owned(), "inbox", id.as_str().to_owned())
        .await?
    else {
        return Ok(None);
    };
    let recipient = state
        .store
        .user(recipient_user.to_owned())
        .await?
        .ok_or(ApiError::RecipientUnavailable)?;
    let owner = UserId::from_stored(recipient.id.clone());
    let wrapped = recipient
        .wrapped_key
        .as_deref()
        .ok_or(ApiError::RecipientUnavailable)?;
    let account = state
        .keys
        .unwrap(wrapped, &owner)
        .map_err(ApiError::Internal)?;
    let messaging = state
        .keys
        .scope_key(&owner, ConsentScope::Messaging)
        .map_err(ApiError::Internal)?;
    let stored = open_message(&MessageKeys::new(owner, messaging, account), &row)?;
    // The sender's region stamps a retried send with a new time, so the time is not compared.
    let same = stored.from.as_deref() == Some(from) && stored.body == message.body;
    if same {
        Ok(Some(row.seq))
    } else {
        Err(taken())
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The `cursor` of the last message seen; omit to start from the beginning.
    after: Option<String>,
    /// At most this many messages (default and maximum 500).
    limit: Option<u32>,
    /// "inbox" (default) or "sent".
    #[serde(rename = "box")]
    box_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    messages: Vec<MessageView>,
    /// Pass as `after` to get what came since.
    cursor: String,
}

fn parse_cursor(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after", "must be a cursor returned by this API")),
    }
}

/// Messages after a cursor (polling, and catching up after a WebSocket drops).
#[utoipa::path(get, path = "/v1/messages", params(ListQuery), responses((status = 200, body = MessagePage)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let after = parse_cursor(query.after.as_deref())?;
    let box_name = match query.box_name.as_deref() {
        None | Some("inbox") => "inbox",
        Some("sent") => "sent",
        Some(_) => return Err(ApiError::invalid("box", "must be \"inbox\" or \"sent\"")),
    };
    let limit = query.limit.unwrap_or(PAGE_ROWS_MAX).clamp(1, PAGE_ROWS_MAX);
    let rows = state
        .store
        .messages_after(user.id.to_string(), box_name, after, limit)
        .await?;
    let cursor = rows.last().map_or(after, |r| r.seq).to_string();
    let keys = MessageKeys::of(&state, &user)?;
    let messages = rows
        .iter()
        .map(|row| open_message(&keys, row))
        .collect::<Result<_, _>>()?;
    Ok(Json(MessagePage { messages, cursor }))
}

/// Acknowledges delivery of a received message.
#[utoipa::path(post, path = "/v1/messages/{id}/ack", params(("id" = String, Path)), responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = MessageId::parse(&id)?;
    ack_message(&state, &user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ack_message(state: &AppState, user: &UserId, id: &MessageId) -> Result<(), ApiError> {
    let now = state.now_ms();
    let expires = now + i64::from(state.policies.retention.delivered_messages_days) * DAY_MS;
    Ok(state
        .store
        .ack(user.to_string(), id.as_str().to_owned(), now, expires)
        .await?)
}

/// A WebSocket that pushes each new message as a JSON text frame (the same shape as in
/// `GET /v1/messages`). The client acknowledges with `{"ack": "<id>"}`.
#[utoipa::path(get, path = "/v1/messages/ws", responses((status = 101, description = "switching to WebSocket")), security(("bearer" = [])))]
pub async fn socket(
    State(state): State<AppState>,
    user: AuthUser,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(permit) = SocketPermit::acquire(&state, user.id.as_str()) else {
        return ApiError::RateLimited {
            retry_after_secs: 1,
        }
        .into_response();
    };
    upgrade
        .max_message_size(WS_MESSAGE_BYTES_MAX)
        .max_frame_size(WS_FRAME_BYTES_MAX)
        .on_upgrade(move |socket| async move {
            push_loop(state, user, socket).await;
            drop(permit);
        })
}

/// Largest message a client may send over the WebSocket. Clients send only acknowledgements
/// (`{"ack": "<uuid>"}`, about 50 bytes); a larger message closes the socket.
pub const WS_MESSAGE_BYTES_MAX: usize = 4096;
/// Largest single frame a client may send (a message may come in several).
pub const WS_FRAME_BYTES_MAX: usize = 1024;
const _: () = assert!(WS_FRAME_BYTES_MAX <= WS_MESSAGE_BYTES_MAX);
/// The close code a socket gets when its session ends (RFC 6455 §7.4.1: policy violation).
pub const WS_CLOSE_SESSION_ENDED: u16 = 1008;

/// How often an open WebSocket checks that the user's messaging is still in this region.
pub const PLACEMENT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFrame {
    ack: String,
}

/// Whether the session a socket was opened with is still live: here, the store says so; for
/// another site's session, its issuer (cached, see [`crate::placement::remote_session_live`]).
/// A store or issuer that cannot answer does not close the socket.
async fn session_live(state: &AppState, session: &crate::extract::SessionRef) -> bool {
    if state.now_ms() >= session.expires_at {
        return false;
    }
    match &session.issuer {
        Some(issuer) => crate::placement::remote_session_live(state, session.token_digest, issuer)
            .await
            .unwrap_or(true),
        None => !matches!(
            state
                .store
                .live_session(session.token_digest, state.now_ms())
                .await,
            Ok(None)
        ),
    }
}

async fn push_loop(state: AppState, user: AuthUser, mut socket: WebSocket) {
    let mut new_messages = state.hub.subscribe(user.id.as_str());
    // Subscribe first, then read: a message committed in between is both read and pushed, and
    // the cursor makes sure it is sent once.
    let start = match state.store.undelivered(user.id.to_string()).await {
        Ok(rows) => match rows.first() {
            Some(first) => first.seq - 1,
            None => match state.store.latest_inbox_seq(user.id.to_string()).await {
                Ok(seq) => seq,
                Err(_) => return,
            },
        },
        Err(_) => return,
    };
    let Ok(mut last_seq) = send_after(&state, &user, &mut socket, start).await else {
        return;
    };
    let mut placement_check = tokio::time::interval(PLACEMENT_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = placement_check.tick() => {
                // The session ended without a notice reaching this socket (expired, ended by
                // another process on this store, or at the home with the notice lost): close.
                if let Some(session) = &user.session
                    && !session_live(&state, session).await
                {
                    close_session_ended(&mut socket).await;
                    return;
                }
                // The user's messaging moved to another region: new messages are stored there,
                // so this socket would stay silent. Closing it makes the client reconnect, and
                // the reconnection is redirected.
                let here = crate::placement::holds(&state, user.id.as_str(), Service::Messaging).await;
                if matches!(here, Ok(false)) {
                    let _ = socket
                        .send(WsMessage::Close(Some(axum::extract::ws::CloseFrame {
                            code: 1012,
                            reason: "messaging moved to another region; reconnect".into(),
                        })))
                        .await;
                    return;
                }
            }
            pushed = new_messages.recv() => {
                match pushed {
                    Ok(HubEvent::SessionEnded(id)) => {
                        if user.session.as_ref().is_some_and(|s| s.id == id) {
                            close_session_ended(&mut socket).await;
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Missed events may include this session's end.
                        if let Some(session) = &user.session
                            && !session_live(&state, session).await
                        {
                            close_session_ended(&mut socket).await;
                            return;
                        }
                        match send_after(&state, &user, &mut socket, last_seq).await {
                            Ok(seq) => last_seq = seq,
                            Err(()) => return,
                        }
                    }
                    Ok(HubEvent::Message(_)) => {
                        match send_after(&state, &user, &mut socket, last_seq).await {
                            Ok(seq) => last_seq = seq,
                            Err(()) => return,
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        let reply = match serde_json::from_str::<ClientFrame>(&text) {
                            Ok(frame) => match MessageId::parse(&frame.ack) {
                                Ok(id) => ack_message(&state, &user.id, &id).await.err(),
                                Err(e) => Some(e),
                            },
                            Err(_) => Some(ApiError::MalformedJson("expected {\"ack\": \"<message id>\"}".into())),
                        };
                        if let Some(error) = reply {
                            let frame = serde_json::json!({"type": "error", "code": error.code(), "detail": error.to_string()});
                            if socket.send(WsMessage::Text(frame.to_string().into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

async fn close_session_ended(socket: &mut WebSocket) {
    let _ = socket
        .send(WsMessage::Close(Some(axum::extract::ws::CloseFrame {
            code: WS_CLOSE_SESSION_ENDED,
            reason: "session ended; sign in again".into(),
        })))
        .await;
}

/// Sends every inbox message after `after` that has not been delivered; returns the new cursor.
async fn send_after(
    state: &AppState,
    user: &AuthUser,
    socket: &mut WebSocket,
    after: i64,
) -> Result<i64, ()> {
    let mut last = after;
    loop {
        let rows = state
            .store
            .messages_after(user.id.to_string(), "inbox", last, PAGE_ROWS_MAX)
            .await
            .map_err(|_| ())?;
        // Fetched per page: the user's messaging key may be made after the socket opened.
        let keys = MessageKeys::of(state, user).map_err(|_| ())?;
        for row in &rows {
            last = row.seq;
            if row.delivered_at.is_some() {
                continue;
            }
            let view = open_message(&keys, row).map_err(|_| ())?;
            let mut frame = serde_json::to_value(&view).map_err(|_| ())?;
            frame["type"] = "message".into();
            socket
                .send(WsMessage::Text(frame.to_string().into()))
                .await
                .map_err(|_| ())?;
            state.metrics.messages_pushed.inc();
        }
        if rows.len() < PAGE_ROWS_MAX as usize {
            return Ok(last);
        }
    }
}
