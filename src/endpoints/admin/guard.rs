//! Who may use the admin listener. Called by [`handle_admin`](super::handle_admin)
//! before any endpoint runs; the config side (reading the token, refusing a
//! non-loopback `admin_listen` without one) is in `config::validate::admin`.
//!
//! Two checks, in this order:
//!
//! - **The token.** With `server.admin_token_file` set, every request except
//!   `GET`/`HEAD` `/healthz` and `/readyz` needs `Authorization: Bearer
//!   <token>`, compared in constant time; otherwise 401 with
//!   `WWW-Authenticate: Bearer realm="portcullis-admin"`. Health stays open
//!   because orchestrators and load balancers probe it without credentials.
//! - **The Host (DNS rebinding).** A web page whose name an attacker
//!   re-points at 127.0.0.1 can make a browser send requests to a loopback
//!   listener, with the attacker's name in `Host` (HTTP/2: `:authority`).
//!   So a request must be addressed to an IP literal or `localhost`, with
//!   any port (or none), or is refused with 421. IP and port are not
//!   compared with the listener's: an IP literal cannot be re-pointed, and
//!   tunnels, port forwards and published container ports legitimately
//!   change both. A request carrying the right token skips this check: a
//!   browser never adds the token on its own, so it already proves the
//!   caller is no rebinding page, and operators may then use any name.
//!
//! A refusal is answered and logged by `respond` (`Failure::Admin`): at
//! info at most once per
//! [`CLIENT_ERRORS_EVERY`](crate::auth::diagnostics::CLIENT_ERRORS_EVERY) each
//! (the rest at debug); the log never shows the token or what was sent in
//! its place.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::{header, HeaderValue, Request};

use crate::base::http_util::request_host;
use crate::base::secret::{constant_time_eq, Secret};

/// Why a request on the admin listener is refused; `respond` makes the
/// answer and logs it.
pub use crate::endpoints::respond::AdminRefusal as Refusal;

/// Decides whether `req` may reach the admin endpoints. `token` is
/// `server.admin_token`; `health` says whether the request is one of the
/// open health probes.
pub fn admit<B>(
    token: Option<&Secret<String>>,
    req: &Request<B>,
    health: bool,
) -> Result<(), Refusal> {
    let sent = req.headers().get(header::AUTHORIZATION).map(bearer);
    if let (Some(token), Some(Some(sent))) = (token, sent) {
        if constant_time_eq(sent, token.expose().as_bytes()) {
            return Ok(());
        }
    }
    if !is_local_host(request_host(req)) {
        return Err(Refusal::Misdirected);
    }
    match (token, sent) {
        (None, _) => Ok(()),
        (Some(_), _) if health => Ok(()),
        (Some(_), None) => Err(Refusal::MissingToken),
        (Some(_), Some(_)) => Err(Refusal::WrongToken),
    }
}

/// The credentials of an `Authorization: Bearer` value (scheme matched
/// without regard to case); `None` for any other scheme.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// True when `host` (a `Host` header or `:authority`) is an IP literal or
/// `localhost`, with an optional numeric port; true as well when there is
/// none (browsers always send one).
pub fn is_local_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, port)) => {
                ip.parse::<Ipv6Addr>().is_ok()
                    && (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
            }
            None => false,
        };
    }
    let name = match host.split_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.parse::<Ipv4Addr>().is_ok() || name.eq_ignore_ascii_case("localhost")
}

