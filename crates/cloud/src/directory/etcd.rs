//! The directory on etcd, for sites on several hosts.
//!
//! Writes are etcd transactions conditioned on what they change (create-if-absent for a claim,
//! the current revision for a move), so two sites can never both win a number. Reads never
//! leave the site: each site keeps the whole directory prefix in memory, filled by one range
//! read and kept current by a watch from that read's revision. When the watch breaks (a member
//! died, or all of etcd is gone) the follower resyncs from any member it can reach; until it
//! does the cache is *stale*: it still answers what it holds (signed-in users keep working),
//! but an absence it cannot confirm is [`StoreError::DirectoryUnavailable`], never "no such
//! user", and every write is refused the same way once etcd cannot be reached.
//!
//! Key layout under the prefix `P` (every key of a user sits under their home region, so an
//! etcd role per site can be given write access to its own region's keys only):
//!
//! ```text
//! P/dir/<home>/phone/<hex phone index>     = user id
//! P/dir/<home>/user/<user id>              = hex phone index
//! P/dir/<home>/place/<user id>/<service>   = region holding that service
//! P/dir/<home>/former/<user id>            = regions the user's data left, newest first,
//!                                            comma-separated (at most FORMER_REGIONS_MAX)
//! P/journal/<migration id>                 = the migration's description
//! P/journal/<migration id>/selected        = number of pages of selected users (written last)
//! P/journal/<migration id>/page/<n>        = JSON list of user ids
//! P/journal/<migration id>/step/<user id>  = last finished step
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, KvClient, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use sovereign_model::RegionId;

use super::{CacheStatus, DirectoryEntry, FORMER_REGIONS_MAX};
use crate::domain::Service;
use crate::store::StoreError;

/// How long one etcd request may take before the directory reports itself unavailable.
pub const ETCD_REQUEST_TIMEOUT_MS: u64 = 3_000;
/// How long connecting to one member may take.
pub const ETCD_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How often the connection to a member is pinged, to notice a member that went silent. etcd
/// closes (`too_many_pings`) a connection pinged more often than its
/// `--grpc-keepalive-min-time`, 5 s by default, while no data flows: at 2 s an idle watch broke
/// every 8 s and the site re-read the whole prefix each time.
pub const ETCD_KEEPALIVE_INTERVAL_MS: u64 = 6_000;
/// How long a ping may go unanswered before the connection counts as dead.
pub const ETCD_KEEPALIVE_TIMEOUT_MS: u64 = 3_000;
/// How long a write waits for its own change to reach this site's cache, so that the request
/// after it sees it; past that the write still stands and the cache catches up later.
pub const ETCD_CATCHUP_TIMEOUT_MS: u64 = 2_000;
/// Pause before the follower retries after losing etcd.
pub const ETCD_RESYNC_PAUSE_MS: u64 = 250;
/// Keys per page of the initial range read (all pages read at one revision).
pub const ETCD_SYNC_PAGE_KEYS: i64 = 1_000;
/// User ids per page of a migration's selection (one etcd value each, well below etcd's
/// default 1.5 MiB request limit).
pub const JOURNAL_PAGE_USERS: usize = 10_000;
/// Attempts of one etcd call that failed in transit (a member died, an election is under way)
/// while the cache still follows etcd; once it does not, one per member and one more.
pub const ETCD_ATTEMPTS_MAX: usize = 12;
/// Pause between such attempts: an election takes about a second.
pub const ETCD_RETRY_PAUSE_MS: u64 = 250;
/// Attempts of a conditional write that lost a race before it reports a conflict.
pub const ETCD_CAS_ATTEMPTS_MAX: usize = 5;
/// Endpoints one `etcd://` location may name.
pub const ETCD_ENDPOINTS_MAX: usize = 16;

/// Where the etcd directory is: `etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX`, or
/// `etcds://...` for members that speak TLS (their CA is given separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdLocation {
    /// `http://host:port` (`https://` with TLS) for each member.
    pub endpoints: Vec<String>,
    /// Whether the members are reached over TLS (`etcds://`).
    pub tls: bool,
    /// Key prefix, without a trailing slash, e.g. `/sovereign`.
    pub prefix: String,
    /// The etcd user to authenticate as (its password comes separately).
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error(
        "{0:?} is not an etcd location (expected etcd://host:port[,host:port...]/prefix, or etcds:// for TLS)"
    )]
    NotEtcd(String),
    #[error("an etcd location names no member")]
    NoEndpoint,
    #[error("an etcd location names more than {ETCD_ENDPOINTS_MAX} members")]
    TooManyEndpoints,
    #[error("etcd member {0:?} is not HOST:PORT")]
    BadEndpoint(String),
    #[error("the etcd key prefix is missing (etcd://hosts/PREFIX)")]
    NoPrefix,
    #[error("the etcd key prefix {0:?} may hold only letters, digits, '-', '_' and '/'")]
    BadPrefix(String),
}

impl EtcdLocation {
    /// # Errors
    /// When `text` is not an `etcd://` location with at least one `host:port` and a prefix.
    pub fn parse(text: &str) -> Result<EtcdLocation, LocationError> {
        let (tls, rest) = match (text.strip_prefix("etcds://"), text.strip_prefix("etcd://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(LocationError::NotEtcd(text.to_owned())),
        };
        let scheme = if tls { "https" } else { "http" };
        let (authority, prefix) = rest.split_once('/').ok_or(LocationError::NoPrefix)?;
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) if !user.is_empty() => (Some(user.to_owned()), hosts),
            Some((_, hosts)) => (None, hosts),
            None => (None, authority),
        };
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(LocationError::NoPrefix);
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
        {
            return Err(LocationError::BadPrefix(prefix.to_owned()));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            if endpoints.len() == ETCD_ENDPOINTS_MAX {
                return Err(LocationError::TooManyEndpoints);
            }
            let port_ok = host
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(LocationError::BadEndpoint(host.to_owned()));
            }
            endpoints.push(format!("{scheme}://{host}"));
        }
        if endpoints.is_empty() {
            return Err(LocationError::NoEndpoint);
        }
        Ok(EtcdLocation {
            endpoints,
            tls,
            prefix: format!("/{}", prefix.trim_start_matches('/')),
            user,
        })
    }
}

