use std::fmt;

/// A kind of identifier or personal datum that can leave a phone. The names are the ones every
/// report and profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierKind {
    Imei,
    Imsi,
    Iccid,
    Phone,
    Carrier,
    AndroidId,
    AdvertisingId,
    WifiMac,
    Serial,
    Email,
    Location,
    Contact,
    Sms,
}

impl IdentifierKind {
    pub const ALL: [IdentifierKind; 13] = [
        IdentifierKind::Imei,
        IdentifierKind::Imsi,
        IdentifierKind::Iccid,
        IdentifierKind::Phone,
        IdentifierKind::Carrier,
        IdentifierKind::AndroidId,
        IdentifierKind::AdvertisingId,
        IdentifierKind::WifiMac,
        IdentifierKind::Serial,
        IdentifierKind::Email,
        IdentifierKind::Location,
        IdentifierKind::Contact,
        IdentifierKind::Sms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Imei => "imei",
            IdentifierKind::Imsi => "imsi",
            IdentifierKind::Iccid => "iccid",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Carrier => "carrier",
            IdentifierKind::AndroidId => "android_id",
            IdentifierKind::AdvertisingId => "advertising_id",
            IdentifierKind::WifiMac => "wifi_mac",
            IdentifierKind::Serial => "serial",
            IdentifierKind::Email => "email",
            IdentifierKind::Location => "location",
            IdentifierKind::Contact => "contact",
            IdentifierKind::Sms => "sms",
        }
    }

    pub fn parse(name: &str) -> Option<IdentifierKind> {
        IdentifierKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Identifiers of the handset or the subscription: they name one device or SIM for life and
    /// cannot be changed by the user, so leaking them is worse than leaking a resettable ID.
    pub fn is_hardware_or_subscriber(self) -> bool {
        matches!(
            self,
            IdentifierKind::Imei
                | IdentifierKind::Imsi
                | IdentifierKind::Iccid
                | IdentifierKind::Serial
                | IdentifierKind::WifiMac
        )
    }

    /// Personal content or contact data about the user or the people they talk to.
    pub fn is_personal_content(self) -> bool {
        matches!(
            self,
            IdentifierKind::Phone
                | IdentifierKind::Contact
                | IdentifierKind::Sms
                | IdentifierKind::Email
                | IdentifierKind::Location
        )
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for IdentifierKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for IdentifierKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        IdentifierKind::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown identifier kind {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in IdentifierKind::ALL {
            assert_eq!(IdentifierKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(IdentifierKind::parse("IMEI"), None);
    }
}
