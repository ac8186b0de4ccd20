//! The phone simulator: the 2014 test procedure as named steps, each doing on the network what a
//! phone's system services would do under the chosen behaviour, each reported with every request
//! it made.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use serde_json::json;
use sovereign_model::ConsentScope;

use crate::DeviceError;
use crate::client::{
    Account, BackupKind, CloudClient, ContactRecord, Photo, Session, SmsRecord, TlsSettings,
};
use crate::journal::{Journal, Needles, RequestRecord};
use crate::legacy::{LEGACY_REGION, LegacyClient, LegacyEndpoint, LegacyRecord, LegacyTarget};
use crate::profile::{ContactEntry, OwnerData, PhoneProfile, Subscriber};
use crate::tls::KeyLogFile;

/// Largest part of the SMS outbox read after a sign-up, looking for the code.
pub const OUTBOX_TAIL_BYTES_MAX: u64 = 1 << 20;
/// The password the simulated user signs up with when none is given.
pub const PASSWORD_DEFAULT: &str = "correct horse battery staple";

/// A step of the 2014 procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    FirstBoot,
    InsertSim,
    JoinWifi,
    AllowLocation,
    AddContact,
    SendSms,
    ReceiveSms,
    SendMms,
    ReceiveMms,
    MakeCall,
    ReceiveCall,
    SignIn,
    CloudMessagingOn,
    BackupOn,
    /// An over-the-air system update; the activity steps after it show what it changed.
    Update,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::FirstBoot => "first-boot",
            Step::InsertSim => "insert-sim",
            Step::JoinWifi => "join-wifi",
            Step::AllowLocation => "allow-location",
            Step::AddContact => "add-contact",
            Step::SendSms => "send-sms",
            Step::ReceiveSms => "receive-sms",
            Step::SendMms => "send-mms",
            Step::ReceiveMms => "receive-mms",
            Step::MakeCall => "make-call",
            Step::ReceiveCall => "receive-call",
            Step::SignIn => "sign-in",
            Step::CloudMessagingOn => "cloud-messaging-on",
            Step::BackupOn => "backup-on",
            Step::Update => "update",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phone's everyday activity, done once before the update and once after it.
const ACTIVITY: [Step; 7] = [
    Step::AddContact,
    Step::SendSms,
    Step::ReceiveSms,
    Step::SendMms,
    Step::ReceiveMms,
    Step::MakeCall,
    Step::ReceiveCall,
];

/// The whole procedure, in order: what the 2014 investigation did (first boot to backup), then
/// an update and the same activity again, as its follow-up did.
pub fn procedure() -> Vec<Step> {
    let mut steps = vec![
        Step::FirstBoot,
        Step::InsertSim,
        Step::JoinWifi,
        Step::AllowLocation,
    ];
    steps.extend(ACTIVITY);
    steps.extend([
        Step::SignIn,
        Step::CloudMessagingOn,
        Step::BackupOn,
        Step::Update,
    ]);
    steps.extend(ACTIVITY);
    steps
}

/// What the phone's system services do with the user's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Behaviour {
    /// What the 2014 investigation found.
    #[serde(rename = "legacy-2014")]
    Legacy2014,
    /// Ours.
    #[serde(rename = "sovereign")]
    Sovereign,
}

