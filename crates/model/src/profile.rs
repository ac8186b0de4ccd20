//! The device profile: the identifiers of the phone under test, read from TOML. The scanner
//! searches for them and the phone simulator sends (or keeps) them, so the format lives here.

use serde::Deserialize;

use crate::CountryCode;

/// Largest profile file we read; a real one is a few hundred bytes.
pub const PROFILE_BYTES_MAX: usize = 1 << 20;
/// Most contacts or SMS texts one profile may list.
pub const PROFILE_ENTRIES_MAX: usize = 10_000;

/// The phone under test and everything that identifies it or its user.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub device: Device,
    #[serde(default)]
    pub identifiers: Identifiers,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub sms: Vec<Sms>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    #[serde(default)]
    pub name: String,
    /// ISO 3166 alpha-2: where the phone's user lives; a destination elsewhere crosses a border.
    pub home_country: CountryCode,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifiers {
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    pub phone: Option<String>,
    pub carrier: Option<String>,
    pub android_id: Option<String>,
    pub advertising_id: Option<String>,
    pub wifi_mac: Option<String>,
    pub serial: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    pub text: String,
}

/// A profile that cannot be used, with the file (or other origin) it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profile {path}: {message}")]
pub struct ParseProfileError {
    pub path: String,
    pub message: String,
}

impl Profile {
    /// Parses a profile; `origin` names it in error messages (usually the file path).
    ///
    /// # Errors
    /// When the text is larger than [`PROFILE_BYTES_MAX`], is not TOML of this shape (an unknown
    /// key is named in the message), lists more than [`PROFILE_ENTRIES_MAX`] contacts or texts, has
    /// a latitude or longitude out of range, or lists no identifier at all.
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, ParseProfileError> {
        let fail = |message: String| ParseProfileError {
            path: origin.to_owned(),
            message,
        };
        if text.len() > PROFILE_BYTES_MAX {
            return Err(fail(format!(
                "{} bytes, at most {PROFILE_BYTES_MAX} allowed",
                text.len()
            )));
        }
        let profile: Profile = toml::from_str(text).map_err(|e| fail(e.message().to_owned()))?;
        if profile.contacts.len() > PROFILE_ENTRIES_MAX {
            return Err(fail(format!(
                "{} contacts, at most {PROFILE_ENTRIES_MAX} allowed",
                profile.contacts.len()
            )));
        }
        if profile.sms.len() > PROFILE_ENTRIES_MAX {
            return Err(fail(format!(
                "{} sms, at most {PROFILE_ENTRIES_MAX} allowed",
                profile.sms.len()
            )));
        }
        if let Some(location) = profile.location {
            if !(-90.0..=90.0).contains(&location.lat) {
                return Err(fail(format!("latitude {} is out of range", location.lat)));
            }
            if !(-180.0..=180.0).contains(&location.lon) {
                return Err(fail(format!("longitude {} is out of range", location.lon)));
            }
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Profile::from_toml(
            "[device]\nhome_country = \"IN\"\n[identifiers]\nimei = \"1\"\nimie = \"2\"\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("imie"), "{err}");
    }

    #[test]
    fn bad_country_is_an_error() {
        let err = Profile::from_toml("[device]\nhome_country = \"India\"\n", "p.toml").unwrap_err();
        assert!(err.to_string().contains("India"), "{err}");
    }

    #[test]
    fn profile_entries_max_is_enforced() {
        let text = format!(
            "[device]\nhome_country = \"IN\"\n{}",
            "[[sms]]\ntext = \"x\"\n".repeat(PROFILE_ENTRIES_MAX + 1)
        );
        let err = Profile::from_toml(&text, "p.toml").unwrap_err();
        assert!(err.to_string().contains("sms"), "{err}");
        let big = "#".repeat(PROFILE_BYTES_MAX + 1);
        assert!(Profile::from_toml(&big, "p.toml").is_err());
    }

    #[test]
    fn latitude_out_of_range_is_an_error() {
        let err = Profile::from_toml(
            "[device]\nhome_country = \"IN\"\n[location]\nlat = 91.0\nlon = 0.0\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("91"), "{err}");
    }
}
