//! From bytes to findings: each identifier's encoded patterns, the matcher that finds them, the
//! decoders that undo layers, and where a destination is (country database, `--sites`) and how
//! bad it is (policy).

pub mod decode;
pub mod geo;
pub mod matcher;
pub mod needle;
pub mod phone_metadata;
pub mod policy;
pub mod sites;