impl Behaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Legacy2014 => "legacy-2014",
            Behaviour::Sovereign => "sovereign",
        }
    }

    /// # Errors
    /// When `name` is neither `legacy-2014` nor `sovereign`.
    pub fn parse(name: &str) -> Result<Behaviour, DeviceError> {
        match name {
            "legacy-2014" => Ok(Behaviour::Legacy2014),
            "sovereign" => Ok(Behaviour::Sovereign),
            other => Err(DeviceError::UnknownBehaviour(other.to_owned())),
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the `sovereign` phone finds the cloud.
#[derive(Clone)]
pub struct CloudTarget {
    /// Any region's base URL; a sign-up there for a number it may not hold is redirected home.
    pub url: String,
    pub ca_pem: Vec<u8>,
    /// Names the CA in errors (usually its path).
    pub ca_origin: String,
}

/// How to run a phone.
#[derive(Clone)]
pub struct PhoneOptions {
    pub behaviour: Behaviour,
    /// Needed by `sovereign`.
    pub cloud: Option<CloudTarget>,
    /// The cloud's SMS gateway file (`DATA_DIR/sms-outbox.jsonl`), where the sign-up code
    /// arrives. Needed by `sovereign`.
    pub sms_outbox: Option<PathBuf>,
    /// Where to write TLS secrets (SSLKEYLOGFILE format).
    pub key_log: Option<PathBuf>,
    /// An endpoint already running for `legacy-2014`; without one the phone starts its own on
    /// loopback.
    pub legacy: Option<LegacyTarget>,
    /// What `backup-on` turns on in the `sovereign` behaviour. Photos by default; contacts and
    /// SMS only when asked for.
    pub backup: BTreeSet<BackupKind>,
    pub password: String,
    /// The user already has an account (the phone ran before): `sign-in` only signs in, with
    /// no sign-up and no code, so no SMS gateway is needed.
    pub existing_account: bool,
}

impl PhoneOptions {
    pub fn new(behaviour: Behaviour) -> PhoneOptions {
        PhoneOptions {
            behaviour,
            cloud: None,
            sms_outbox: None,
            key_log: None,
            legacy: None,
            backup: BTreeSet::from([BackupKind::Photos]),
            password: PASSWORD_DEFAULT.to_owned(),
            existing_account: false,
        }
    }
}

/// Before or after the simulated update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    BeforeUpdate,
    AfterUpdate,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Position in the procedure, from 1.
    pub number: usize,
    pub step: Step,
    pub phase: Phase,
    /// What the phone did, in words.
    pub summary: String,
    /// Every request the step made, in order; empty means nothing was sent.
    pub requests: Vec<RequestRecord>,
}

impl StepReport {
    pub fn nothing_sent(&self) -> bool {
        self.requests.is_empty()
    }
}

/// The legacy endpoint a run started for itself, and what it received.
#[derive(Debug, Clone, Serialize)]
pub struct LegacyEndpointReport {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub received: Vec<LegacyRecord>,
}

/// What a whole run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub behaviour: Behaviour,
    /// The user's own number.
    pub phone: String,
    /// The region holding the account (`sovereign`), or the one the legacy endpoint stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The home region's base URL the client ended up talking to (`sovereign`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_url: Option<String>,
    /// What backup-on turned on (`sovereign`).
    pub backup: Vec<BackupKind>,
    pub steps: Vec<StepReport>,
    /// Present when the run started its own legacy endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_endpoint: Option<LegacyEndpointReport>,
}

impl RunReport {
    /// Every request of the run, in order.
    pub fn requests(&self) -> impl Iterator<Item = &RequestRecord> {
        self.steps.iter().flat_map(|s| s.requests.iter())
    }
}

/// What happened on the phone itself in an activity step, before any behaviour reacts.
struct Activity {
    summary: String,
    /// The other party's number, for messages and calls.
    peer: Option<ContactEntry>,
    /// A contact just added.
    contact: Option<ContactEntry>,
    /// An SMS just sent or received.
    sms: Option<SmsRecord>,
}

/// What the user does on the phone, the same under both behaviours.
#[derive(Default)]
struct PhoneState {
    address_book: Vec<ContactEntry>,
    sms_log: Vec<SmsRecord>,
    contacts_offered: usize,
    texts_used: usize,
    updated: bool,
    steps_done: usize,
}

/// A simulated phone. Build it with [`Phone::new`], then run [`procedure`] with
/// [`Phone::run_procedure`] or step by step with [`Phone::run_step`].
pub struct Phone {
    profile: PhoneProfile,
    options: PhoneOptions,
    journal: Journal,
    state: PhoneState,
    system: System,
    own_endpoint: Option<LegacyEndpoint>,
}

enum System {
    Legacy(Box<LegacySystem>),
    Sovereign(Box<SovereignSystem>),
}

