//! Reaching the IdP from here, one step at a time: DNS (the answer, with
//! private-address notes), TCP (which address answered, how fast) and TLS
//! (version, certificate verdict), each with its own short timeout and a
//! plain-words fix naming the likely cause — split DNS, hairpin NAT, a
//! firewall, a wrong port, an untrusted or mismatched certificate.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use url::Url;

use super::{Finding, Report, CONNECT_TIMEOUT};

/// Probes `url`'s host and port: DNS, TCP and (for https) TLS. Pushes one
/// line per step that ran; returns false when a step failed (the later
/// steps and everything that needs the IdP are then skipped).
pub async fn probe(url: &Url, report: &mut Report) -> bool {
    let Some(host) = url.host_str() else {
        report.push(Finding::fail(
            "dns",
            format!("{url} has no host"),
            "set oidc.issuer to the IdP's https:// URL",
        ));
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let Some(addrs) = resolve(host, port, report).await else {
        return false;
    };
    let Some(stream) = connect(&addrs, report).await else {
        return false;
    };
    if url.scheme() == "https" {
        return tls(host, stream, report).await;
    }
    true
}

async fn resolve(host: &str, port: u16, report: &mut Report) -> Option<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        report.push(Finding::ok(
            "dns",
            format!("{host} is an IP address{}", address_note(ip)),
        ));
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    let started = Instant::now();
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => {
            report.push(Finding::fail(
                "dns",
                format!(
                    "no answer for {host} within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
                "check the DNS servers this host uses (/etc/resolv.conf, or the container's DNS)",
            ));
            None
        }
        Ok(Err(e)) => {
            report.push(Finding::fail(
                "dns",
                format!("cannot resolve {host}: {}", dns_error(&e)),
                "check the host name in oidc.issuer; if it resolves on your laptop but not here, this host uses other DNS servers (split DNS, container DNS): add the name there or to /etc/hosts",
            ));
            None
        }
        Ok(Ok(addrs)) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.dedup();
            if addrs.is_empty() {
                report.push(Finding::fail(
                    "dns",
                    format!("{host} has no address"),
                    "add an A or AAAA record for the IdP's host name",
                ));
                return None;
            }
            let list: Vec<String> = addrs
                .iter()
                .map(|a| format!("{}{}", a.ip(), address_note(a.ip())))
                .collect();
            report.push(Finding::ok(
                "dns",
                format!("{host} → {} in {}", list.join(", "), ms(started)),
            ));
            Some(addrs)
        }
    }
}

/// The resolver's complaint in plain words (glibc's texts vary by version).
fn dns_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    if [
        "Name or service not known",
        "No address associated",
        "nodename nor servname",
        "not known",
    ]
    .iter()
    .any(|t| text.contains(t))
    {
        "no such host".to_owned()
    } else if text.contains("Temporary failure") {
        "the DNS server did not answer (temporary failure)".to_owned()
    } else {
        text
    }
}

async fn connect(addrs: &[SocketAddr], report: &mut Report) -> Option<TcpStream> {
    let mut last = None;
    for addr in addrs.iter().take(3) {
        let started = Instant::now();
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                report.push(Finding::ok(
                    "tcp",
                    format!("connected to {addr} in {}", ms(started)),
                ));
                return Some(s);
            }
            Ok(Err(e)) => last = Some((*addr, Some(e))),
            Err(_) => last = Some((*addr, None)),
        }
    }
    let (addr, err) = last?;
    report.push(tcp_failure(addr, err));
    None
}

fn tcp_failure(addr: SocketAddr, err: Option<std::io::Error>) -> Finding {
    use std::io::ErrorKind as K;
    let unreachable_fix = if is_private(addr.ip()) {
        format!("this host cannot reach the private address {}: check that it is on that network and that no firewall drops the traffic", addr.ip())
    } else {
        "a firewall drops the traffic, or the name resolves to a public address that cannot be reached from inside your network (hairpin NAT): point this host's DNS at the IdP's internal address (split DNS or /etc/hosts)".to_owned()
    };
    match err {
        None => Finding::fail(
            "tcp",
            format!("no answer from {addr} within {} s", CONNECT_TIMEOUT.as_secs()),
            unreachable_fix,
        ),
        Some(e) if e.kind() == K::ConnectionRefused => Finding::fail(
            "tcp",
            format!("{addr} refused the connection (nothing listens on port {})", addr.port()),
            "check the port in oidc.issuer and that the IdP is running and listening on that address",
        ),
        Some(e) => Finding::fail("tcp", format!("cannot connect to {addr}: {e}"), unreachable_fix),
    }
}

