//! [`Directory`]: the calls every region makes, answered by whichever backend the site uses.

use std::path::Path;
#[cfg(feature = "etcd")]
use std::sync::Arc;

use sovereign_model::RegionId;

#[cfg(feature = "etcd")]
use super::etcd::{EtcdDirectory, EtcdOptions};
use super::{DirectoryEntry, SqliteDirectory};
use crate::domain::Service;
use crate::store::StoreError;

/// Whether this site's copy of the directory is following etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    /// The watch is live: the cache is behind etcd only by the watch's delay.
    pub connected: bool,
    /// The etcd revision the cache reflects.
    pub revision: i64,
}

/// The directory of a site: SQLite (embedded default) or etcd (several hosts; a build with
/// the `etcd` feature).
#[derive(Clone)]
pub enum Directory {
    Sqlite(SqliteDirectory),
    #[cfg(feature = "etcd")]
    Etcd(Arc<EtcdDirectory>),
}

/// Calls the same method on whichever backend this is.
macro_rules! either {
    ($self:ident, $d:ident => $call:expr) => {
        match $self {
            Directory::Sqlite($d) => $call,
            #[cfg(feature = "etcd")]
            Directory::Etcd($d) => $call,
        }
    };
}

impl Directory {
    /// The SQLite directory in `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or created.
    pub fn open(path: &Path) -> Result<Directory, StoreError> {
        SqliteDirectory::open(path).map(Directory::Sqlite)
    }

    /// The etcd directory: connects and fills this site's cache before returning.
    ///
    /// # Errors
    /// When no etcd member answers or the credentials are refused.
    #[cfg(feature = "etcd")]
    pub async fn connect_etcd(options: EtcdOptions) -> Result<Directory, StoreError> {
        Ok(Directory::Etcd(Arc::new(
            EtcdDirectory::connect(options).await?,
        )))
    }

    /// The directory a site is given: `None` is the SQLite file `sqlite_path` (the embedded
    /// default); `etcd://[USER@]HOST:PORT[,...]/PREFIX` is etcd, as `USER` with `password`
    /// (`etcds://` over TLS, trusting `ca_pem`);
    /// any other location without a `scheme://` is the path of an SQLite file.
    ///
    /// # Errors
    /// When the location is malformed, or the directory cannot be opened or reached.
    pub async fn at(
        location: Option<&str>,
        sqlite_path: &Path,
        password: Option<String>,
        ca_pem: Option<Vec<u8>>,
        regions: Vec<RegionId>,
    ) -> anyhow::Result<Directory> {
        use anyhow::Context;
        let location = match location {
            Some(location) if location.contains("://") => location,
            other => {
                let path = other.map_or(sqlite_path, Path::new);
                return Directory::open(path)
                    .with_context(|| format!("opening the directory {}", path.display()));
            }
        };
        #[cfg(not(feature = "etcd"))]
        {
            let _ = (password, ca_pem, regions);
            anyhow::bail!(
                "{location}: this build of sovereign has no etcd directory; build it with \
                 `cargo build --release --features etcd` (which needs protoc: Debian's \
                 protobuf-compiler), or give a directory file path"
            )
        }
        #[cfg(feature = "etcd")]
        {
            let parsed = super::etcd::EtcdLocation::parse(location)?;
            match (parsed.tls, ca_pem.is_some()) {
                (true, false) => anyhow::bail!(
                    "{location}: an etcds:// directory needs the CA of its members' certificates (--directory-ca FILE)"
                ),
                (false, true) => anyhow::bail!(
                    "--directory-ca is for a directory reached over TLS: write the location as etcds://"
                ),
                _ => {}
            }
            let shown = format!("{} at {}", parsed.prefix, parsed.endpoints.join(","));
            Directory::connect_etcd(EtcdOptions {
                location: parsed,
                password,
                ca_pem,
                regions,
            })
            .await
            .with_context(|| format!("connecting to the etcd directory {shown}"))
        }
    }

    /// For etcd, whether the cache follows etcd; SQLite is always current.
    pub fn status(&self) -> Option<CacheStatus> {
        match self {
            Directory::Sqlite(_) => None,
            #[cfg(feature = "etcd")]
            Directory::Etcd(etcd) => Some(etcd.status()),
        }
    }

