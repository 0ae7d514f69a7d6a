//! The TLS listener's configuration: certificate chain, private key and
//! optional client CA from `server.tls_cert`, `tls_key` and `client_ca`,
//! with ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::Config;

use super::StartError;

/// Loads the TLS acceptor from `server.tls_cert` / `tls_key` (and `client_ca`), if set.
pub fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, StartError> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.key.display())))?
        .ok_or_else(|| StartError::Tls(format!("{}: no private key found", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let builder = match &config.server.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c = c.map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| StartError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(sc))))
}
