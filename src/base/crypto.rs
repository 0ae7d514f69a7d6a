//! The rustls crypto provider of this build: ring by default, aws-lc-rs
//! with the cargo feature `aws-lc-rs`. Every TLS configuration portcullis
//! builds itself (the listener, upstream clients, `portcullis check`'s
//! probe) takes [`provider`]; [`install_default`] makes the same provider
//! the process default for the libraries that build their own (reqwest for
//! the IdP, the Redis client for `rediss://`).
//!
//! With the feature, rustls is built with both providers (the HTTP and
//! Redis clients ask for ring), and picks neither on its own: a library
//! that asks rustls for the process default before [`install_default`]
//! has run would fail, so start-up installs it first, and the Redis store
//! once more before it opens a client.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

#[cfg(feature = "aws-lc-rs")]
use rustls::crypto::aws_lc_rs as chosen;
#[cfg(not(feature = "aws-lc-rs"))]
use rustls::crypto::ring as chosen;

/// The provider's name (the load harness prints it in its report).
pub const NAME: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// This build's provider, made once per process.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(chosen::default_provider()))
        .clone()
}

/// Makes [`provider`] the process default, unless one is set already.
pub fn install_default() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = CryptoProvider::install_default(Arc::unwrap_or_clone(provider()));
    }
}

/// A ticketer for TLS session tickets, encrypting with this build's
/// provider (ring: ChaCha20-Poly1305; aws-lc-rs: AES-256-CBC with
/// HMAC-SHA256): a key made at start and replaced every six hours, the
/// previous key still accepted for one more period.
pub fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    chosen::Ticketer::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_the_one_the_build_names_and_becomes_the_default() {
        let p = provider();
        assert!(Arc::ptr_eq(&p, &provider()), "made once");
        assert!(!p.cipher_suites.is_empty() && !p.kx_groups.is_empty());
        // X25519 and P-256 key exchange, ECDSA P-256 certificates: what the
        // listener is measured with.
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert!(groups.contains(&rustls::NamedGroup::X25519), "{groups:?}");
        assert!(
            groups.contains(&rustls::NamedGroup::secp256r1),
            "{groups:?}"
        );
        install_default();
        let d = CryptoProvider::get_default().expect("installed");
        assert_eq!(
            format!("{:?}", d.secure_random),
            format!("{:?}", p.secure_random)
        );
        assert_eq!(
            format!("{:?}", p.secure_random),
            if NAME == "ring" { "Ring" } else { "AwsLcRs" }
        );
        assert!(ticketer().expect("ticket key").enabled());
    }
}
