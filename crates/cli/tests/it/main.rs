//! The `sovereign` binary as a user runs it.

mod ops;
mod serve;
