//! The `sovereign` binary as a user runs it.

mod demo;
mod device;
#[path = "../../../cloud/tests/it/etcd_cluster.rs"]
mod etcd_cluster;
mod hosts;
mod migrate;
mod ops;
#[path = "../../../cloud/tests/it/pg_cluster.rs"]
mod pg_cluster;
mod serve;