impl Phone {
    /// Prepares a phone: opens the key log, reads nothing from the network. For `legacy-2014`
    /// without [`PhoneOptions::legacy`], starts a legacy endpoint on loopback.
    ///
    /// # Errors
    /// When the behaviour lacks an input it needs (`sovereign`: cloud and SMS outbox), the CA is
    /// unusable, the key log cannot be opened, or the endpoint cannot start.
    pub async fn new(profile: PhoneProfile, options: PhoneOptions) -> Result<Phone, DeviceError> {
        let key_log = options
            .key_log
            .as_deref()
            .map(KeyLogFile::open)
            .transpose()?
            .map(Arc::new);
        let journal = Journal::new();
        let needles = Needles::from_profile(profile.profile());
        let mut own_endpoint = None;
        let system = match options.behaviour {
            Behaviour::Legacy2014 => {
                let target = match &options.legacy {
                    Some(target) => target.clone(),
                    None => {
                        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                        let endpoint = LegacyEndpoint::start(loopback, loopback).await?;
                        let target = endpoint.target();
                        own_endpoint = Some(endpoint);
                        target
                    }
                };
                let client = LegacyClient::new(target, key_log, journal.clone(), needles)?;
                System::Legacy(Box::new(LegacySystem {
                    client,
                    subscriber: profile.subscriber(),
                    signed_in: false,
                }))
            }
            Behaviour::Sovereign => {
                let cloud = options.cloud.clone().ok_or(DeviceError::MissingInput {
                    behaviour: "sovereign",
                    what: "the cloud's URL and CA (--cloud, --ca)",
                })?;
                let outbox = match (&options.sms_outbox, options.existing_account) {
                    (Some(path), _) => Some(path.clone()),
                    (None, true) => None,
                    (None, false) => {
                        return Err(DeviceError::MissingInput {
                            behaviour: "sovereign",
                            what: "the cloud's SMS outbox file for the sign-up code (--sms-outbox)",
                        });
                    }
                };
                let tls = TlsSettings {
                    ca_pem: cloud.ca_pem.clone(),
                    ca_origin: cloud.ca_origin.clone(),
                    key_log,
                };
                let client =
                    CloudClient::new(&cloud.url, &tls)?.with_journal(journal.clone(), needles);
                System::Sovereign(Box::new(SovereignSystem {
                    client,
                    owner: profile.owner_data(),
                    outbox,
                    existing_account: options.existing_account,
                    password: options.password.clone(),
                    backup: options.backup.clone(),
                    session: None,
                    account: None,
                    backup_on: false,
                }))
            }
        };
        Ok(Phone {
            profile,
            options,
            journal,
            state: PhoneState::default(),
            system,
            own_endpoint,
        })
    }

    /// The legacy endpoint this phone started for itself, if any.
    pub fn own_legacy_endpoint(&self) -> Option<&LegacyEndpoint> {
        self.own_endpoint.as_ref()
    }

    /// Every request made so far.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs one step.
    ///
    /// # Errors
    /// When the network or the cloud fails; the error names the step.
    pub async fn run_step(&mut self, step: Step) -> Result<StepReport, DeviceError> {
        let start = self.journal.len();
        self.state.steps_done += 1;
        let phase = if self.state.updated {
            Phase::AfterUpdate
        } else {
            Phase::BeforeUpdate
        };
        let activity = self.activity(step);
        let summary = match &mut self.system {
            System::Legacy(system) => system.run(step, &activity, &self.state).await,
            System::Sovereign(system) => system.run(step, &activity, &self.state).await,
        }
        .map_err(|cause| DeviceError::Step {
            step: step.to_string(),
            cause: Box::new(cause),
        })?;
        if step == Step::Update {
            self.state.updated = true;
        }
        Ok(StepReport {
            number: self.state.steps_done,
            step,
            phase,
            summary,
            requests: self.journal.since(start),
        })
    }

    /// Runs the whole [`procedure`].
    ///
    /// # Errors
    /// As [`Phone::run_step`].
    pub async fn run_procedure(&mut self) -> Result<RunReport, DeviceError> {
        let mut steps = Vec::new();
        for step in procedure() {
            steps.push(self.run_step(step).await?);
        }
        Ok(self.report(steps))
    }

    /// A run report of `steps` (from [`Phone::run_step`]).
    pub fn report(&self, steps: Vec<StepReport>) -> RunReport {
        let (region, home_url, backup) = match &self.system {
            System::Legacy(_) => (Some(LEGACY_REGION.to_owned()), None, Vec::new()),
            System::Sovereign(system) => (
                system.account.as_ref().map(|a| a.region.clone()),
                system.session.as_ref().map(|_| system.client.base_url()),
                system.backup.iter().copied().collect(),
            ),
        };
        RunReport {
            behaviour: self.options.behaviour,
            phone: self.profile.phone().to_owned(),
            region,
            home_url,
            backup,
            steps,
            legacy_endpoint: self.own_endpoint.as_ref().map(|e| LegacyEndpointReport {
                http: e.http_addr(),
                https: e.https_addr(),
                received: e.records(),
            }),
        }
    }

