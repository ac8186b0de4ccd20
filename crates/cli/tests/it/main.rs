//! The `sovereign` binary as a user runs it.

mod device;
mod migrate;
mod ops;
#[path = "../../../cloud/tests/it/pg_cluster.rs"]
mod pg_cluster;
mod serve;
