//! The `sovereign` binary as a user runs it.

mod demo;
mod device;
// The etcd suites need the `etcd` feature (`scripts/test.sh` turns it on).
#[cfg(feature = "etcd")]
#[path = "../../../cloud/tests/it/etcd_cluster.rs"]
mod etcd_cluster;
#[cfg(feature = "etcd")]
mod hosts;
mod migrate;
mod ops;
#[path = "../../../cloud/tests/it/pg_cluster.rs"]
mod pg_cluster;
mod serve;