    /// What the user does on the phone in `step`, whatever the behaviour.
    fn activity(&mut self, step: Step) -> Activity {
        let owner = self.profile.owner_data();
        let state = &mut self.state;
        let mut activity = Activity {
            summary: String::new(),
            peer: None,
            contact: None,
            sms: None,
        };
        let peer = |i: usize| owner.contacts.get(i % owner.contacts.len().max(1)).cloned();
        let clock = format!("2014-08-10T10:{:02}:00Z", state.steps_done.min(59));
        let next_text = |state: &mut PhoneState| {
            let text = owner
                .sms
                .get(state.texts_used % owner.sms.len().max(1))
                .cloned()
                .unwrap_or_else(|| "hello".to_owned());
            state.texts_used += 1;
            text
        };
        match step {
            Step::AddContact => {
                if let Some(contact) = peer(state.contacts_offered) {
                    state.contacts_offered += 1;
                    if !state.address_book.contains(&contact) {
                        state.address_book.push(contact.clone());
                    }
                    activity.summary =
                        format!("added contact {} ({})", contact.name, contact.phone);
                    activity.contact = Some(contact);
                } else {
                    activity.summary = "the profile lists no contact to add".to_owned();
                }
            }
            Step::SendSms | Step::ReceiveSms | Step::SendMms | Step::ReceiveMms => {
                let outgoing = matches!(step, Step::SendSms | Step::SendMms);
                let mms = matches!(step, Step::SendMms | Step::ReceiveMms);
                let who = peer(if outgoing { 0 } else { 1 });
                let text = next_text(state);
                let address = who
                    .as_ref()
                    .map_or_else(|| "+0000".to_owned(), |c| c.phone.clone());
                let kind = if mms { "MMS with a photo" } else { "SMS" };
                activity.summary = if outgoing {
                    format!("sent an {kind} to {address} over the carrier network")
                } else {
                    format!("received an {kind} from {address} over the carrier network")
                };
                if !mms {
                    let record = SmsRecord {
                        address,
                        text,
                        direction: if outgoing { "sent" } else { "inbox" }.to_owned(),
                        at: clock,
                    };
                    state.sms_log.push(record.clone());
                    activity.sms = Some(record);
                }
                activity.peer = who;
            }
            Step::MakeCall | Step::ReceiveCall => {
                let outgoing = step == Step::MakeCall;
                let who = peer(if outgoing { 0 } else { 1 });
                let number = who
                    .as_ref()
                    .map_or("an unknown number", |c| c.phone.as_str());
                activity.summary = if outgoing {
                    format!("called {number} over the carrier network")
                } else {
                    format!("answered a call from {number} over the carrier network")
                };
                activity.peer = who;
            }
            Step::FirstBoot => activity.summary = "booted for the first time".to_owned(),
            Step::InsertSim => {
                activity.summary = "read the SIM (carrier, IMSI, ICCID, number)".to_owned()
            }
            Step::JoinWifi => activity.summary = "joined Wi-Fi".to_owned(),
            Step::AllowLocation => activity.summary = "the user allowed location".to_owned(),
            Step::SignIn | Step::CloudMessagingOn | Step::BackupOn | Step::Update => {}
        }
        activity
    }
}

/// Runs the whole procedure on a new phone.
///
/// # Errors
/// As [`Phone::new`] and [`Phone::run_step`].
pub async fn run(profile: PhoneProfile, options: PhoneOptions) -> Result<RunReport, DeviceError> {
    let mut phone = Phone::new(profile, options).await?;
    phone.run_procedure().await
}