/// What it takes to connect a site to the etcd directory.
pub struct EtcdOptions {
    pub location: EtcdLocation,
    /// The password of `location.user`.
    pub password: Option<String>,
    /// The CA certificates (PEM) the members' TLS certificates must chain to, for `etcds://`.
    pub ca_pem: Option<Vec<u8>>,
    /// Every configured region: a claim checks that no region holds the number yet.
    pub regions: Vec<RegionId>,
}

/// One user's row: where their account lives, and since which revision.
#[derive(Debug, Clone)]
struct UserRow {
    home: RegionId,
    created: i64,
}

/// The directory as this site last saw it.
#[derive(Default)]
struct Cache {
    /// Every region's claim on a number, with its creation revision: the oldest claim wins
    /// (a second one can only come from a site that skipped the claim's condition).
    phones: HashMap<[u8; 32], Vec<(i64, RegionId, String)>>,
    users: HashMap<String, Vec<UserRow>>,
    /// (home, user) → the services placed away from that home.
    placements: HashMap<(RegionId, String), Vec<(Service, RegionId)>>,
    /// (home, user) → the regions the user's data left, newest first.
    formers: HashMap<(RegionId, String), Vec<RegionId>>,
    revision: i64,
    /// This site's own writes at revisions the watch has not reported yet (key after `P/dir/`
    /// → revision and value, `None` for a delete). They are in the cache at once, so the
    /// request after a write reads it however slow the watch is, and an older event of the
    /// watch for one of these keys is not applied over them.
    ahead: HashMap<String, (i64, Option<Vec<u8>>)>,
}

/// Changes of the directory made by one write of this site: the etcd operations and the same
/// changes as the cache will see them.
#[derive(Default)]
struct Writes {
    ops: Vec<TxnOp>,
    changes: Vec<(String, Option<Vec<u8>>)>,
}

impl Writes {
    fn put(&mut self, key: String, value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.ops.push(TxnOp::put(key.clone(), value.clone(), None));
        self.changes.push((key, Some(value)));
    }

    fn delete(&mut self, key: String) {
        self.ops.push(TxnOp::delete(key.clone(), None));
        self.changes.push((key, None));
    }
}

/// A key of the directory, parsed.
enum DirKey {
    Phone {
        home: RegionId,
        phone: [u8; 32],
    },
    User {
        home: RegionId,
        user: String,
    },
    Place {
        home: RegionId,
        user: String,
        service: Service,
    },
    Former {
        home: RegionId,
        user: String,
    },
}

/// A `former` value: region ids, comma-separated, newest first. A malformed id is skipped,
/// a repeated one counted once, and at most [`FORMER_REGIONS_MAX`] are kept.
fn parse_former(value: &str) -> Vec<RegionId> {
    let mut out: Vec<RegionId> = Vec::new();
    for region in value.split(',').filter_map(|r| RegionId::parse(r).ok()) {
        if out.len() == FORMER_REGIONS_MAX {
            break;
        }
        if !out.contains(&region) {
            out.push(region);
        }
    }
    out
}

/// `left` put first among `former`, within [`FORMER_REGIONS_MAX`] (the oldest goes).
fn with_left(former: &[RegionId], left: &RegionId) -> Vec<RegionId> {
    std::iter::once(left.clone())
        .chain(former.iter().filter(|r| *r != left).cloned())
        .take(FORMER_REGIONS_MAX)
        .collect()
}

