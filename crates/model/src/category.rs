use std::fmt;

/// A category of personal data the cloud can hold. Retention policies and the privacy dashboard
/// speak in these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataCategory {
    Account,
    Sessions,
    ConsentHistory,
    Messages,
    Contacts,
    Sms,
    Photos,
    Location,
    Diagnostics,
}

impl DataCategory {
    pub const ALL: [DataCategory; 9] = [
        DataCategory::Account,
        DataCategory::Sessions,
        DataCategory::ConsentHistory,
        DataCategory::Messages,
        DataCategory::Contacts,
        DataCategory::Sms,
        DataCategory::Photos,
        DataCategory::Location,
        DataCategory::Diagnostics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::Account => "account",
            DataCategory::Sessions => "sessions",
            DataCategory::ConsentHistory => "consent_history",
            DataCategory::Messages => "messages",
            DataCategory::Contacts => "contacts",
            DataCategory::Sms => "sms",
            DataCategory::Photos => "photos",
            DataCategory::Location => "location",
            DataCategory::Diagnostics => "diagnostics",
        }
    }

    pub fn parse(name: &str) -> Option<DataCategory> {
        DataCategory::ALL
            .into_iter()
            .find(|category| category.as_str() == name)
    }
}

impl fmt::Display for DataCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DataCategory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DataCategory {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        DataCategory::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown data category {name:?}")))
    }
}