fn join_summary(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// legacy-2014

struct LegacySystem {
    client: LegacyClient,
    subscriber: Subscriber,
    signed_in: bool,
}

impl LegacySystem {
    /// The identity every report to the account endpoint carries: what 2014 found at first boot
    /// (IMEI, carrier, number), plus the IMSI once the user has signed in.
    fn identity(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        let s = &self.subscriber;
        map.insert("imei".into(), json!(s.imei));
        map.insert("carrier".into(), json!(s.carrier));
        map.insert("phone".into(), json!(s.owner.phone));
        if self.signed_in {
            map.insert("imsi".into(), json!(s.imsi));
        }
        map
    }

    /// Sends one report: plain JSON over HTTP before the update; after it, the same JSON
    /// base64-encoded, over HTTPS.
    async fn report(
        &self,
        path: &str,
        extra: serde_json::Value,
        updated: bool,
    ) -> Result<String, DeviceError> {
        let mut body = self.identity();
        if let serde_json::Value::Object(extra) = extra {
            body.extend(extra);
        }
        let plain = serde_json::Value::Object(body).to_string();
        let (payload, how) = if updated {
            let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
            (
                json!({ "data": encoded }).to_string(),
                "base64 inside HTTPS",
            )
        } else {
            (plain, "cleartext HTTP")
        };
        self.client.post(path, &payload, updated).await?;
        Ok(format!(
            "reported to the account endpoint in {LEGACY_REGION} ({how})"
        ))
    }

    async fn run(
        &mut self,
        step: Step,
        activity: &Activity,
        state: &PhoneState,
    ) -> Result<String, DeviceError> {
        let updated = state.updated;
        let peer = activity.peer.as_ref().map(|p| p.phone.clone());
        let sent = match step {
            Step::FirstBoot => {
                self.report(
                    "/api/v1/device/activate",
                    json!({ "event": "first_boot" }),
                    updated,
                )
                .await?
            }
            Step::InsertSim => {
                self.report(
                    "/api/v1/device/sim",
                    json!({ "event": "sim_inserted" }),
                    updated,
                )
                .await?
            }
            Step::JoinWifi => {
                self.report(
                    "/api/v1/device/heartbeat",
                    json!({ "network": "wifi" }),
                    updated,
                )
                .await?
            }
            // 2014 saw no location leave the phone.
            Step::AllowLocation => String::new(),
            Step::AddContact => match &activity.contact {
                Some(contact) => {
                    self.report(
                        "/api/v1/sync/contacts",
                        json!({ "contacts": [{ "number": contact.phone }] }),
                        updated,
                    )
                    .await?
                }
                None => String::new(),
            },
            Step::SendSms | Step::ReceiveSms | Step::SendMms | Step::ReceiveMms => {
                let kind = if matches!(step, Step::SendMms | Step::ReceiveMms) {
                    "mms"
                } else {
                    "sms"
                };
                let key = if matches!(step, Step::SendSms | Step::SendMms) {
                    "to"
                } else {
                    "from"
                };
                self.report(
                    &format!("/api/v1/messaging/{kind}"),
                    json!({ key: peer }),
                    updated,
                )
                .await?
            }
            Step::MakeCall | Step::ReceiveCall => {
                let direction = if step == Step::MakeCall {
                    "outgoing"
                } else {
                    "incoming"
                };
                self.report(
                    "/api/v1/telephony/call",
                    json!({ "number": peer, "direction": direction }),
                    updated,
                )
                .await?
            }
            Step::SignIn => {
                self.signed_in = true;
                let sent = self
                    .report(
                        "/api/v1/account/login",
                        json!({ "event": "sign_in" }),
                        updated,
                    )
                    .await?;
                format!(
                    "signed in to the phone maker's account; from now on the IMSI goes too; {sent}"
                )
            }
            Step::CloudMessagingOn => {
                let sent = self
                    .report(
                        "/api/v1/messaging/register",
                        json!({ "service": "cloud_messaging" }),
                        updated,
                    )
                    .await?;
                format!("cloud messaging on; {sent}")
            }
            Step::BackupOn => {
                let numbers: Vec<&str> = state
                    .address_book
                    .iter()
                    .map(|c| c.phone.as_str())
                    .collect();
                let sent = self
                    .report(
                        "/api/v1/backup/enable",
                        json!({ "service": "cloud_backup", "contacts": numbers }),
                        updated,
                    )
                    .await?;
                format!("cloud backup on; {sent}")
            }
            Step::Update => {
                let sent = self
                    .report(
                        "/api/v1/device/update",
                        json!({ "from": "KXDCNBF5.0", "to": "KXDCNBH6.0" }),
                        updated,
                    )
                    .await?;
                format!(
                    "installed the over-the-air update (from now on reports go base64-encoded over HTTPS); {sent}"
                )
            }
        };
        Ok(join_summary(&[activity.summary.clone(), sent]))
    }
}

// ---------------------------------------------------------------------------------------------
// sovereign

struct SovereignSystem {
    client: CloudClient,
    owner: OwnerData,
    /// `None` only with `existing_account`.
    outbox: Option<PathBuf>,
    existing_account: bool,
    password: String,
    backup: BTreeSet<BackupKind>,
    session: Option<Session>,
    account: Option<Account>,
    backup_on: bool,
}

/// Item ids for backups: letters, digits and `-` only, as the API requires.
fn item_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n}")
}

