//! The services a user has besides their account. Each can live in its own region (the
//! directory's placement); without one it lives in the user's home region with the account.

use sovereign_model::ConsentScope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Messaging,
    Backup,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Messaging, Service::Backup];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Messaging => "messaging",
            Service::Backup => "backup",
        }
    }

    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The service an API path belongs to; `None` for the account's own paths (sessions,
    /// consents, export, deletion, the dashboard), which are served by the home region.
    pub fn of_path(path: &str) -> Option<Service> {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/v1/messages") {
            Some(Service::Messaging)
        } else if under("/v1/backup") {
            Some(Service::Backup)
        } else {
            None
        }
    }

    /// The service whose data a consent scope covers.
    pub fn of_scope(scope: ConsentScope) -> Option<Service> {
        match scope {
            ConsentScope::Messaging => Some(Service::Messaging),
            ConsentScope::BackupContacts | ConsentScope::BackupSms | ConsentScope::BackupPhotos => {
                Some(Service::Backup)
            }
            ConsentScope::Location | ConsentScope::Diagnostics => None,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_service() {
        for (path, service) in [
            ("/v1/messages", Some(Service::Messaging)),
            ("/v1/messages/ws", Some(Service::Messaging)),
            ("/v1/messages/abc/ack", Some(Service::Messaging)),
            ("/v1/messagesx", None),
            ("/v1/backup/contacts/1", Some(Service::Backup)),
            ("/v1/me", None),
            ("/v1/consents/messaging", None),
            ("/v1/me/export", None),
        ] {
            assert_eq!(Service::of_path(path), service, "{path}");
        }
    }
}