async fn tls(host: &str, stream: TcpStream, report: &mut Report) -> bool {
    let provider = crate::base::crypto::provider();
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        Err(e) => {
            report.push(Finding::fail(
                "tls",
                format!("cannot set up TLS: {e}"),
                "report this as a bug",
            ));
            return false;
        }
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else {
        report.push(Finding::fail(
            "tls",
            format!("{host} is not a valid TLS server name"),
            "use the IdP's DNS name in oidc.issuer",
        ));
        return false;
    };
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => {
            report.push(Finding::fail(
                "tls",
                format!("no TLS handshake with {host} within {} s", CONNECT_TIMEOUT.as_secs()),
                "check that the port in oidc.issuer speaks https (not plain http) and that nothing in between holds the connection",
            ));
            false
        }
        Ok(Err(e)) => {
            report.push(tls_failure(host, &e));
            false
        }
        Ok(Ok(s)) => {
            let version = s
                .get_ref()
                .1
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS");
            report.push(Finding::ok(
                "tls",
                format!(
                    "{version} with {host} in {}, certificate trusted and valid for {host}",
                    ms(started)
                ),
            ));
            true
        }
    }
}

fn tls_failure(host: &str, e: &std::io::Error) -> Finding {
    let text = e.to_string();
    let fix = if text.contains("UnknownIssuer") || text.contains("self-signed") {
        "the IdP's certificate is not signed by a public CA (self-signed or a private CA): portcullis trusts the public web PKI (Mozilla's roots), so give the IdP a certificate from a public CA such as Let's Encrypt, and serve the full chain"
    } else if text.contains("NotValidForName") {
        "the certificate does not name this host: use in oidc.issuer a host name the certificate covers, or reissue the certificate for this name"
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        "the certificate is outside its validity period: renew it, and check this host's clock"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        "the port does not speak TLS: use http:// in oidc.issuer, or the IdP's https port"
    } else {
        "check the IdP's TLS setup (certificate chain, protocol versions) with `openssl s_client -connect HOST:PORT`"
    };
    Finding::fail("tls", format!("handshake with {host} failed: {text}"), fix)
}

/// ` (private address)` and friends, for the DNS line.
fn address_note(ip: IpAddr) -> &'static str {
    if ip.is_loopback() {
        " (loopback)"
    } else if is_private(ip) {
        " (private address)"
    } else {
        ""
    }
}

/// RFC 1918, CGNAT, link-local and IPv6 unique-local addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// Milliseconds since `t`, as `N ms`.
pub fn ms(t: Instant) -> String {
    format!("{} ms", t.elapsed().as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "127.0.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn silent_addresses_get_a_network_hint() {
        let public = tcp_failure("203.0.113.7:443".parse().unwrap(), None);
        assert_eq!(public.detail, "no answer from 203.0.113.7:443 within 3 s");
        assert!(
            public.fix.as_deref().unwrap().contains("hairpin NAT"),
            "{public}"
        );
        let private = tcp_failure("10.0.0.5:443".parse().unwrap(), None);
        assert!(
            private
                .fix
                .as_deref()
                .unwrap()
                .starts_with("this host cannot reach the private address 10.0.0.5"),
            "{private}"
        );
        let unreachable = std::io::Error::from(std::io::ErrorKind::HostUnreachable);
        let f = tcp_failure("10.0.0.5:443".parse().unwrap(), Some(unreachable));
        assert!(
            f.detail.starts_with("cannot connect to 10.0.0.5:443: "),
            "{f}"
        );
    }

    #[tokio::test]
    async fn refused_port_names_the_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let mut r = Report::default();
        assert!(!probe(&url, &mut r).await);
        assert_eq!(
            r.findings[1].to_string(),
            format!("FAIL tcp: 127.0.0.1:{port} refused the connection (nothing listens on port {port}) — fix: check the port in oidc.issuer and that the IdP is running and listening on that address")
        );
    }
}
