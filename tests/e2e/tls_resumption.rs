//! TLS session resumption against `portcullis serve` with `tls_cert` /
//! `tls_key`: a client that comes back resumes its session (no certificate,
//! no signature), over TLS 1.3 and TLS 1.2, however many other clients
//! connected in between.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};

use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::idp::Idp;
use crate::support::proc::{scratch_dir, LogsOnFailure};

/// More clients than a per-server cache of 256 sessions holds (each TLS 1.3
/// connection gets two tickets).
const OTHER_CLIENTS: usize = 300;

fn client_config(root: &CertificateDer<'static>, tls12_only: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One HTTP/1.1 request over a new TLS connection made with `config` (whose
/// session store keeps what the server hands out); returns how the
/// handshake went. The response is read to its end, so TLS 1.3 tickets,
/// sent after the handshake, reach the client's store.
fn check(config: &Arc<ClientConfig>, port: u16) -> HandshakeKind {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).expect("client connection");
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(
        b"GET /oauth2/auth HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /\r\nConnection: close\r\n\r\n",
    )
    .expect("request");
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // The server closes without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    let answer = String::from_utf8_lossy(&answer);
    // A forward-auth check without a session: refused, but answered.
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    tls.conn.handshake_kind().expect("handshake done")
}

#[test]
fn a_returning_client_resumes_its_session_after_hundreds_of_others() {
    let idp = Idp::start(&[]);
    let dir = scratch_dir("tls-resumption");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let admin = free_port();
    let config = direct_config(&idp.issuer, "", APP_RULES).replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin}\"\ntls_cert = {cert_path:?}\ntls_key = {key_path:?}\n"
        ),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-tls-resumption",
        config: &config,
        admin_port: Some(admin),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let root = cert.cert.der().clone();

    for tls12_only in [false, true] {
        let version = if tls12_only { "TLS 1.2" } else { "TLS 1.3" };
        let returning = client_config(&root, tls12_only);
        assert_eq!(
            check(&returning, gw.port),
            HandshakeKind::Full,
            "{version}: the first connection"
        );
        assert_eq!(
            check(&returning, gw.port),
            HandshakeKind::Resumed,
            "{version}: the second connection resumes"
        );
        // Many other clients, each with its own session store, in between.
        for _ in 0..OTHER_CLIENTS {
            let other = client_config(&root, tls12_only);
            assert_eq!(check(&other, gw.port), HandshakeKind::Full);
        }
        assert_eq!(
            check(&returning, gw.port),
            HandshakeKind::Resumed,
            "{version}: still resumes after {OTHER_CLIENTS} other clients"
        );
    }
}
