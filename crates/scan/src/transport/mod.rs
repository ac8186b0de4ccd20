//! TCP segments to byte streams: our own reassembly, per direction.

pub mod reassembly;
