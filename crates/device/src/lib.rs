//! The phone: a typed client for Sovereign's cloud, and a phone simulator that runs the 2014 test
//! procedure step by step in two behaviours.
//!
//! - [`client::CloudClient`] speaks the cloud's API v1 over TLS (rustls on aws-lc-rs, trusting
//!   the CA it is given), follows `307 wrong_region` to the user's home region and stays there,
//!   turns problem+json answers into [`DeviceError::Api`] with their `code`, and can write a key
//!   log ([`tls::KeyLogFile`]) so that a capture of its traffic can be decrypted. Its request
//!   types have no field for an IMEI, IMSI or ICCID.
//! - [`sim::Phone`] runs [`sim::procedure`]: first boot, SIM, Wi-Fi, location, contacts, SMS,
//!   MMS, calls, sign-in, cloud messaging, backup, then an update and the same activity again.
//!   `legacy-2014` does what the 2014 investigation saw (identifiers to an account endpoint "in
//!   cn-beijing" before any consent, base64 inside HTTPS after the update), against the
//!   simulator's own [`legacy::LegacyEndpoint`]; `sovereign` sends nothing before the user signs
//!   in and consents, and then only the user's own number, to their home region, over TLS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sovereign_device::DeviceError> {
//! use sovereign_device::{Behaviour, CloudTarget, PhoneOptions, PhoneProfile, run};
//!
//! let profile = PhoneProfile::load("config/phone.toml".as_ref())?;
//! let mut options = PhoneOptions::new(Behaviour::Sovereign);
//! options.cloud = Some(CloudTarget {
//!     url: "https://127.0.0.1:8445".into(),
//!     ca_pem: std::fs::read("data/tls/ca.pem").unwrap_or_default(),
//!     ca_origin: "data/tls/ca.pem".into(),
//! });
//! options.sms_outbox = Some("data/sms-outbox.jsonl".into());
//! options.key_log = Some("keys.log".into());
//! let report = run(profile, options).await?;
//! print!("{}", sovereign_device::render_text(&report));
//! # Ok(()) }
//! ```

pub mod client;
pub mod error;
pub mod journal;
pub mod legacy;
pub mod profile;
pub mod report;
pub mod sim;
pub mod tls;

pub use client::{BackupKind, CloudClient, TlsSettings};
pub use error::DeviceError;
pub use journal::{Carried, Encoding, RequestRecord};
pub use legacy::{LEGACY_HOST, LegacyEndpoint, LegacyRecord, LegacyTarget};
pub use profile::PhoneProfile;
pub use report::render_text;
pub use sim::{
    Behaviour, CloudTarget, Phone, PhoneOptions, RunReport, Step, StepReport, procedure, run,
};