fn former_text(former: &[RegionId]) -> String {
    former
        .iter()
        .map(RegionId::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    sovereign_crypto::hex(bytes)
}

impl DirKey {
    /// `rest` is the key after `P/dir/`.
    fn parse(rest: &str) -> Option<DirKey> {
        let (home, rest) = rest.split_once('/')?;
        let home = RegionId::parse(home).ok()?;
        let (kind, rest) = rest.split_once('/')?;
        match kind {
            "phone" => Some(DirKey::Phone {
                home,
                phone: parse_hex32(rest)?,
            }),
            "user" if !rest.is_empty() => Some(DirKey::User {
                home,
                user: rest.to_owned(),
            }),
            "place" => {
                let (user, service) = rest.rsplit_once('/')?;
                Some(DirKey::Place {
                    home,
                    user: user.to_owned(),
                    service: Service::parse(service)?,
                })
            }
            "former" if !rest.is_empty() => Some(DirKey::Former {
                home,
                user: rest.to_owned(),
            }),
            _ => None,
        }
    }
}

impl Cache {
    fn put(&mut self, rest: &str, value: &[u8], created: i64) {
        let Some(key) = DirKey::parse(rest) else {
            return;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        match key {
            DirKey::Phone { home, phone } => {
                let claims = self.phones.entry(phone).or_default();
                claims.retain(|(_, region, _)| *region != home);
                claims.push((created, home, value.to_owned()));
                claims.sort_by_key(|(created, _, _)| *created);
                if claims.len() > 1 {
                    tracing::warn!(
                        regions = ?claims.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
                        "a number is claimed by more than one region; the oldest claim wins"
                    );
                }
            }
            DirKey::User { home, user } => {
                if parse_hex32(value).is_none() {
                    return;
                }
                let rows = self.users.entry(user).or_default();
                rows.retain(|row| row.home != home);
                rows.push(UserRow { home, created });
                rows.sort_by_key(|row| row.created);
            }
            DirKey::Place {
                home,
                user,
                service,
            } => {
                let Ok(region) = RegionId::parse(value) else {
                    return;
                };
                let placed = self.placements.entry((home, user)).or_default();
                placed.retain(|(s, _)| *s != service);
                placed.push((service, region));
                placed.sort_by_key(|(s, _)| *s);
            }
            DirKey::Former { home, user } => {
                self.formers.insert((home, user), parse_former(value));
            }
        }
    }

    fn delete(&mut self, rest: &str) {
        match DirKey::parse(rest) {
            Some(DirKey::Phone { home, phone }) => {
                if let Some(claims) = self.phones.get_mut(&phone) {
                    claims.retain(|(_, region, _)| *region != home);
                    if claims.is_empty() {
                        self.phones.remove(&phone);
                    }
                }
            }
            Some(DirKey::User { home, user }) => {
                if let Some(rows) = self.users.get_mut(&user) {
                    rows.retain(|row| row.home != home);
                    if rows.is_empty() {
                        self.users.remove(&user);
                    }
                }
            }
            Some(DirKey::Place {
                home,
                user,
                service,
            }) => {
                let key = (home, user);
                if let Some(placed) = self.placements.get_mut(&key) {
                    placed.retain(|(s, _)| *s != service);
                    if placed.is_empty() {
                        self.placements.remove(&key);
                    }
                }
            }
            Some(DirKey::Former { home, user }) => {
                self.formers.remove(&(home, user));
            }
            None => {}
        }
    }

    fn user(&self, user_id: &str) -> Option<&UserRow> {
        self.users.get(user_id).and_then(|rows| rows.first())
    }

    /// This site's write at `revision` (keys after `P/dir/`), unless the cache has already
    /// seen that revision (then it holds the write, or something newer).
    fn own(&mut self, revision: i64, changes: Vec<(String, Option<Vec<u8>>)>) {
        if revision <= self.revision {
            return;
        }
        for (rest, value) in changes {
            self.own_change(revision, rest, value);
        }
    }

    fn own_change(&mut self, revision: i64, rest: String, value: Option<Vec<u8>>) {
        match &value {
            // The phone and user keys a claim or move writes are new at `revision`: it is
            // their creation (other keys do not use it).
            Some(value) => self.put(&rest, value, revision),
            None => self.delete(&rest),
        }
        self.ahead.insert(rest, (revision, value));
    }

    /// Whether an event of the watch for `rest` at `modified` is older than this site's own
    /// write of that key (already applied).
    fn behind_own(&self, rest: &str, modified: i64) -> bool {
        self.ahead.get(rest).is_some_and(|(own, _)| *own > modified)
    }

    /// The watch reached `revision`: own writes up to it are now the watch's.
    fn seen(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
        if !self.ahead.is_empty() {
            let now = self.revision;
            self.ahead.retain(|_, (own, _)| *own > now);
        }
    }

    /// A full read replaced the cache: own writes newer than that read are applied again.
    fn carry_own(&mut self, older: HashMap<String, (i64, Option<Vec<u8>>)>) {
        let mut writes: Vec<(i64, String, Option<Vec<u8>>)> = older
            .into_iter()
            .filter(|(_, (own, _))| *own > self.revision)
            .map(|(rest, (own, value))| (own, rest, value))
            .collect();
        writes.sort_by_key(|(own, _, _)| *own);
        for (own, rest, value) in writes {
            self.own_change(own, rest, value);
        }
    }

    fn placed(&self, home: &RegionId, user_id: &str) -> &[(Service, RegionId)] {
        self.placements
            .get(&(home.clone(), user_id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    fn service_region(&self, user_id: &str, service: Service) -> Option<RegionId> {
        let row = self.user(user_id)?;
        let placed = self
            .placed(&row.home, user_id)
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, region)| region.clone());
        Some(placed.unwrap_or_else(|| row.home.clone()))
    }
}

struct Shared {
    cache: RwLock<Cache>,
    connected: AtomicBool,
    /// The revision the cache reflects, for writers waiting to see their own change.
    revision: tokio::sync::watch::Sender<i64>,
}

/// The etcd directory of one site: a client for writes and a watched cache for reads.
pub struct EtcdDirectory {
    client: Client,
    prefix: String,
    regions: Vec<RegionId>,
    /// How many members the location names: a call tries each before giving up.
    members: usize,
    shared: Arc<Shared>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdDirectory {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::DirectoryUnavailable(error.to_string())
}

/// Whether a failed call may succeed on another member or after an election; a refusal
/// (permission, bad request) never does.
fn retryable(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
        ),
        _ => false,
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // Prefixes here end in '/', never in 0xff, so the last byte can always be raised.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

impl EtcdDirectory {
    /// Connects to etcd and fills the cache; the site starts only once it has a copy of the
    /// directory (a site that cannot reach etcd at start has nothing to serve from).
    ///
    /// # Errors
    /// When no member answers, or the credentials are refused.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdDirectory, StoreError> {
        let EtcdOptions {
            location,
            password,
            ca_pem,
            regions,
        } = options;
        let mut connect = ConnectOptions::new()
            .with_timeout(Duration::from_millis(ETCD_REQUEST_TIMEOUT_MS))
            .with_connect_timeout(Duration::from_millis(ETCD_CONNECT_TIMEOUT_MS))
            .with_keep_alive(
                Duration::from_millis(ETCD_KEEPALIVE_INTERVAL_MS),
                Duration::from_millis(ETCD_KEEPALIVE_TIMEOUT_MS),
            )
            // A member cut off from the others must not serve its old view as current.
            .with_require_leader(true);
        if let Some(user) = &location.user {
            connect = connect.with_user(user.clone(), password.unwrap_or_default());
        }
        match (location.tls, ca_pem) {
            (true, Some(pem)) => {
                let tls = etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(pem));
                connect = connect.with_tls(tls);
            }
            (true, None) => {
                return Err(StoreError::DirectoryUnavailable(
                    "an etcds:// directory needs the CA of its members' certificates".to_owned(),
                ));
            }
            (false, Some(_)) => {
                return Err(StoreError::DirectoryUnavailable(
                    "a CA for the directory's members was given, but the location is etcd:// (plain); use etcds://".to_owned(),
                ));
            }
            (false, None) => {}
        }
        let client = Client::connect(&location.endpoints, Some(connect))
            .await
            .map_err(unavailable)?;
        let (revision, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            cache: RwLock::new(Cache::default()),
            connected: AtomicBool::new(false),
            revision,
        });
        let prefix = location.prefix.clone();
        let members = location.endpoints.len();
        let dir_prefix = format!("{prefix}/dir/");
        // A dead member among the endpoints must not stop a site from starting: the read is
        // tried again (on another member) as any call is.
        let mut attempt = 0;
        let (cache, revision) = loop {
            attempt += 1;
            match sync(&client, &dir_prefix).await {
                Ok(synced) => break synced,
                Err(StoreError::DirectoryUnavailable(_)) if attempt < ETCD_ATTEMPTS_MAX => {
                    tokio::time::sleep(Duration::from_millis(ETCD_RETRY_PAUSE_MS)).await;
                }
                Err(error) => return Err(error),
            }
        };
        *shared.cache.write().map_err(|_| StoreError::Panicked)? = cache;
        shared.revision.send_replace(revision);
        // Current as of the read just made; the watch from that revision keeps it so, and the
        // follower says otherwise the moment the watch cannot be kept.
        shared.connected.store(true, Ordering::Release);
        let follower = tokio::spawn(follow(
            client.clone(),
            Arc::clone(&shared),
            dir_prefix,
            revision,
            members,
        ));
        Ok(EtcdDirectory {
            client,
            prefix,
            regions,
            members,
            shared,
            follower,
        })
    }

    pub fn status(&self) -> CacheStatus {
        CacheStatus {
            connected: self.shared.connected.load(Ordering::Acquire),
            revision: *self.shared.revision.borrow(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Cache) -> T) -> Result<T, StoreError> {
        let cache = self.shared.cache.read().map_err(|_| StoreError::Panicked)?;
        Ok(f(&cache))
    }

    /// An answer from the cache: what it holds stands even when stale; a miss counts only
    /// while the cache follows etcd.
    fn answer<T>(&self, found: Option<T>) -> Result<Option<T>, StoreError> {
        match found {
            Some(found) => Ok(Some(found)),
            None if self.shared.connected.load(Ordering::Acquire) => Ok(None),
            None => Err(unavailable(
                "this site has lost etcd and cannot confirm that the entry does not exist",
            )),
        }
    }

    fn phone_key(&self, home: &RegionId, phone: &[u8; 32]) -> String {
        format!("{}/dir/{home}/phone/{}", self.prefix, hex(phone))
    }

    fn user_key(&self, home: &RegionId, user_id: &str) -> String {
        format!("{}/dir/{home}/user/{user_id}", self.prefix)
    }

    fn place_prefix(&self, home: &RegionId, user_id: &str) -> String {
        format!("{}/dir/{home}/place/{user_id}/", self.prefix)
    }

    fn former_key(&self, home: &RegionId, user_id: &str) -> String {
        format!("{}/dir/{home}/former/{user_id}", self.prefix)
    }

    /// Values and modification revisions (0 for an absent key) of `keys`, in one read.
    async fn values_now(&self, keys: &[String]) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
        let (_, _, responses) = self.txn(Txn::new().and_then(gets)).await?;
        let mut out = Vec::with_capacity(keys.len());
        for response in responses {
            let found = match response {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| (kv.value_str().ok().map(str::to_owned), kv.mod_revision())),
                _ => None,
            };
            out.push(found.unwrap_or((None, 0)));
        }
        if out.len() != keys.len() {
            return Err(unavailable("etcd answered a read with missing parts"));
        }
        Ok(out)
    }

    fn journal_key(&self, id: &str) -> String {
        format!("{}/journal/{id}", self.prefix)
    }

    /// This site's write at `revision` (`changes` as the watch will report them) is in the
    /// cache at once, so the request that follows reads it; then it waits (bounded) for the
    /// watch to reach that revision, so that what others wrote before it is read too.
    async fn settle(&self, revision: i64, changes: Vec<(String, Option<Vec<u8>>)>) {
        let dir_prefix = format!("{}/dir/", self.prefix);
        let changes = changes
            .into_iter()
            .filter_map(|(key, value)| Some((key.strip_prefix(&dir_prefix)?.to_owned(), value)))
            .collect();
        if let Ok(mut cache) = self.shared.cache.write() {
            cache.own(revision, changes);
        }
        let mut seen = self.shared.revision.subscribe();
        let wait = seen.wait_for(|r| *r >= revision);
        if tokio::time::timeout(Duration::from_millis(ETCD_CATCHUP_TIMEOUT_MS), wait)
            .await
            .is_err()
        {
            tracing::warn!(revision, "the directory cache is slow to see a write");
        }
    }

    /// Runs one etcd call, again on failures in transit (every call here is safe to repeat:
    /// writes are conditional or idempotent): up to [`ETCD_ATTEMPTS_MAX`] times while the
    /// cache follows etcd (an election is under way, a member died), and once per member
    /// while it does not (the request may have gone to the dead one; when all are gone the
    /// caller hears so within a few seconds).
    async fn call<T, Fut>(&self, mut call: impl FnMut(KvClient) -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for attempt in 0..ETCD_ATTEMPTS_MAX {
            if attempt > 0 {
                let attempts = if self.shared.connected.load(Ordering::Acquire) {
                    ETCD_ATTEMPTS_MAX
                } else {
                    self.members + 1
                };
                if attempt >= attempts {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(ETCD_RETRY_PAUSE_MS)).await;
            }
            match call(self.client.kv_client()).await {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) => last = Some(error),
                Err(error) => return Err(unavailable(format!("etcd refused: {error}"))),
            }
        }
        Err(unavailable(last.map_or_else(
            || "etcd cannot be reached".to_owned(),
            |e| e.to_string(),
        )))
    }

    async fn txn(&self, txn: Txn) -> Result<(bool, i64, Vec<TxnOpResponse>), StoreError> {
        let response = self
            .call(|mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        Ok((response.succeeded(), revision, response.op_responses()))
    }

    async fn get(
        &self,
        key: String,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        self.call(|mut kv| {
            let (key, options) = (key.clone(), options.clone());
            async move { kv.get(key, options).await }
        })
        .await
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.call(|mut kv| {
            let (key, value) = (key.clone(), value.clone());
            async move { kv.put(key, value, None).await }
        })
        .await?;
        Ok(())
    }

    /// The user's row in etcd itself (not the cache): the region it is under, its phone and
    /// its modification revision, and the revision of the read.
    async fn current_user(
        &self,
        user_id: &str,
    ) -> Result<(Option<(RegionId, [u8; 32], i64)>, i64), StoreError> {
        let gets: Vec<TxnOp> = self
            .regions
            .iter()
            .map(|region| TxnOp::get(self.user_key(region, user_id), None))
            .collect();
        let (_, revision, responses) = self.txn(Txn::new().and_then(gets)).await?;
        let mut found = None;
        for (region, response) in self.regions.iter().zip(responses) {
            let TxnOpResponse::Get(get) = response else {
                continue;
            };
            for kv in get.kvs() {
                if let Some(phone) = kv.value_str().ok().and_then(parse_hex32) {
                    // The oldest row wins, as in the cache.
                    let older = found
                        .as_ref()
                        .is_none_or(|(_, _, _, created)| kv.create_revision() < *created);
                    if older {
                        found = Some((
                            region.clone(),
                            phone,
                            kv.mod_revision(),
                            kv.create_revision(),
                        ));
                    }
                }
            }
        }
        Ok((found.map(|(r, p, m, _)| (r, p, m)), revision))
    }

    async fn placed_now(
        &self,
        home: &RegionId,
        user_id: &str,
    ) -> Result<Vec<(String, Service, RegionId)>, StoreError> {
        let prefix = self.place_prefix(home, user_id);
        let response = self
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut out = Vec::new();
        for kv in response.kvs() {
            let (Ok(key), Ok(value)) = (kv.key_str(), kv.value_str()) else {
                continue;
            };
            let service = key.strip_prefix(&prefix).and_then(Service::parse);
            if let (Some(service), Ok(region)) = (service, RegionId::parse(value)) {
                out.push((key.to_owned(), service, region));
            }
        }
        Ok(out)
    }

    pub async fn lookup(
        &self,
        phone_index: [u8; 32],
    ) -> Result<Option<DirectoryEntry>, StoreError> {
        let found = self.read(|cache| {
            cache.phones.get(&phone_index).and_then(|claims| {
                claims.first().map(|(_, home, user_id)| DirectoryEntry {
                    user_id: user_id.clone(),
                    home: home.clone(),
                })
            })
        })?;
        self.answer(found)
    }

    pub async fn claim(
        &self,
        phone_index: [u8; 32],
        user_id: String,
        home: RegionId,
    ) -> Result<(), StoreError> {
        let mut absent: Vec<Compare> = self
            .regions
            .iter()
            .chain(std::iter::once(&home))
            .map(|region| {
                Compare::create_revision(self.phone_key(region, &phone_index), CompareOp::Equal, 0)
            })
            .collect();
        absent.push(Compare::create_revision(
            self.user_key(&home, &user_id),
            CompareOp::Equal,
            0,
        ));
        let mut writes = Writes::default();
        writes.put(self.phone_key(&home, &phone_index), user_id.clone());
        writes.put(self.user_key(&home, &user_id), hex(&phone_index));
        let txn = Txn::new().when(absent).and_then(writes.ops);
        let (claimed, mut revision, _) = self.txn(txn).await?;
        if !claimed {
            // An attempt whose answer was lost may have claimed it already: the number is ours
            // if it holds our (fresh, random) user id.
            let ours = self.get(self.phone_key(&home, &phone_index), None).await?;
            match ours.kvs().first() {
                Some(kv) if kv.value() == user_id.as_bytes() => revision = kv.mod_revision(),
                _ => return Err(StoreError::PhoneTaken),
            }
        }
        self.settle(revision, writes.changes).await;
        Ok(())
    }

    pub async fn move_home(&self, user_id: String, home: RegionId) -> Result<(), StoreError> {
        for _ in 0..ETCD_CAS_ATTEMPTS_MAX {
            let (Some((old, phone, user_rev)), _) = self.current_user(&user_id).await? else {
                return Err(StoreError::NotFound);
            };
            let placed = self.placed_now(&old, &user_id).await?;
            let old_user = self.user_key(&old, &user_id);
            let mut when = vec![Compare::mod_revision(
                old_user.clone(),
                CompareOp::Equal,
                user_rev,
            )];
            let mut writes = Writes::default();
            if old != home {
                // The old home joins the former regions, which move with the user's keys.
                let old_former = self.former_key(&old, &user_id);
                let [(former, former_rev)]: [(Option<String>, i64); 1] = self
                    .values_now(std::slice::from_ref(&old_former))
                    .await?
                    .try_into()
                    .map_err(|_| unavailable("etcd answered a read with missing parts"))?;
                let former = with_left(&parse_former(former.as_deref().unwrap_or("")), &old);
                when.push(Compare::mod_revision(
                    old_former.clone(),
                    CompareOp::Equal,
                    former_rev,
                ));
                writes.delete(old_former);
                writes.put(self.former_key(&home, &user_id), former_text(&former));
                writes.delete(self.phone_key(&old, &phone));
                writes.delete(old_user);
                writes.put(self.phone_key(&home, &phone), user_id.clone());
                writes.put(self.user_key(&home, &user_id), hex(&phone));
                // The new home must not hold the number already.
                when.push(Compare::create_revision(
                    self.phone_key(&home, &phone),
                    CompareOp::Equal,
                    0,
                ));
            }
            for (key, service, region) in &placed {
                // Each placement moves only if nobody changed it since it was read.
                when.push(Compare::value(
                    key.clone(),
                    CompareOp::Equal,
                    region.as_str(),
                ));
                writes.delete(key.clone());
                if *region != home {
                    writes.put(
                        format!("{}{}", self.place_prefix(&home, &user_id), service.as_str()),
                        region.as_str(),
                    );
                }
            }
            let txn = Txn::new().when(when).and_then(writes.ops);
            let (moved, revision, _) = self.txn(txn).await?;
            if moved {
                self.settle(revision, writes.changes).await;
                return Ok(());
            }
        }
        Err(StoreError::Conflict(
            "the user's directory entry kept changing during the move".to_owned(),
        ))
    }

    pub async fn service_region(
        &self,
        user_id: String,
        service: Service,
    ) -> Result<Option<RegionId>, StoreError> {
        let found = self.read(|cache| cache.service_region(&user_id, service))?;
        self.answer(found)
    }

    pub async fn lookup_service(
        &self,
        phone_index: [u8; 32],
        service: Service,
    ) -> Result<Option<(String, RegionId)>, StoreError> {
        let found = self.read(|cache| {
            let (_, _, user_id) = cache.phones.get(&phone_index)?.first()?;
            let region = cache.service_region(user_id, service)?;
            Some((user_id.clone(), region))
        })?;
        self.answer(found)
    }

    pub async fn placements(
        &self,
        user_id: String,
    ) -> Result<Vec<(Service, RegionId)>, StoreError> {
        let found = self.read(|cache| {
            cache
                .user(&user_id)
                .map(|row| cache.placed(&row.home, &user_id).to_vec())
        })?;
        Ok(self.answer(found)?.unwrap_or_default())
    }

    pub async fn place(
        &self,
        user_id: String,
        services: Vec<Service>,
        region: RegionId,
    ) -> Result<(), StoreError> {
        for _ in 0..ETCD_CAS_ATTEMPTS_MAX {
            let (Some((home, _, user_rev)), _) = self.current_user(&user_id).await? else {
                return Err(StoreError::NotFound);
            };
            let prefix = self.place_prefix(&home, &user_id);
            let former_key = self.former_key(&home, &user_id);
            let mut keys: Vec<String> = services
                .iter()
                .map(|service| format!("{prefix}{}", service.as_str()))
                .collect();
            keys.push(former_key.clone());
            let now = self.values_now(&keys).await?;
            // Only while the user still lives where the placement is recorded, and nobody
            // moved these services or changed the former regions since they were read.
            let mut when = vec![Compare::mod_revision(
                self.user_key(&home, &user_id),
                CompareOp::Equal,
                user_rev,
            )];
            for (key, (_, rev)) in keys.iter().zip(&now) {
                when.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
            }
            let (former_now, places_now) = now.split_last().ok_or(StoreError::NotFound)?;
            let mut former = parse_former(former_now.0.as_deref().unwrap_or(""));
            let before = former.clone();
            let mut writes = Writes::default();
            for (key, (was, _)) in keys.iter().zip(places_now) {
                let was = was
                    .as_deref()
                    .and_then(|r| RegionId::parse(r).ok())
                    .unwrap_or_else(|| home.clone());
                if was != region {
                    former = with_left(&former, &was);
                }
                if home == region {
                    writes.delete(key.clone());
                } else {
                    writes.put(key.clone(), region.as_str());
                }
            }
            if former != before {
                writes.put(former_key, former_text(&former));
            }
            let txn = Txn::new().when(when).and_then(writes.ops);
            let (placed, revision, _) = self.txn(txn).await?;
            if placed {
                self.settle(revision, writes.changes).await;
                return Ok(());
            }
        }
        Err(StoreError::Conflict(
            "the user's directory entry kept changing while placing".to_owned(),
        ))
    }

    pub async fn homes_served_in(&self, region: RegionId) -> Result<Vec<RegionId>, StoreError> {
        self.read(|cache| {
            let mut homes: Vec<RegionId> = cache
                .placements
                .iter()
                .filter(|(_, placed)| placed.iter().any(|(_, r)| *r == region))
                .map(|((home, _), _)| home.clone())
                .collect();
            homes.sort();
            homes.dedup();
            homes
        })
    }

    pub async fn home_of(&self, user_id: String) -> Result<Option<RegionId>, StoreError> {
        let found = self.read(|cache| cache.user(&user_id).map(|row| row.home.clone()))?;
        self.answer(found)
    }

    pub async fn former_regions(&self, user_id: String) -> Result<Vec<RegionId>, StoreError> {
        let found = self.read(|cache| {
            cache.user(&user_id).map(|row| {
                cache
                    .formers
                    .get(&(row.home.clone(), user_id.clone()))
                    .cloned()
                    .unwrap_or_default()
            })
        })?;
        Ok(self.answer(found)?.unwrap_or_default())
    }

    pub async fn remove(&self, user_id: String) -> Result<(), StoreError> {
        let (Some((home, phone, _)), _) = self.current_user(&user_id).await? else {
            return Ok(());
        };
        let mut writes = Writes::default();
        writes.delete(self.phone_key(&home, &phone));
        writes.delete(self.user_key(&home, &user_id));
        writes.delete(self.former_key(&home, &user_id));
        // Every placement goes (one prefix delete); the cache drops the ones it knows of.
        let prefix = self.place_prefix(&home, &user_id);
        writes.ops.push(TxnOp::delete(
            prefix.clone(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        ));
        let placed = self.read(|cache| cache.placed(&home, &user_id).to_vec())?;
        for (service, _) in placed {
            writes
                .changes
                .push((format!("{prefix}{}", service.as_str()), None));
        }
        let (_, revision, _) = self.txn(Txn::new().and_then(writes.ops)).await?;
        self.settle(revision, writes.changes).await;
        Ok(())
    }

    pub async fn journal_open(
        &self,
        id: String,
        spec: String,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let key = self.journal_key(&id);
        let create = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(key.clone(), spec, None)]);
        self.txn(create).await?;
        let sealed = self.get(format!("{key}/selected"), None).await?;
        let Some(pages) = sealed
            .kvs()
            .first()
            .and_then(|kv| kv.value_str().ok()?.parse::<usize>().ok())
        else {
            // Not selected yet, or a selection cut off before its last page: select again.
            return Ok(Vec::new());
        };
        let mut users = Vec::new();
        for page in 0..pages {
            let response = self.get(format!("{key}/page/{page}"), None).await?;
            let Some(value) = response.kvs().first() else {
                return Err(StoreError::Conflict(format!(
                    "migration journal {id}: page {page} of the selection is missing"
                )));
            };
            let page: Vec<String> = serde_json::from_slice(value.value())
                .map_err(|e| StoreError::Conflict(format!("migration journal {id}: {e}")))?;
            users.extend(page);
        }
        let step_prefix = format!("{key}/step/");
        let mut steps = HashMap::new();
        let response = self
            .get(step_prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        for entry in response.kvs() {
            if let (Ok(k), Ok(v)) = (entry.key_str(), entry.value_str())
                && let Some(user) = k.strip_prefix(&step_prefix)
            {
                steps.insert(user.to_owned(), v.to_owned());
            }
        }
        Ok(users
            .into_iter()
            .map(|user| {
                let step = steps.remove(&user).unwrap_or_else(|| "selected".to_owned());
                (user, step)
            })
            .collect())
    }

    pub async fn journal_select(&self, id: String, users: Vec<String>) -> Result<(), StoreError> {
        let key = self.journal_key(&id);
        let seal = format!("{key}/selected");
        if !self.get(seal.clone(), None).await?.kvs().is_empty() {
            // Selected already: the first selection stands, its pages untouched.
            return Ok(());
        }
        let mut pages = 0usize;
        for (page, chunk) in users.chunks(JOURNAL_PAGE_USERS).enumerate() {
            let value =
                serde_json::to_vec(chunk).map_err(|e| StoreError::Conflict(e.to_string()))?;
            self.put(format!("{key}/page/{page}"), value).await?;
            pages = page + 1;
        }
        // The selection counts only once its page count is written, and only the first one
        // does (a second run finds it and must not reselect).
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                seal.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(seal, pages.to_string(), None)]);
        self.txn(txn).await?;
        Ok(())
    }

    pub async fn journal_step(
        &self,
        id: String,
        user_id: String,
        step: &'static str,
    ) -> Result<(), StoreError> {
        let key = format!("{}/step/{user_id}", self.journal_key(&id));
        self.put(key, step.as_bytes().to_vec()).await
    }
}

