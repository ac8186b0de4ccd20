//! The crate's one error type.

/// Everything that can go wrong on the phone's side: its inputs (profile, CA, key log, SMS
/// outbox), the network, and the cloud's answers (carrying the problem+json `code`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("profile {path}: {message}")]
    Profile { path: String, message: String },
    #[error("CA file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("key log {path}: {message}")]
    KeyLog { path: String, message: String },
    #[error("SMS outbox {path}: {message}")]
    Outbox { path: String, message: String },
    #[error("{0:?} is not a URL this client can use: {1}")]
    BadUrl(String, String),
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "TLS with {url} failed: {message} (is the CA file the one of this server, e.g. DATA_DIR/tls/ca.pem?)"
    )]
    Tls { url: String, message: String },
    #[error("{url} answered {status} {code}: {detail}")]
    Api {
        url: String,
        status: u16,
        /// The stable problem+json `code` ("consent_required", "wrong_region", …), or
        /// "unknown" when the answer was not problem+json.
        code: String,
        detail: String,
    },
    #[error("{url} answered something this client does not understand: {message}")]
    BadResponse { url: String, message: String },
    #[error("more than {max} redirects starting at {url}")]
    TooManyRedirects { url: String, max: usize },
    #[error("refusing a redirect from {from} to {to}: {reason}")]
    RedirectRefused {
        from: String,
        to: String,
        reason: String,
    },
    #[error("{0:?} is not a behaviour; use legacy-2014 or sovereign")]
    UnknownBehaviour(String),
    #[error("{0:?} is not a backup kind; use contacts, sms or photos")]
    UnknownBackupKind(String),
    #[error("the {behaviour} behaviour needs {what}")]
    MissingInput {
        behaviour: &'static str,
        what: &'static str,
    },
    #[error("legacy endpoint: {0}")]
    Legacy(String),
    /// A step failed. The cause is part of the message (and not also a `source`, so that error
    /// reporters printing the chain do not print it twice).
    #[error("step {step}: {cause}")]
    Step {
        step: String,
        cause: Box<DeviceError>,
    },
}

impl DeviceError {
    /// The problem+json code of an answer from the cloud, if this is one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            DeviceError::Api { code, .. } => Some(code),
            DeviceError::Step { cause, .. } => cause.api_code(),
            _ => None,
        }
    }
}