    pub async fn lookup(
        &self,
        phone_index: [u8; 32],
    ) -> Result<Option<DirectoryEntry>, StoreError> {
        either!(self, d => d.lookup(phone_index).await)
    }

    /// Records a new user. Fails with [`StoreError::PhoneTaken`] when the number already belongs
    /// to a user, in any region.
    pub async fn claim(
        &self,
        phone_index: [u8; 32],
        user_id: String,
        home: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        match self {
            Directory::Sqlite(d) => d.claim(phone_index, user_id, home, now).await,
            #[cfg(feature = "etcd")]
            Directory::Etcd(d) => d.claim(phone_index, user_id, home).await,
        }
    }

    /// Points a user at a new home region (the last step of a migration); a service placed in
    /// the new home is with the account again.
    pub async fn move_home(
        &self,
        user_id: String,
        home: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        match self {
            Directory::Sqlite(d) => d.move_home(user_id, home, now).await,
            #[cfg(feature = "etcd")]
            Directory::Etcd(d) => d.move_home(user_id, home).await,
        }
    }

    /// Where a user's service lives: its placement, else the home region. `None` for an
    /// unknown user.
    pub async fn service_region(
        &self,
        user_id: String,
        service: Service,
    ) -> Result<Option<RegionId>, StoreError> {
        either!(self, d => d.service_region(user_id, service).await)
    }

    /// The user a number belongs to and the region holding their `service`.
    pub async fn lookup_service(
        &self,
        phone_index: [u8; 32],
        service: Service,
    ) -> Result<Option<(String, RegionId)>, StoreError> {
        either!(self, d => d.lookup_service(phone_index, service).await)
    }

    /// The services of a user placed away from their home, and where.
    pub async fn placements(
        &self,
        user_id: String,
    ) -> Result<Vec<(Service, RegionId)>, StoreError> {
        either!(self, d => d.placements(user_id).await)
    }

    /// Places a user's services in `region`; placing one in the home removes its placement.
    /// [`StoreError::NotFound`] for an unknown user.
    pub async fn place(
        &self,
        user_id: String,
        services: Vec<Service>,
        region: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        match self {
            Directory::Sqlite(d) => d.place(user_id, services, region, now).await,
            #[cfg(feature = "etcd")]
            Directory::Etcd(d) => d.place(user_id, services, region).await,
        }
    }

    /// The home regions of the users some of whose services live in `region`.
    pub async fn homes_served_in(&self, region: RegionId) -> Result<Vec<RegionId>, StoreError> {
        either!(self, d => d.homes_served_in(region).await)
    }

    pub async fn home_of(&self, user_id: String) -> Result<Option<RegionId>, StoreError> {
        either!(self, d => d.home_of(user_id).await)
    }

    /// The regions that have held the user's account or one of their services and that the
    /// data has left, the most recently left first (at most
    /// [`super::FORMER_REGIONS_MAX`]); may include where the user is again now.
    pub async fn former_regions(&self, user_id: String) -> Result<Vec<RegionId>, StoreError> {
        either!(self, d => d.former_regions(user_id).await)
    }

    pub async fn remove(&self, user_id: String) -> Result<(), StoreError> {
        either!(self, d => d.remove(user_id).await)
    }

    /// Starts a migration's journal, or finds the one a previous run left: the users it holds
    /// with their last finished step, in selection order; empty for a new migration.
    pub async fn journal_open(
        &self,
        id: String,
        spec: String,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Directory::Sqlite(d) => d.journal_open(id, spec, now).await,
            #[cfg(feature = "etcd")]
            Directory::Etcd(d) => d.journal_open(id, spec).await,
        }
    }

    /// Records the users a migration moves, all at step `selected`, as one unit.
    pub async fn journal_select(&self, id: String, users: Vec<String>) -> Result<(), StoreError> {
        either!(self, d => d.journal_select(id, users).await)
    }

    pub async fn journal_step(
        &self,
        id: String,
        user_id: String,
        step: &'static str,
    ) -> Result<(), StoreError> {
        either!(self, d => d.journal_step(id, user_id, step).await)
    }
}
