//! Issue 14: no client can fill the disk with log lines. A burst of
//! malformed forward-auth requests and of TLS clients that present an IP
//! address as SNI (rustls warns about each) writes a bounded number of lines
//! to the gateway's stderr.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::idp::Idp;
use crate::support::proc::scratch_dir;

/// A TLS ClientHello whose SNI extension names `127.0.0.1`.
fn client_hello_with_ip_sni() -> Vec<u8> {
    let name = b"127.0.0.1";
    let mut sni = vec![0x00, 0x00]; // extension type: server_name
    let list_len = 3 + name.len();
    sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    sni.extend_from_slice(&(list_len as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn bursts_of_malformed_checks_and_ip_sni_handshakes_log_a_bounded_number_of_lines() {
    let idp = Idp::start(&[]);
    let dir = scratch_dir("log-flood-tls");
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
        name: "portcullis-log-flood",
        config: &config,
        admin_port: Some(admin),
        ..Launch::default()
    });
    let before = gw.log().lines().count();

    // 1000 forward-auth checks from a trusted proxy with a malformed host.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/oauth2/auth", gw.port);
    for _ in 0..1000 {
        let r = client
            .get(&url)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "bad host!")
            .header("X-Forwarded-Uri", "/x")
            .send()
            .await
            .expect("a forward-auth answer");
        assert_eq!(r.status(), 400);
    }

    // 300 TLS clients presenting an IP address as SNI.
    let hello = client_hello_with_ip_sni();
    let port = gw.port;
    tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&hello).unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf); // the gateway's alert, or the close
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = gw.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    assert!(
        new.len() <= 20,
        "{} log lines for 1000 malformed checks and 300 IP-SNI handshakes:\n{}",
        new.len(),
        new.iter().take(30).copied().collect::<Vec<_>>().join("\n")
    );
    // The first rejection is still told, at info.
    assert!(
        new.iter()
            .any(|l| l.contains("forward-auth request rejected")),
        "{}",
        new.join("\n")
    );
}