/// What a cache filled by [`replay_for_fuzzing`] holds.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub users: usize,
    pub numbers: usize,
    /// The longest list of former regions any user has.
    pub former_longest: usize,
    /// The most placements any user has.
    pub placements_most: usize,
}

/// For the fuzz target: applies `script` to an empty cache as the watch would (one event a
/// line: `put KEY VALUE` or `del KEY`, each KEY after `P/dir/`), then asks it every question
/// routing asks. Whatever sites wrote into etcd, malformed keys and values are ignored.
#[doc(hidden)]
pub fn replay_for_fuzzing(script: &str) -> ReplaySummary {
    let mut cache = Cache::default();
    for (revision, line) in (1..).zip(script.lines()) {
        if let Some(rest) = line.strip_prefix("put ") {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            cache.put(key, value.as_bytes(), revision);
        } else if let Some(key) = line.strip_prefix("del ") {
            cache.delete(key);
        }
    }
    for user in cache.users.keys() {
        for service in Service::ALL {
            let _ = cache.service_region(user, service);
        }
    }
    for claims in cache.phones.values() {
        if let Some((_, _, user)) = claims.first() {
            let _ = cache.user(user);
        }
    }
    ReplaySummary {
        users: cache.users.len(),
        numbers: cache.phones.len(),
        former_longest: cache.formers.values().map(Vec::len).max().unwrap_or(0),
        placements_most: cache.placements.values().map(Vec::len).max().unwrap_or(0),
    }
}

