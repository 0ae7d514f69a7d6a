//! The TLS listener's configuration: certificate chain, private key and
//! optional client CA from `server.tls_cert`, `tls_key` and `client_ca`,
//! with ALPN `h2` and `http/1.1`, on the build's crypto provider
//! ([`crypto::provider`]: ring, or aws-lc-rs with the feature `aws-lc-rs`).
//!
//! Session resumption: stateless tickets (TLS 1.3 and 1.2), encrypted with
//! a key made at start and replaced every six hours (the previous key is
//! still accepted for one more period), so any number of clients resume
//! without the server keeping state per client; plus an in-memory cache of
//! [`SESSION_CACHE`] sessions for TLS 1.2 clients that resume by session id.
//! Both live in this process: a client that reconnects to another instance
//! makes a full handshake there.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use tokio_rustls::TlsAcceptor;

use crate::base::crypto;
use crate::config::Config;

/// Sessions kept for TLS 1.2 clients that resume by session id rather than
/// by ticket (about 200 bytes each).
pub const SESSION_CACHE: usize = 4096;

/// Why the TLS listener could not be set up. Each message names the file
/// and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or its PEM did not parse.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's or the PEM parser's error.
        #[source]
        source: io::Error,
    },
    /// `server.tls_cert` holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// `server.tls_key` holds no private key.
    #[error("{}: no private key found", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of `server.client_ca` was refused.
    #[error("{}: {source}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the certificate and key (a key that does not match the
    /// certificate, an unsupported key type).
    #[error(transparent)]
    Config(#[from] rustls::Error),
    /// The client certificate verifier could not be built from `server.client_ca`.
    #[error(transparent)]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// The session-ticket key could not be made (the system's random
    /// number generator failed).
    #[error("session tickets: {0}")]
    Tickets(#[source] rustls::Error),
}

/// Loads the TLS acceptor from `server.tls_cert` / `tls_key` (and `client_ca`), if set.
pub fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, TlsError> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::File { path, source }
    };
    let read = |p: &Path| std::fs::read(p).map_err(file_error(p));
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(file_error(&files.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .map_err(file_error(&files.key))?
        .ok_or_else(|| TlsError::NoKey {
            path: files.key.clone(),
        })?;
    let builder = rustls::ServerConfig::builder_with_provider(crypto::provider())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.server.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c = c.map_err(file_error(ca))?;
                roots.add(c).map_err(|source| TlsError::ClientCa {
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut sc = builder.with_single_cert(certs, key)?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    sc.ticketer = crypto::ticketer().map_err(TlsError::Tickets)?;
    sc.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Some(TlsAcceptor::from(Arc::new(sc))))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::base::error::error_chain;
    use crate::server::StartError;

    fn config_with_tls(dir: &Path, cert: &Path, key: &Path) -> Config {
        let text = format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\n[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n[session]\n",
            cert.display().to_string(),
            key.display().to_string(),
        );
        let env: HashMap<String, String> = [(
            "PORTCULLIS_SESSION_SECRET".to_owned(),
            "0123456789abcdef0123456789abcdef-x".to_owned(),
        )]
        .into();
        Config::from_toml(&text, dir, &env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_missing_certificate_keeps_the_os_error_as_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let e = StartError::from(
            tls_acceptor(&config_with_tls(dir.path(), &cert, &key))
                .err()
                .expect("no such file"),
        );
        let mut cause = std::error::Error::source(&e);
        let io = loop {
            let c = cause.expect("the OS error is among the causes");
            if let Some(io) = c.downcast_ref::<io::Error>() {
                break io;
            }
            cause = c.source();
        };
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        let line = error_chain(&e);
        assert_eq!(line, format!("tls: {}: {io}", cert.display()));
        assert_eq!(line, e.to_string(), "the message already names the cause");
    }

    #[test]
    fn a_file_without_a_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let e = tls_acceptor(&config_with_tls(dir.path(), &cert, &key))
            .err()
            .expect("no certificate");
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
        assert_eq!(
            StartError::from(e).to_string(),
            format!("tls: {}: no certificate found", cert.display())
        );
    }
}
