//! The phone against a real cloud (every region, in-process, port 0, a temp dir) and the legacy
//! endpoint, through the library as `sovereign demo` uses it.

mod errors;
mod legacy;
mod sovereign;
mod support;