/// Reads the whole directory prefix at one revision, a page at a time.
async fn sync(client: &Client, dir_prefix: &str) -> Result<(Cache, i64), StoreError> {
    let mut kv = client.kv_client();
    let end = prefix_end(dir_prefix);
    let mut cache = Cache::default();
    let mut from = dir_prefix.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(ETCD_SYNC_PAGE_KEYS);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        let response = kv
            .get(from.clone(), Some(options))
            .await
            .map_err(unavailable)?;
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        let kvs = response.kvs();
        for entry in kvs {
            apply_put(&mut cache, dir_prefix, entry);
        }
        match kvs.last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    cache.revision = revision;
    Ok((cache, revision))
}

fn apply_put(cache: &mut Cache, dir_prefix: &str, entry: &KeyValue) {
    if let Some(rest) = entry
        .key_str()
        .ok()
        .and_then(|k| k.strip_prefix(dir_prefix))
    {
        cache.put(rest, entry.value(), entry.create_revision());
    }
}

/// Keeps the cache following etcd for as long as the directory lives: a watch from the last
/// revision seen, and a full resync whenever the watch breaks.
async fn follow(
    client: Client,
    shared: Arc<Shared>,
    dir_prefix: String,
    mut revision: i64,
    members: usize,
) {
    loop {
        match watch(&client, &shared, &dir_prefix, revision).await {
            Ok(()) => tracing::warn!("the directory watch ended; resyncing"),
            Err(error) => tracing::warn!(%error, "the directory watch broke; resyncing"),
        }
        // At once first, once per member: when one member died the others answer (the first
        // read may go to the dead one), and the cache never counts as stale. Only when none
        // does is it marked so, and retried after a pause.
        let mut attempt = 0usize;
        loop {
            if attempt >= members {
                shared.connected.store(false, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(ETCD_RESYNC_PAUSE_MS)).await;
            }
            attempt = attempt.saturating_add(1);
            match sync(&client, &dir_prefix).await {
                Ok((mut cache, synced)) => {
                    if let Ok(mut current) = shared.cache.write() {
                        cache.carry_own(std::mem::take(&mut current.ahead));
                        *current = cache;
                    }
                    revision = synced;
                    shared.revision.send_replace(synced);
                    break;
                }
                Err(error) if attempt == members => {
                    tracing::warn!(%error, "the directory lost etcd; serving from its cache");
                }
                Err(error) => tracing::debug!(%error, "etcd still unreachable"),
            }
        }
    }
}

