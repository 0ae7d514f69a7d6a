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
pub mod idp;
pub mod jwt;
pub mod proxy;
pub mod upstreams;

// Shared with the in-process tests and the benches (tests/common).
pub use crate::common::{
    free_port, http, proc, redis, repo_root, require_binary, wait_for, INSTALL_HINT,
};

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
