//! Launchers and clients for the end-to-end tests.
//!
//! Every component runs as a real process (or, for the echo app, a real
//! server thread) on 127.0.0.1 with an ephemeral port; logs go to a scratch
//! directory and are printed when a test fails; every process is killed when
//! its handle is dropped and, for handles kept in statics, when the test
//! binary exits. A missing component is a failure that names
//! `scripts/install-test-deps.sh`, never a skip.

#![allow(dead_code)] // each test module uses a different part of the support code

pub mod balancer;
pub mod browser;
pub mod echo;
pub mod gateway;
pub mod http;
pub mod idp;
pub mod jwt;
pub mod proc;
pub mod proxy;
pub mod redis;
pub mod upstreams;

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
        None => panic!("e2e: `{name}` is not installed (not found on PATH); {INSTALL_HINT}"),
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

/// Replaces each `from` with `to` in `text`; every `from` must occur (a
/// placeholder that vanished from an example config is an error, as in
/// config/verify.sh).
pub fn subst(text: &str, what: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "placeholder {from:?} not found in {what}"
        );
        out = out.replace(from, to);
    }
    out
}

/// Reads a file from config/ (the front-proxy examples).
pub fn example(rel: &str) -> String {
    let p = repo_root().join("config").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Percent-encodes a query component (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
