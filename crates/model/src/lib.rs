//! The vocabulary every part of Sovereign shares: the identifiers a phone can leak, the categories
//! of personal data the cloud holds, the consent scopes that gate them, regions, countries and the
//! residency policy that says which region may hold whose data.
//!
//! This crate does no I/O and has no async runtime: policies are parsed from text that the caller
//! has already read.
//!
//! ```
//! use sovereign_model::{ConsentScope, CountryCode, ResidencyPolicy};
//!
//! let policy = ResidencyPolicy::from_toml(
//!     "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\"]\n",
//! ).unwrap();
//! let india = CountryCode::parse("IN").unwrap();
//! assert_eq!(policy.home_region(india).as_str(), "in-mumbai");
//! assert_eq!(ConsentScope::parse("backup.sms"), Some(ConsentScope::BackupSms));
//! ```

mod category;
mod consent;
mod country;
mod error;
mod identifier;
pub mod profile;
mod region;
mod residency;

pub use category::DataCategory;
pub use consent::ConsentScope;
pub use country::CountryCode;
pub use error::ModelError;
pub use identifier::IdentifierKind;
pub use profile::{ParseProfileError, Profile};
pub use region::{RegionConfig, RegionId, RegionsConfig};
pub use residency::ResidencyPolicy;
