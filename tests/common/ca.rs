//! A test certificate authority for the TLS servers the tests start (the
//! HTTPS upstream, a TLS-only Redis): generated per run with `rcgen`.

/// A test CA and a server certificate for `localhost` and 127.0.0.1 signed
/// by it (used by the HTTPS upstream and the TLS Redis).
pub struct TestCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server's key, PEM (PKCS#8).
    pub key_pem: String,
    /// The server's chain (DER).
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The server's key (DER).
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    /// Generates both.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis e2e test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![leaf.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`; their paths in that order.
    pub fn write_to(&self, dir: &std::path::Path) -> [std::path::PathBuf; 3] {
        let files = [
            ("ca.pem", &self.ca_pem),
            ("cert.pem", &self.cert_pem),
            ("key.pem", &self.key_pem),
        ];
        files.map(|(name, pem)| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        })
    }
}
