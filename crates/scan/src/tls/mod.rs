//! TLS: the hellos read in the clear, key logs, and decryption of records with their secrets.

pub mod cipher;
pub mod decrypt;
pub mod dtls;
pub mod hello;
pub mod keylog;
pub mod suites;