impl SovereignSystem {
    fn session(&self) -> Result<&Session, DeviceError> {
        self.session.as_ref().ok_or(DeviceError::MissingInput {
            behaviour: "sovereign",
            what: "a signed-in session (run sign-in first)",
        })
    }

    fn home(&self) -> String {
        self.account
            .as_ref()
            .map_or_else(|| "the home region".to_owned(), |a| a.region.clone())
    }

    async fn run(
        &mut self,
        step: Step,
        activity: &Activity,
        state: &PhoneState,
    ) -> Result<String, DeviceError> {
        let on_phone = |what: &str| join_summary(&[activity.summary.clone(), what.to_owned()]);
        match step {
            Step::FirstBoot => Ok(on_phone(
                "no setup call, no activation, no time or connectivity check: nothing sent before consent",
            )),
            Step::InsertSim => Ok(on_phone("carrier, IMSI and ICCID stay on the phone")),
            Step::JoinWifi => Ok(on_phone("no connectivity check or check-in")),
            Step::AllowLocation => Ok(on_phone(
                "location is for apps on the phone; the cloud's location scope stays off",
            )),
            Step::AddContact => {
                let mut parts = vec![activity.summary.clone()];
                match (&activity.contact, self.backup_on && self.backup.contains(&BackupKind::Contacts)) {
                    (Some(contact), true) => {
                        let n = state.address_book.iter().position(|c| c == contact).unwrap_or(0);
                        self.put_contact(n, contact).await?;
                        parts.push(format!(
                            "synced the new contact (name and number) to the contacts backup in {} over TLS (opted in)",
                            self.home()
                        ));
                    }
                    _ => parts.push("stays on the phone".to_owned()),
                }
                Ok(join_summary(&parts))
            }
            Step::SendSms | Step::ReceiveSms => {
                let mut parts = vec![activity.summary.clone()];
                match (&activity.sms, self.backup_on && self.backup.contains(&BackupKind::Sms)) {
                    (Some(sms), true) => {
                        let n = state.sms_log.len();
                        self.put_sms(n, sms).await?;
                        parts.push(format!(
                            "synced the SMS (number and text) to the SMS backup in {} over TLS (opted in)",
                            self.home()
                        ));
                    }
                    _ => parts.push("nothing sent: SMS go over the carrier network only".to_owned()),
                }
                Ok(join_summary(&parts))
            }
            Step::SendMms | Step::ReceiveMms | Step::MakeCall | Step::ReceiveCall => Ok(on_phone(
                "nothing sent: the number stays between the phone and the carrier",
            )),
            Step::SignIn => self.sign_in().await,
            Step::CloudMessagingOn => self.messaging_on().await,
            Step::BackupOn => self.backup_on(state).await,
            Step::Update => Ok(
                "installed the over-the-air update; it changes no privacy setting and sends nothing"
                    .to_owned(),
            ),
        }
    }

    /// Signs up (the code read from the SMS gateway's outbox), or finds the account already
    /// there, then opens a session.
    async fn sign_in(&mut self) -> Result<String, DeviceError> {
        let phone = self.owner.phone.clone();
        let (account, created) = match &self.outbox {
            Some(outbox) if !self.existing_account => {
                let outbox_start = std::fs::metadata(outbox).map_or(0, |m| m.len());
                let started = self.client.sign_up(&phone, &self.password).await?;
                let code = read_code(outbox, outbox_start, &phone)?;
                match self.client.verify(&started.verification_id, &code).await {
                    Ok(account) => (Some(account), true),
                    Err(e) if e.api_code() == Some("phone_taken") => (None, false),
                    Err(e) => return Err(e),
                }
            }
            _ => (None, false),
        };
        let session = self
            .client
            .sign_in(&phone, &self.password, &self.owner.device_name)
            .await?;
        let me = self.client.me(&session).await?;
        let region = me.region.clone();
        self.account = Some(account.unwrap_or(Account {
            user_id: me.user_id,
            region: me.region,
        }));
        self.session = Some(session);
        let account = if created {
            format!("signed up {phone} with the code texted to it")
        } else {
            format!("{phone} already had an account (the code was not needed)")
        };
        Ok(format!(
            "{account}; signed in as {:?}; the account and the number are held in the home \
             region {region} ({}), reached over TLS; no IMEI, IMSI or ICCID is asked for or sent",
            self.owner.device_name,
            self.client.base_url(),
        ))
    }

