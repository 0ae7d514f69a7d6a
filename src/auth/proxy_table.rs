//! What reverse-proxy mode compiles from a config, kept in the reloadable
//! runtime so that rules, upstreams and header rules swap together:
//!
//! - [`upstream`]: the upstreams of the rules, each with its connection pools;
//! - [`headers`]: the header hygiene both ways (what is removed from and
//!   added to a proxied request, what is dropped from its answer).
//!
//! Compiled here, below the request pipeline; the `proxy` handler uses it.

pub mod headers;
pub mod upstream;

use crate::config::Config;

use self::headers::Hygiene;
use self::upstream::Upstreams;

/// What reverse-proxy mode compiles from a config: part of `Runtime`.
pub struct ProxyTable {
    /// Upstreams and their clients, by rule.
    pub upstreams: Upstreams,
    /// Header rules.
    pub hygiene: Hygiene,
}

// === impl ProxyTable ===

impl ProxyTable {
    /// Compiles the upstreams and header rules of `config`.
    pub fn compile(config: &Config) -> ProxyTable {
        ProxyTable {
            upstreams: Upstreams::compile(config),
            hygiene: Hygiene::new(&config.headers),
        }
    }
}
