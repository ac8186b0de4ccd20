//! The simulated phone's profile: the shared profile format (`sovereign_model::Profile`), so
//! that the same file drives the phone and the scan of its traffic.
//!
//! The behaviours see it through two views. [`OwnerData`] is what the user owns and may choose to
//! share (their number, contacts, texts); it has no field for a hardware or subscriber identifier,
//! and it is all the `sovereign` behaviour is given. [`Subscriber`] adds the IMEI, IMSI, ICCID and
//! carrier, and only the `legacy-2014` behaviour is given it.

use std::path::Path;

use sovereign_model::Profile;

use crate::DeviceError;
use crate::journal::phone_digits;

/// A profile the simulator can run: it has the phone's own number.
#[derive(Debug, Clone)]
pub struct PhoneProfile {
    profile: Profile,
    phone_e164: String,
}

/// One entry of the address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactEntry {
    pub name: String,
    /// E.164, `+` and digits.
    pub phone: String,
}

/// What the user owns: their number, address book and texts. Nothing that identifies the handset
/// or the SIM.
#[derive(Debug, Clone)]
pub struct OwnerData {
    /// E.164, `+` and digits.
    pub phone: String,
    /// The name the user gives the device, shown in their session list.
    pub device_name: String,
    pub contacts: Vec<ContactEntry>,
    pub sms: Vec<String>,
}

/// Everything the 2014 phone's system services could read, the hardware and SIM included.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub owner: OwnerData,
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub carrier: Option<String>,
}

/// The device name used when the profile gives none.
const DEVICE_NAME_DEFAULT: &str = "Sovereign phone simulator";

impl PhoneProfile {
    /// Reads and checks a profile file.
    ///
    /// # Errors
    /// When the file cannot be read, is not a valid profile (unknown keys are named), or lacks
    /// the phone's own number in international format.
    pub fn load(path: &Path) -> Result<PhoneProfile, DeviceError> {
        let origin = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|e| DeviceError::Profile {
                path: origin.clone(),
                message: e.to_string(),
            })?
            .len();
        if size > sovereign_model::profile::PROFILE_BYTES_MAX as u64 {
            return Err(DeviceError::Profile {
                path: origin,
                message: format!(
                    "{size} bytes, at most {} allowed",
                    sovereign_model::profile::PROFILE_BYTES_MAX
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| DeviceError::Profile {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        PhoneProfile::from_toml(&text, &origin)
    }

    /// Parses a profile; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`PhoneProfile::load`].
    pub fn from_toml(text: &str, origin: &str) -> Result<PhoneProfile, DeviceError> {
        let profile = Profile::from_toml(text, origin).map_err(|e| DeviceError::Profile {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        PhoneProfile::new(profile, origin)
    }

    /// # Errors
    /// When the profile has no phone number in international format, or a contact's number is
    /// not in international format.
    pub fn new(profile: Profile, origin: &str) -> Result<PhoneProfile, DeviceError> {
        let fail = |message: String| DeviceError::Profile {
            path: origin.to_owned(),
            message,
        };
        let phone = profile.identifiers.phone.as_deref().ok_or_else(|| {
            fail("[identifiers] phone is required: the phone's own number".into())
        })?;
        let phone_e164 = e164(phone).ok_or_else(|| {
            fail(format!(
                "phone {phone:?} is not in international format (+CC…)"
            ))
        })?;
        for contact in &profile.contacts {
            if let Some(number) = &contact.phone
                && e164(number).is_none()
            {
                return Err(fail(format!(
                    "contact number {number:?} is not in international format (+CC…)"
                )));
            }
        }
        Ok(PhoneProfile {
            profile,
            phone_e164,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The phone's own number, E.164.
    pub fn phone(&self) -> &str {
        &self.phone_e164
    }

    pub fn owner_data(&self) -> OwnerData {
        let name = self.profile.device.name.trim();
        OwnerData {
            phone: self.phone_e164.clone(),
            device_name: if name.is_empty() {
                DEVICE_NAME_DEFAULT.to_owned()
            } else {
                name.to_owned()
            },
            contacts: self
                .profile
                .contacts
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let phone = e164(c.phone.as_deref()?)?;
                    let name = c
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("Contact {}", i + 1));
                    Some(ContactEntry { name, phone })
                })
                .collect(),
            sms: self.profile.sms.iter().map(|s| s.text.clone()).collect(),
        }
    }

    pub(crate) fn subscriber(&self) -> Subscriber {
        let ids = &self.profile.identifiers;
        Subscriber {
            owner: self.owner_data(),
            imei: ids.imei.clone(),
            imsi: ids.imsi.clone(),
            carrier: ids.carrier.clone(),
        }
    }
}

/// `+` and the digits of a number written in international format, with any separators.
fn e164(number: &str) -> Option<String> {
    let trimmed = number.trim();
    let digits = phone_digits(trimmed);
    let only_separators = trimmed
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.'));
    (trimmed.starts_with('+') && only_separators && (8..=15).contains(&digits.len()))
        .then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_and_checked() {
        assert_eq!(e164("+91 98765-43210").as_deref(), Some("+919876543210"));
        assert_eq!(e164("98765 43210"), None);
        assert_eq!(e164("+91 call me"), None);
    }

    #[test]
    fn a_profile_without_a_number_is_refused() {
        let err = PhoneProfile::from_toml(
            "[device]\nhome_country = \"IN\"\n[identifiers]\nimei = \"1\"\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("phone is required"), "{err}");
    }
}