/// An empty port (RFC 3986 allows `host:`) or a decimal `u16`.
fn is_port(port: &str) -> bool {
    port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::respond::ADMIN_CHALLENGE as CHALLENGE;
    use http::StatusCode;

    const TOKEN: &str = "0123456789abcdef-admin";

    fn req(host: Option<&str>, auth: Option<&str>, path: &str) -> Request<()> {
        let mut b = Request::get(path);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_addressed_locally() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:9180",
            "127.0.0.1:",
            "10.1.2.3:9180",
            "0.0.0.0:1",
            "[::1]",
            "[::1]:9180",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LocalHost:9180",
        ] {
            assert!(is_local_host(Some(h)), "{h}");
        }
        assert!(is_local_host(None));
    }

    #[test]
    fn names_and_malformed_hosts_are_not_local() {
        for h in [
            "evil.example",
            "evil.example:9180",
            "127.0.0.1.nip.io:9180",
            "localhost.evil.example",
            "localhost.",
            "2130706433",
            "127.1",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]:1",
            "127.0.0.1:99999",
            "127.0.0.1:+80",
            "127.0.0.1:80:80",
            "user@127.0.0.1",
            "",
        ] {
            assert!(!is_local_host(Some(h)), "{h}");
        }
    }

    #[test]
    fn http2_authority_is_checked() {
        let r = Request::get("http://evil.example:9180/admin/sessions")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(admit(None, &r, false), Err(Refusal::Misdirected));
        let r = Request::get("http://127.0.0.1:9180/admin/sessions")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(admit(None, &r, false), Ok(()));
    }

    #[test]
    fn without_a_token_only_the_host_counts() {
        let r = req(Some("127.0.0.1"), None, "/admin/sessions");
        assert_eq!(admit(None, &r, false), Ok(()));
        // Sending a token where none is configured changes nothing.
        let r = req(Some("localhost:9180"), Some("Bearer x"), "/admin/sessions");
        assert_eq!(admit(None, &r, false), Ok(()));
        let r = req(Some("rebound.example"), None, "/healthz");
        assert_eq!(admit(None, &r, true), Err(Refusal::Misdirected));
    }

    #[test]
    fn with_a_token_admin_paths_need_it() {
        let token = Secret::new(TOKEN.to_owned());
        let t = Some(&token);
        let ok = format!("Bearer {TOKEN}");
        let r = req(Some("127.0.0.1:9180"), None, "/admin/sessions");
        assert_eq!(admit(t, &r, false), Err(Refusal::MissingToken));
        let r = req(Some("127.0.0.1:9180"), Some(&ok), "/admin/sessions");
        assert_eq!(admit(t, &r, false), Ok(()));
        // The scheme is case-insensitive.
        let lower = format!("bearer {TOKEN}");
        let r = req(Some("127.0.0.1:9180"), Some(&lower), "/admin/sessions");
        assert_eq!(admit(t, &r, false), Ok(()));
        // Differing in the last byte, shorter, longer, another scheme, empty.
        let last = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
        let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        let long = format!("Bearer {TOKEN}x");
        let basic = format!("Basic {TOKEN}");
        for bad in [&last, &short, &long, &basic, "Bearer", "Bearer ", TOKEN] {
            let r = req(Some("127.0.0.1:9180"), Some(bad), "/admin/sessions");
            assert_eq!(admit(t, &r, false), Err(Refusal::WrongToken), "{bad}");
        }
        // Health stays open.
        let r = req(Some("127.0.0.1:9180"), None, "/readyz");
        assert_eq!(admit(t, &r, true), Ok(()));
        let r = req(Some("127.0.0.1:9180"), Some(&last), "/healthz");
        assert_eq!(admit(t, &r, true), Ok(()));
    }

    #[test]
    fn the_right_token_skips_the_host_check() {
        let token = Secret::new(TOKEN.to_owned());
        let ok = format!("Bearer {TOKEN}");
        let r = req(
            Some("portcullis-admin.internal:9180"),
            Some(&ok),
            "/admin/sessions",
        );
        assert_eq!(admit(Some(&token), &r, false), Ok(()));
        let r = req(Some("portcullis-admin.internal:9180"), None, "/healthz");
        assert_eq!(admit(Some(&token), &r, true), Err(Refusal::Misdirected));
        let r = req(
            Some("rebound.example"),
            Some("Bearer wrong-token-000000"),
            "/admin/sessions",
        );
        assert_eq!(admit(Some(&token), &r, false), Err(Refusal::Misdirected));
    }

    #[test]
    fn refusals_answer_421_and_401_with_a_challenge() {
        let res = Refusal::Misdirected.response();
        assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
        let res = Refusal::MissingToken.response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], CHALLENGE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let res = Refusal::WrongToken.response();
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"portcullis-admin\", error=\"invalid_token\""
        );
    }
}