async fn watch(
    client: &Client,
    shared: &Shared,
    dir_prefix: &str,
    revision: i64,
) -> Result<(), etcd_client::Error> {
    let options = WatchOptions::new()
        .with_range(prefix_end(dir_prefix))
        .with_start_revision(revision + 1);
    let mut stream = client
        .watch_client()
        .watch(dir_prefix, Some(options))
        .await?;
    shared.connected.store(true, Ordering::Release);
    tracing::info!(revision, "the directory follows etcd");
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            // Compacted past our revision, or the member lost its leader: start over.
            tracing::warn!(
                reason = response.cancel_reason(),
                "the directory watch was cancelled"
            );
            return Ok(());
        }
        let seen = response.header().map_or(0, |h| h.revision());
        if let Ok(mut cache) = shared.cache.write() {
            for event in response.events() {
                let Some(entry) = event.kv() else { continue };
                let Some(rest) = entry
                    .key_str()
                    .ok()
                    .and_then(|k| k.strip_prefix(dir_prefix))
                else {
                    continue;
                };
                if cache.behind_own(rest, entry.mod_revision()) {
                    continue;
                }
                match event.event_type() {
                    EventType::Put => cache.put(rest, entry.value(), entry.create_revision()),
                    EventType::Delete => cache.delete(rest),
                }
            }
            cache.seen(seen);
        }
        if seen > 0 {
            shared.revision.send_if_modified(|r| {
                let newer = seen > *r;
                if newer {
                    *r = seen;
                }
                newer
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_malformed_ones_are_refused() {
        let location = EtcdLocation::parse("etcd://dir@a:2379,b:2380/sovereign/prod").unwrap();
        assert_eq!(location.endpoints, ["http://a:2379", "http://b:2380"]);
        assert_eq!(location.prefix, "/sovereign/prod");
        assert_eq!(location.user.as_deref(), Some("dir"));
        assert!(!location.tls);
        let tls = EtcdLocation::parse("etcds://10.0.0.1:2379/s").unwrap();
        assert_eq!(tls.endpoints, ["https://10.0.0.1:2379"]);
        assert!(tls.tls);
        assert!(EtcdLocation::parse("etcdss://a:1/p").is_err());
        assert_eq!(
            EtcdLocation::parse("postgres://x/y"),
            Err(LocationError::NotEtcd("postgres://x/y".into()))
        );
        assert_eq!(
            EtcdLocation::parse("etcd://a:1"),
            Err(LocationError::NoPrefix)
        );
        assert_eq!(
            EtcdLocation::parse("etcd://a:1/"),
            Err(LocationError::NoPrefix)
        );
        assert_eq!(
            EtcdLocation::parse("etcd:///p"),
            Err(LocationError::NoEndpoint)
        );
        assert!(matches!(
            EtcdLocation::parse("etcd://a/p"),
            Err(LocationError::BadEndpoint(_))
        ));
        assert!(matches!(
            EtcdLocation::parse("etcd://a:1/p q"),
            Err(LocationError::BadPrefix(_))
        ));
        let many = vec!["h:1"; ETCD_ENDPOINTS_MAX + 1].join(",");
        assert_eq!(
            EtcdLocation::parse(&format!("etcd://{many}/p")),
            Err(LocationError::TooManyEndpoints)
        );
        let enough = vec!["h:1"; ETCD_ENDPOINTS_MAX].join(",");
        assert!(EtcdLocation::parse(&format!("etcd://{enough}/p")).is_ok());
    }

    #[test]
    fn former_regions_are_parsed_leniently_and_kept_within_their_bound() {
        let r = |id: &str| RegionId::parse(id).unwrap();
        assert!(parse_former("").is_empty());
        assert_eq!(
            parse_former("cn-beijing,,NOT A REGION,cn-beijing,in-mumbai"),
            vec![r("cn-beijing"), r("in-mumbai")]
        );
        let many: Vec<String> = (0..=FORMER_REGIONS_MAX).map(|i| format!("r-{i}")).collect();
        let parsed = parse_former(&many.join(","));
        assert_eq!(parsed.len(), FORMER_REGIONS_MAX);
        assert_eq!(parsed[0], r("r-0"));
        let moved = with_left(&parsed, &r("new"));
        assert_eq!(moved.len(), FORMER_REGIONS_MAX);
        assert_eq!(moved[0], r("new"));
        assert!(!moved.contains(&r(&format!("r-{}", FORMER_REGIONS_MAX - 1))));
        assert_eq!(with_left(&moved, &r("r-3"))[0], r("r-3"));
        assert_eq!(with_left(&moved, &r("r-3")).len(), FORMER_REGIONS_MAX);
        let mut cache = Cache::default();
        cache.put("in-mumbai/former/", b"cn-beijing", 1);
        cache.put("in-mumbai/former/u1", b"\xff", 1);
        assert!(cache.formers.is_empty());
        cache.put("in-mumbai/former/u1", b"cn-beijing", 2);
        assert_eq!(cache.formers.len(), 1);
        cache.delete("in-mumbai/former/u1");
        assert!(cache.formers.is_empty());
    }

    /// A site reads its own write at once, however slow its watch: the write is in the cache
    /// before the watch reports it, an older event of the watch does not undo it, a resync
    /// from before it keeps it, and once the watch has passed it the watch is in charge again.
    #[test]
    fn own_writes_are_read_at_once_and_older_events_do_not_undo_them() {
        let phone = [7u8; 32];
        let h = hex(&phone);
        let phone_key = format!("in-mumbai/phone/{h}");
        let claim = vec![
            (phone_key.clone(), Some(b"u1".to_vec())),
            ("in-mumbai/user/u1".to_owned(), Some(h.clone().into_bytes())),
        ];
        let mut cache = Cache {
            revision: 10,
            ..Cache::default()
        };
        cache.own(12, claim.clone());
        assert_eq!(cache.phones[&phone][0].2, "u1");
        assert_eq!(cache.user("u1").unwrap().home.as_str(), "in-mumbai");
        // The number was released at 11, before the claim: that event comes late.
        assert!(cache.behind_own(&phone_key, 11));
        assert!(!cache.behind_own(&phone_key, 12));
        assert!(!cache.behind_own("in-mumbai/user/u2", 1));

        // A resync that read at 11 keeps the write; one that read at 12 has it already.
        let mut resynced = Cache {
            revision: 11,
            ..Cache::default()
        };
        resynced.carry_own(cache.ahead.clone());
        assert_eq!(resynced.phones[&phone][0].2, "u1");
        assert_eq!(resynced.ahead.len(), 2);
        let mut later = Cache {
            revision: 12,
            ..Cache::default()
        };
        later.carry_own(cache.ahead.clone());
        assert!(later.phones.is_empty() && later.ahead.is_empty());

        // The watch reaches 12: the write is the watch's now, and a write of a revision the
        // cache has seen is not applied again over what may be newer.
        cache.seen(12);
        assert!(cache.ahead.is_empty());
        assert!(!cache.behind_own(&phone_key, 11));
        cache.own(12, vec![(phone_key, None)]);
        assert_eq!(cache.phones[&phone][0].2, "u1");
    }

    #[test]
    fn malformed_keys_and_values_are_ignored_and_the_oldest_claim_wins() {
        let mut cache = Cache::default();
        let phone = [7u8; 32];
        let h = hex(&phone);
        cache.put("nowhere/phone/zz", b"u", 1);
        cache.put(&format!("in-mumbai/phone/{}", &h[..10]), b"u", 1);
        cache.put("in-mumbai/user/u1", b"not hex", 1);
        cache.put("in-mumbai/place/u1/nonsense", b"sg-singapore", 1);
        cache.put("in-mumbai/place/u1/messaging", b"NOT A REGION", 1);
        assert!(cache.phones.is_empty() && cache.users.is_empty() && cache.placements.is_empty());
        cache.put(&format!("cn-beijing/phone/{h}"), b"late", 9);
        cache.put(&format!("in-mumbai/phone/{h}"), b"first", 3);
        assert_eq!(cache.phones[&phone][0].2, "first");
        cache.delete(&format!("in-mumbai/phone/{h}"));
        assert_eq!(cache.phones[&phone][0].2, "late");
    }
}