    async fn notice_version(&self, scope: ConsentScope) -> Result<(u32, String), DeviceError> {
        let consents = self.client.consents(self.session()?).await?;
        consents
            .into_iter()
            .find(|c| c.scope == scope.as_str())
            .map(|c| (c.notice.version, c.notice.region))
            .ok_or_else(|| DeviceError::BadResponse {
                url: format!("{}/v1/consents", self.client.base_url()),
                message: format!("no notice for scope {scope}"),
            })
    }

    /// Shows the notice and grants the scope against the version shown.
    async fn grant(&self, scope: ConsentScope) -> Result<String, DeviceError> {
        let (version, region) = self.notice_version(scope).await?;
        self.client.grant(self.session()?, scope, version).await?;
        Ok(format!(
            "granted {scope} (notice v{version}, data in {region})"
        ))
    }

    /// Grants `messaging`, then sends a note to self: the one number the phone may share is the
    /// user's own, and the cloud accepts a message to oneself.
    async fn messaging_on(&mut self) -> Result<String, DeviceError> {
        let granted = self.grant(ConsentScope::Messaging).await?;
        let session = self.session()?.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let to = self.owner.phone.clone();
        self.client
            .send_message(&session, &to, "Note to self: cloud messaging is on.", &id)
            .await?;
        let page = self.client.messages(&session, None).await?;
        let received = page.messages.iter().any(|m| m.id == id);
        if received {
            self.client.ack(&session, &id).await?;
        }
        Ok(format!(
            "{granted}; sent a note to self ({to}, the user's own number, the only number shared) \
             and {} it through the inbox",
            if received {
                "received and acknowledged"
            } else {
                "did not yet receive"
            }
        ))
    }

    async fn backup_on(&mut self, state: &PhoneState) -> Result<String, DeviceError> {
        let mut parts = Vec::new();
        let home = self.home();
        for kind in self.backup.clone() {
            parts.push(self.grant(kind.scope()).await?);
            match kind {
                BackupKind::Photos => {
                    let photo = Photo::new(generated_photo())?;
                    self.client
                        .put_photo(self.session()?, &item_id("IMG", 1), &photo)
                        .await?;
                    parts.push(format!("uploaded 1 photo to {home}"));
                }
                BackupKind::Contacts => {
                    for (n, contact) in state.address_book.iter().enumerate() {
                        self.put_contact(n, contact).await?;
                    }
                    parts.push(format!(
                        "sent {} contact(s), names and numbers, to {home} (opted in)",
                        state.address_book.len()
                    ));
                }
                BackupKind::Sms => {
                    for (n, sms) in state.sms_log.iter().enumerate() {
                        self.put_sms(n + 1, sms).await?;
                    }
                    parts.push(format!(
                        "sent {} SMS, numbers and texts, to {home} (opted in)",
                        state.sms_log.len()
                    ));
                }
            }
        }
        let off: Vec<&str> = BackupKind::ALL
            .into_iter()
            .filter(|k| !self.backup.contains(k))
            .map(BackupKind::as_str)
            .collect();
        if !off.is_empty() {
            parts.push(format!(
                "{} backup stays off: opt in with --backup contacts,sms,photos",
                off.join(" and ")
            ));
        }
        self.backup_on = true;
        Ok(format!(
            "backup on, over TLS to the home region only: {}",
            parts.join("; ")
        ))
    }

    async fn put_contact(&self, n: usize, contact: &ContactEntry) -> Result<(), DeviceError> {
        let record = ContactRecord {
            name: contact.name.clone(),
            phones: vec![contact.phone.clone()],
        };
        self.client
            .put_contact(self.session()?, &item_id("contact", n + 1), &record)
            .await?;
        Ok(())
    }

    async fn put_sms(&self, n: usize, sms: &SmsRecord) -> Result<(), DeviceError> {
        self.client
            .put_sms(self.session()?, &item_id("sms", n), sms)
            .await?;
        Ok(())
    }
}

