//! The `sovereign` binary as a user runs it.

mod serve;
mod ops;
