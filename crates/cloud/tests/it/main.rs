//! Integration tests: each starts the real server on its own port, over HTTPS, in its own temp
//! directory, and speaks HTTP to it.

mod accounts;
mod backup;
mod browser;
mod consent;
mod dashboard;
mod deletion;
#[cfg(feature = "etcd")]
mod directory;
mod encryption;
mod erasure;
#[cfg(feature = "etcd")]
mod etcd_cluster;
mod export;
mod former;
mod input;
mod ledger;
mod limits;
mod messaging;
mod migration;
mod moves;
mod ops;
mod pg_cluster;
mod postgres;
mod quotas;
mod regions;
mod retention;
mod services;
mod sessions;
mod sites;
mod support;
mod trust;