/// Finds the code the cloud texted to `phone` in the outbox lines written after `start`.
fn read_code(outbox: &std::path::Path, start: u64, phone: &str) -> Result<String, DeviceError> {
    use std::io::{Read, Seek, SeekFrom};
    let fail = |message: String| DeviceError::Outbox {
        path: outbox.display().to_string(),
        message,
    };
    let mut file = std::fs::File::open(outbox).map_err(|e| fail(e.to_string()))?;
    let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    // A file that shrank was replaced: read it from the start.
    let from = if len < start { 0 } else { start };
    if len - from > OUTBOX_TAIL_BYTES_MAX {
        return Err(fail(format!(
            "{} new bytes since the sign-up, at most {OUTBOX_TAIL_BYTES_MAX} read",
            len - from
        )));
    }
    file.seek(SeekFrom::Start(from))
        .map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    file.take(OUTBOX_TAIL_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|m| m.get("to").and_then(|v| v.as_str()) == Some(phone))
        .and_then(|m| m.get("code").and_then(|v| v.as_str()).map(str::to_owned))
        .ok_or_else(|| {
            fail(format!(
                "no code for {phone} arrived after the sign-up (is this the outbox of the cloud at --cloud?)"
            ))
        })
}

/// A small generated picture (16x16 BMP, a colour gradient): the photo the phone backs up.
pub fn generated_photo() -> Vec<u8> {
    const SIDE: u32 = 16;
    let row_bytes = SIDE * 3; // 48, already a multiple of 4
    let pixels = row_bytes * SIDE;
    let file_size = 54 + pixels;
    let mut bmp = Vec::with_capacity(file_size as usize);
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&file_size.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&(SIDE as i32).to_le_bytes());
    bmp.extend_from_slice(&(SIDE as i32).to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&pixels.to_le_bytes());
    bmp.extend_from_slice(&[0; 16]);
    for y in 0..SIDE {
        for x in 0..SIDE {
            // Invariant: x, y < 16, so every channel is below 256.
            bmp.extend_from_slice(&[(x * 16) as u8, (y * 16) as u8, 0x80]);
        }
    }
    bmp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_procedure_names_every_2014_step_in_order() {
        let names: Vec<&str> = procedure().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names[..15],
            [
                "first-boot",
                "insert-sim",
                "join-wifi",
                "allow-location",
                "add-contact",
                "send-sms",
                "receive-sms",
                "send-mms",
                "receive-mms",
                "make-call",
                "receive-call",
                "sign-in",
                "cloud-messaging-on",
                "backup-on",
                "update",
            ]
        );
        assert_eq!(names[15..], names[4..11]);
    }

    #[test]
    fn behaviour_names_parse() {
        assert_eq!(Behaviour::parse("sovereign").unwrap(), Behaviour::Sovereign);
        let err = Behaviour::parse("xiaomi").unwrap_err();
        assert!(err.to_string().contains("legacy-2014"), "{err}");
    }

    #[test]
    fn the_code_is_the_latest_one_for_the_number_written_after_the_sign_up() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("sms-outbox.jsonl");
        let old = "{\"to\":\"+919876543210\",\"code\":\"111111\",\"text\":\"\"}\n";
        std::fs::write(&outbox, old).unwrap();
        let start = old.len() as u64;
        let err = read_code(&outbox, start, "+919876543210").unwrap_err();
        assert!(
            err.to_string().contains("no code for +919876543210"),
            "{err}"
        );
        let new = "{\"to\":\"+919876543210\",\"code\":\"222222\",\"text\":\"\"}\n\
                   {\"to\":\"+14155550100\",\"code\":\"333333\",\"text\":\"\"}\n";
        std::fs::write(&outbox, format!("{old}{new}")).unwrap();
        assert_eq!(
            read_code(&outbox, start, "+919876543210").unwrap(),
            "222222"
        );
    }

    #[test]
    fn outbox_tail_bytes_max_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("sms-outbox.jsonl");
        let line = "{\"to\":\"+14155550100\",\"code\":\"333333\",\"text\":\"\"}\n";
        let lines = OUTBOX_TAIL_BYTES_MAX as usize / line.len() + 1;
        std::fs::write(&outbox, line.repeat(lines)).unwrap();
        let err = read_code(&outbox, 0, "+919876543210").unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn the_generated_photo_is_a_bmp() {
        let photo = generated_photo();
        assert_eq!(photo.len(), 54 + 16 * 16 * 3);
        assert!(Photo::new(photo).is_ok());
        assert!(Photo::new(b"imei=1".to_vec()).is_err());
    }
}
