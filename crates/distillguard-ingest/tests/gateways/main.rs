//! Gateway decoders against real and realistic payloads, framed exactly as the gateways send them.

mod config;
mod envoy;
mod kong;
mod litellm;
mod otlp;

use std::path::PathBuf;

pub fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}
