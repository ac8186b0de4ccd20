use std::fmt;

use crate::DataCategory;

/// A purpose the user can switch on and off. Everything is off until the user grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsentScope {
    Messaging,
    BackupContacts,
    BackupSms,
    BackupPhotos,
    Location,
    Diagnostics,
}

impl ConsentScope {
    pub const ALL: [ConsentScope; 6] = [
        ConsentScope::Messaging,
        ConsentScope::BackupContacts,
        ConsentScope::BackupSms,
        ConsentScope::BackupPhotos,
        ConsentScope::Location,
        ConsentScope::Diagnostics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::Messaging => "messaging",
            ConsentScope::BackupContacts => "backup.contacts",
            ConsentScope::BackupSms => "backup.sms",
            ConsentScope::BackupPhotos => "backup.photos",
            ConsentScope::Location => "location",
            ConsentScope::Diagnostics => "diagnostics",
        }
    }

    pub fn parse(name: &str) -> Option<ConsentScope> {
        ConsentScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
    }

    /// The categories of data that exist only because this scope is granted; withdrawing the
    /// scope erases them.
    pub fn data_categories(self) -> &'static [DataCategory] {
        match self {
            ConsentScope::Messaging => &[DataCategory::Messages],
            ConsentScope::BackupContacts => &[DataCategory::Contacts],
            ConsentScope::BackupSms => &[DataCategory::Sms],
            ConsentScope::BackupPhotos => &[DataCategory::Photos],
            ConsentScope::Location => &[DataCategory::Location],
            ConsentScope::Diagnostics => &[DataCategory::Diagnostics],
        }
    }
}

impl fmt::Display for ConsentScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ConsentScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ConsentScope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ConsentScope::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown consent scope {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for scope in ConsentScope::ALL {
            assert_eq!(ConsentScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(ConsentScope::parse("backup"), None);
    }
}
