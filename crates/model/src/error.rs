/// Everything that can be wrong with a value or policy handed to this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    #[error("invalid region id {0:?}: use lowercase letters, digits and '-', 1 to 32 characters")]
    InvalidRegionId(String),
    #[error("invalid country code {0:?}: expected two ASCII letters (ISO 3166-1 alpha-2)")]
    InvalidCountryCode(String),
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("policy names region {region:?}, which is not configured")]
    UnknownRegion { region: String },
}
