//! Test support shared by every harness: the in-process tests (`tests/it`),
//! the end-to-end tests (`tests/e2e`) and the load bench (`benches/load.rs`),
//! each including this directory with `#[path = ".../common/mod.rs"] mod common;`.
//!
//! - [`proc`]: child processes with captured logs, killed on drop and at exit;
//! - [`redis`]: a real `redis-server` (and Sentinel) on loopback;
//! - [`http`]: a raw HTTP/1.1 client that sends requests byte for byte;
//! - [`ca`]: a test certificate authority for TLS servers;
//! - [`browser`]: a browser-like client that signs in at the built-in
//!   development issuer;
//! - here: ports, finding installed binaries, waiting for readiness.
//!
//! Servers started in the test process bind `127.0.0.1:0` and report their
//! address; only processes that must be told their port up front (Redis,
//! the front proxies, a gateway whose port is part of the IdP's redirect
//! URIs) get one from [`free_port`]. A missing component is a failure that
//! names `scripts/install-test-deps.sh`, never a skip.

#![allow(dead_code)] // each harness uses a different part of the shared code

pub mod browser;
pub mod ca;
pub mod http;
pub mod proc;
pub mod redis;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any component gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What to run when a component is missing.
pub const INSTALL_HINT: &str =
    "install the test dependencies with `sudo scripts/install-test-deps.sh`";

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A port on 127.0.0.1 that was free a moment ago. Components that cannot
/// report the port they bound get one of these in their config.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The full path of `name` on `PATH` (also looking in the sbin directories,
/// where Debian installs nginx), or a failure naming the install script.
pub fn require_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| is_executable(p));
    match found {
        Some(p) => p,
        None => panic!("`{name}` is not installed (not found on PATH); {INSTALL_HINT}"),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Polls `f` every 50 ms until it returns `Some`, for at most [`READY_TIMEOUT`].
/// `alive` is asked between polls and ends the wait early with its error.
pub fn wait_for<T>(
    what: &str,
    mut alive: impl FnMut() -> Result<(), String>,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        alive()?;
        if Instant::now() > deadline {
            return Err(format!("{what}: not ready after {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
