//! The `sovereign` binary as a user runs it.

mod migrate;
mod ops;
mod serve;
