//! A minimal hyper server answering every request with 200 and three small
//! headers: the reference the load harness (`benches/load.rs`) measures the
//! gateway against, runnable on its own for ad-hoc comparisons.
//!
//! ```text
//! cargo run --release --example hyper_baseline -- 127.0.0.1:9000 [--stack]
//! ```
//!
//! `--stack` serves through the gateway's connection stack (see the module).

use std::net::SocketAddr;
use std::time::Duration;

#[path = "../benches/support/baseline.rs"]
mod baseline;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(a) => a.parse().map_err(std::io::Error::other)?,
        None => SocketAddr::from(([127, 0, 0, 1], 9000)),
    };
    // Bounded: stops by itself after an hour.
    let stack = std::env::args().any(|a| a == "--stack");
    baseline::run(addr, Duration::from_secs(3600), stack)
}
