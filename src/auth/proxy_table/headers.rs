//! Header hygiene between the client and the upstream.
//!
//! Going up: hop-by-hop headers and those named in `Connection` are dropped;
//! every client copy of the identity headers in use (with the
//! `[headers.claims]` ones), of both presets' names (`X-Auth-*` and
//! oauth2-proxy's `X-Auth-Request-*`, access tokens included), of
//! `X-Auth-Assertion` and of `headers.strip` is removed in any letter case
//! and with `_` for `-`;
//! `Forwarded` and `X-Real-IP` from peers outside `trusted_proxies` are
//! removed; portcullis's own cookies (session and login flow) are cut out
//! of `Cookie` while other cookies stay; then fresh identity headers,
//! `X-Forwarded-For` (appended to a trusted peer's list, else replaced),
//! `X-Forwarded-Proto` and `X-Forwarded-Host`, and optionally the access
//! token and `Authorization: Bearer <id_token>` are added.
//!
//! Coming back: hop-by-hop headers are dropped (an upgrade answer keeps
//! `Connection` and `Upgrade`). The names to remove are compiled once per
//! runtime into [`Hygiene`]; scrubbing a request allocates only when it
//! finds something to cut.

use std::net::{IpAddr, Ipv4Addr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::session::Session;
use crate::base::h1_request::write_field;
use crate::base::http_util::{self, StackStr};
use crate::base::identity::{self, IdentityHeaders};
use crate::config::HeadersConfig;

pub use crate::base::http_util::canonical;

/// The default name of the access-token header (`headers.access_token`).
#[cfg(test)]
static X_AUTH_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-auth-access-token");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that name another URL, path, prefix or port than the request
/// portcullis judged; upstream frameworks route or build links on them, so
/// a client copy could reach a path no rule was asked about.
static URL_OVERRIDES: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-prefix",
    "x-forwarded-port",
];

/// Fields whose meaning portcullis or the HTTP layer sets: a client's
/// spelling of them with another separator than `-` (`X_Forwarded_For`,
/// `Content_Length`) is removed, as CGI-style stacks read `_` as `-`.
static RESPELLED: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The compiled header rules of one runtime.
#[derive(Debug)]
pub struct Hygiene {
    /// Canonical spellings (lower case, `-`) of every header a client may not send.
    removed: Vec<Box<str>>,
    /// `[headers]`: the names the fresh headers go under.
    cfg: HeadersConfig,
}

/// Where the fresh identity headers go.
pub enum Carry<'a> {
    /// Into the request's header map, which any client can send on (HTTP/2,
    /// upgrades).
    Map {
        /// Keeps the `Upgrade` header (this value) and says so in `Connection`.
        upgrade: Option<HeaderValue>,
    },
    /// As header lines (`name: value` CRLF) for an HTTP/1.1 request head
    /// that portcullis writes itself: no map insert, no copy of the values.
    Lines(&'a mut Vec<u8>),
}

/// Where the request came from, for the `X-Forwarded-*` headers.
pub struct Forwarding<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// The peer is in `trusted_proxies`.
    pub trusted: bool,
    /// `http` or `https` as the client used it.
    pub proto: &'static str,
    /// The host the client asked for, as sent.
    pub host: &'a str,
}

// === impl Hygiene ===

impl Hygiene {
    /// Compiles `[headers]`.
    pub fn new(cfg: &HeadersConfig) -> Hygiene {
        let removed = cfg
            .protected()
            .into_iter()
            .map(String::into_boxed_str)
            .chain(
                cfg.strip
                    .iter()
                    .map(|n| canonical(n.as_str()).into_boxed_str()),
            )
            .chain(URL_OVERRIDES.iter().map(|n| Box::from(*n)))
            .collect();
        Hygiene {
            removed,
            cfg: cfg.clone(),
        }
    }

    /// True when a client-sent header `name` (lower case, as `HeaderName` keeps
    /// it) is one of the removed ones in any `_`/`-` spelling.
    fn is_removed(&self, name: &str) -> bool {
        self.removed.iter().any(|r| same_header(name, r))
    }

    /// Scrubs the request headers and adds the identity headers (where
    /// `carry` says) and the forwarding headers.
    ///
    /// One pass over the header names finds everything to remove; most
    /// requests carry none of the removed names, and then nothing is hashed,
    /// removed or allocated before the fresh headers go in.
    pub fn scrub_request(
        &self,
        h: &mut HeaderMap,
        cookie_name: &str,
        id: &IdentityHeaders,
        session: Option<&Session>,
        fwd: &Forwarding<'_>,
        carry: Carry<'_>,
    ) {
        let mut hop = 0u16;
        let mut cookie = false;
        // Client copies of identity, token and `headers.strip` names, and
        // `Forwarded`/`X-Real-IP` from untrusted peers: rare, so the Vec
        // (which allocates only on its first push) usually stays empty.
        let mut doomed: Vec<HeaderName> = Vec::new();
        let mut sent = Sent::default();
        for name in h.keys() {
            let n = name.as_str();
            if let Some(bit) = hop_bit(n) {
                hop |= bit;
            } else if (!fwd.trusted && (n == "forwarded" || n == "x-real-ip"))
                || self.is_removed(n)
                || respelled(n)
            {
                // Before the `cookie` test: `headers.strip` may name `Cookie`.
                doomed.push(name.clone());
            } else if n == "cookie" {
                cookie = true;
            } else {
                sent.see(n);
            }
        }
        if hop & 1 != 0 {
            // `Connection` may name any of them: known after the removal only.
            sent.known = false;
        }
        remove_hop_by_hop(h, hop);
        for k in doomed {
            h.remove(k);
        }
        sent.settle(h);
        if cookie {
            strip_own_cookies(h, cookie_name);
        }
        let (upgrade, lines) = match carry {
            Carry::Map { upgrade } => {
                id.insert_into(&self.cfg, h);
                (upgrade, None)
            }
            // Every client copy of these names was removed above.
            Carry::Lines(out) => {
                id.write_lines(&self.cfg, out);
                (None, Some(out))
            }
        };
        if let Some(s) = session {
            self.add_tokens(h, s);
        }
        forwarded(h, fwd, &sent, lines);
        if let Some(u) = upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, u);
        }
    }

    fn add_tokens(&self, h: &mut HeaderMap, s: &Session) {
        if self.cfg.pass_access_token {
            if let Some(v) = s
                .access_token
                .as_ref()
                .and_then(|t| HeaderValue::from_str(t.expose()).ok())
            {
                h.insert(self.cfg.access_token.clone(), sensitive(v));
            }
        }
        if self.cfg.pass_authorization {
            if let Some(v) = s
                .id_token
                .as_ref()
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.expose())).ok())
            {
                h.insert(header::AUTHORIZATION, sensitive(v));
            }
        }
    }
}

// === impl IdentityHeaders ===

// Setting the identity headers needs the names `[headers]` configures; it
// lives here, with the rest of what goes upstream, so that `identity` needs
// no config.
impl IdentityHeaders {
    /// Puts every identity header named in `cfg` on `h`, copied
    /// (see `identity::copy`): user, email, groups, preferred username and each
    /// `[headers.claims]` header, empty when this identity has no value, so a
    /// front proxy overwrites any copy the client sent.
    pub fn insert_into(&self, cfg: &HeadersConfig, h: &mut HeaderMap) {
        h.insert(cfg.user.clone(), identity::copy(&self.user));
        h.insert(cfg.email.clone(), identity::copy(&self.email));
        h.insert(cfg.groups.clone(), identity::copy(&self.groups));
        h.insert(
            cfg.preferred_username.clone(),
            identity::copy(&self.preferred_username),
        );
        for (name, path) in &cfg.claims {
            let v = self
                .claims
                .iter()
                .find(|(p, _)| **p == *path.dotted)
                .map_or(HeaderValue::from_static(""), |(_, v)| identity::copy(v));
            h.insert(name.clone(), v);
        }
    }

    /// The same fields as [`Self::insert_into`], as header lines appended to
    /// `out` (values written from the identity's own bytes, not copied into
    /// fresh ones).
    pub fn write_lines(&self, cfg: &HeadersConfig, out: &mut Vec<u8>) {
        let mut line = |name: &HeaderName, value: &[u8]| write_field(out, name, value);
        line(&cfg.user, self.user.as_bytes());
        line(&cfg.email, self.email.as_bytes());
        line(&cfg.groups, self.groups.as_bytes());
        line(&cfg.preferred_username, self.preferred_username.as_bytes());
        for (name, path) in &cfg.claims {
            let v = self
                .claims
                .iter()
                .find(|(p, _)| **p == *path.dotted)
                .map_or(&b""[..], |(_, v)| v.as_bytes());
            line(name, v);
        }
    }

    /// Puts every identity header named in `cfg` on `h` with an empty value.
    pub fn insert_empty(cfg: &HeadersConfig, h: &mut HeaderMap) {
        for name in [&cfg.user, &cfg.email, &cfg.groups, &cfg.preferred_username]
            .into_iter()
            .chain(cfg.claims.iter().map(|(n, _)| n))
        {
            h.insert(name.clone(), HeaderValue::from_static(""));
        }
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

/// `name` is one of [`RESPELLED`] written with another separator than `-`.
fn respelled(name: &str) -> bool {
    name.bytes()
        .any(|b| !b.is_ascii_alphanumeric() && b != b'-')
        && RESPELLED.iter().any(|r| same_header(name, r))
}

/// `name` (already lower case) equals `canonical` when any separator counts as `-`.
fn same_header(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (b == b'-' && !a.is_ascii_alphanumeric()))
}

/// Removes hop-by-hop headers and those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let hop = h
        .keys()
        .fold(0, |acc, k| acc | hop_bit(k.as_str()).unwrap_or(0));
    remove_hop_by_hop(h, hop);
}

/// The bit of a hop-by-hop name (its index in [`HOP_BY_HOP`]) in the masks
/// that [`remove_hop_by_hop`] takes.
fn hop_bit(name: &str) -> Option<u16> {
    let i = match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    Some(1 << i)
}

/// Removes the hop-by-hop headers whose bits are set in `present` (found by
/// one pass over the names, so absent ones cost no hashed lookup), and, when
/// `Connection` is among them, the headers it names.
fn remove_hop_by_hop(h: &mut HeaderMap, present: u16) {
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        if let Some(named) = connection_named(h) {
            for n in named {
                h.remove(n);
            }
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

/// The headers `Connection` names, other than the standard options; `None`
/// (no allocation) when it names none.
fn connection_named(h: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out: Option<Vec<HeaderName>> = None;
    for v in h.get_all(header::CONNECTION) {
        let Ok(v) = v.to_str() else { continue };
        for token in v.split(',').map(str::trim) {
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("upgrade")
            {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                out.get_or_insert_with(Vec::new).push(n);
            }
        }
    }
    out
}

/// True for an HTTP/1.1 upgrade request (`Connection: upgrade` and `Upgrade`).
pub fn upgrade_of(h: &HeaderMap) -> Option<HeaderValue> {
    let wants = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Cuts portcullis's session and login-flow cookies out of `Cookie`, keeping the rest.
///
/// One pass over the pieces of every `Cookie` value, split by the same
/// reader as the session lookup ([`http_util::cookie_pieces`]), on bytes: a
/// cookie that is not ASCII text never hides ours, and the kept pieces go
/// upstream byte for byte. They are collected (allocating only when there
/// are any) while looking for ours, and the header is rewritten only when
/// one of ours was there. A piece without `=` counts as one of ours for
/// cutting, but alone does not make the header be rewritten.
fn strip_own_cookies(h: &mut HeaderMap, cookie_name: &str) {
    let name = cookie_name.as_bytes();
    let ours = |k: &[u8]| {
        k.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"_flow_"))
    };
    let mut found = false;
    let mut kept: Vec<u8> = Vec::new();
    for value in h.get_all(header::COOKIE) {
        for piece in http_util::cookie_pieces(value.as_bytes()) {
            if ours(piece.name()) {
                found |= piece.value().is_some();
                continue;
            }
            if piece.raw().is_empty() {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(piece.raw());
        }
    }
    if !found {
        return;
    }
    h.remove(header::COOKIE);
    if !kept.is_empty() {
        // Every byte came from a valid header value, and `; ` is valid too.
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            h.insert(header::COOKIE, v);
        }
    }
}

/// Which of the `X-Forwarded-*` fields the client sent, noted in the pass
/// over the names.
#[derive(Debug)]
struct Sent {
    /// False when the pass cannot tell (fields named by `Connection` are
    /// removed after it): then the map is asked ([`Sent::settle`]).
    known: bool,
    xff: bool,
    xfp: bool,
    xfh: bool,
}

impl Default for Sent {
    fn default() -> Self {
        Sent {
            known: true,
            xff: false,
            xfp: false,
            xfh: false,
        }
    }
}

impl Sent {
    fn see(&mut self, name: &str) {
        match name {
            "x-forwarded-for" => self.xff = true,
            "x-forwarded-proto" => self.xfp = true,
            "x-forwarded-host" => self.xfh = true,
            _ => {}
        }
    }

    /// Asks `h` (after the removals) when the pass could not tell.
    fn settle(&mut self, h: &HeaderMap) {
        if !self.known {
            self.xff = h.contains_key(&X_FORWARDED_FOR);
            self.xfp = h.contains_key(&X_FORWARDED_PROTO);
            self.xfh = h.contains_key(&X_FORWARDED_HOST);
            self.known = true;
        }
    }
}

/// Sets `X-Forwarded-For/Proto/Host`. A trusted peer's `X-Forwarded-For` is
/// extended and its `X-Forwarded-Proto/Host` kept; from anyone else they are
/// replaced. With `lines`, the fields set go there (and any copy is taken
/// out of `h`) instead of into `h`.
fn forwarded(
    h: &mut HeaderMap,
    fwd: &Forwarding<'_>,
    sent: &Sent,
    mut lines: Option<&mut Vec<u8>>,
) {
    // `present`: the client's copy is in `h` (taken out when the field
    // goes into the lines).
    let mut set =
        |h: &mut HeaderMap, name: &HeaderName, present: bool, value: HeaderValue| match lines
            .as_deref_mut()
        {
            Some(out) => {
                if present {
                    h.remove(name);
                }
                write_field(out, name, value.as_bytes());
            }
            None => {
                h.insert(name.clone(), value);
            }
        };
    let mut v4 = [0u8; 15];
    let mut v6 = StackStr::default();
    let peer: &[u8] = match crate::auth::client_addr::canonical(fwd.peer) {
        IpAddr::V4(ip) => ipv4_text(ip, &mut v4),
        IpAddr::V6(ip) => {
            use std::fmt::Write as _;
            // At most 45 bytes of text in a 64-byte buffer: cannot fail.
            let _ = write!(v6, "{ip}");
            v6.as_str().as_bytes()
        }
    };
    // Only a trusted peer's list is read; anyone else's is replaced unread.
    // Every line of it counts, in order (a front proxy may add its own line
    // rather than extend the client's).
    let mut list: Vec<u8> = Vec::new();
    if fwd.trusted && sent.xff {
        for line in h.get_all(&X_FORWARDED_FOR) {
            let Ok(line) = line.to_str() else { continue };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            list.extend_from_slice(line.as_bytes());
            list.extend_from_slice(b", ");
        }
    }
    let xff = if list.is_empty() {
        HeaderValue::from_bytes(peer)
    } else {
        list.extend_from_slice(peer);
        HeaderValue::from_maybe_shared(bytes::Bytes::from(list))
    };
    match xff {
        Ok(v) => set(h, &X_FORWARDED_FOR, sent.xff, v),
        // Not reached (an address's text and a valid value): never leave
        // the client's list in place.
        Err(_) => {
            h.remove(&X_FORWARDED_FOR);
        }
    }
    if !(fwd.trusted && sent.xfp) {
        let v = HeaderValue::from_static(fwd.proto);
        set(h, &X_FORWARDED_PROTO, sent.xfp, v);
    }
    if !(fwd.trusted && sent.xfh) {
        match HeaderValue::from_str(fwd.host) {
            Ok(v) => set(h, &X_FORWARDED_HOST, sent.xfh, v),
            Err(_) => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// An IPv4 address's text as `Display` writes it, digit by digit into `buf`:
/// `Ipv4Addr`'s `Display` goes through the formatting machinery at about
/// ten times the cost, on every proxied request.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    &buf[..n]
}

/// Hygiene for the upstream's response head. An upgrade answer (101) keeps
/// `Connection: upgrade` and `Upgrade`.
pub fn scrub_response(h: &mut HeaderMap, upgraded: bool) {
    let upgrade = if upgraded {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(h);
    if let Some(u) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hygiene(strip: &[&str]) -> Hygiene {
        Hygiene::new(&HeadersConfig {
            preset: crate::config::HeaderPreset::Portcullis,
            user: HeaderName::from_static("x-auth-user"),
            email: HeaderName::from_static("x-auth-email"),
            groups: HeaderName::from_static("x-auth-groups"),
            preferred_username: HeaderName::from_static("x-auth-preferred-username"),
            access_token: X_AUTH_ACCESS_TOKEN.clone(),
            preferred_username_claim: crate::config::ClaimPath::parse("preferred_username")
                .unwrap(),
            claims: vec![(
                HeaderName::from_static("x-auth-tenant"),
                crate::config::ClaimPath::parse("org.id").unwrap(),
            )],
            strip: strip
                .iter()
                .map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap())
                .collect(),
            pass_access_token: false,
            pass_authorization: false,
            assertion: None,
        })
    }

    /// Scrubs `h` as a plain (non-upgrade) request without a session would be.
    fn scrub(strip: &[&str], h: &mut HeaderMap, id: &IdentityHeaders, trusted: bool) {
        hygiene(strip).scrub_request(
            h,
            "_portcullis",
            id,
            None,
            &fwd(trusted),
            Carry::Map { upgrade: None },
        );
    }

    fn fwd(trusted: bool) -> Forwarding<'static> {
        Forwarding {
            peer: "10.0.0.9".parse().unwrap(),
            trusted,
            proto: "https",
            host: "app.example.com",
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Writing the identity and forwarding fields as header lines leaves
    /// the map and the lines together exactly as the map alone would be:
    /// every client copy gone (or a trusted peer's kept or extended), each
    /// name once, claims without a value written empty; also when
    /// `Connection` or `headers.strip` names a forwarding field.
    #[test]
    fn identity_as_lines_matches_identity_in_the_map() {
        let spoofed: &[(&str, &str)] = &[
            ("x-auth-user", "mallory"),
            ("X_Auth_User", "mallory"),
            ("x-auth-groups", "admins"),
            ("x-auth-tenant", "t-1"),
            ("x-auth-preferred_username", "root"),
            ("cookie", "_portcullis=abc; theme=dark"),
            ("x-keep", "yes"),
        ];
        let forwarding: &[&[(&str, &str)]] = &[
            &[],
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "gopher"),
                ("x-forwarded-host", "evil.example"),
            ],
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "7.7.7.7"),
            ],
            &[
                ("connection", "x-forwarded-proto, x-forwarded-for"),
                ("x-forwarded-proto", "gopher"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
        ];
        let ids = [
            IdentityHeaders {
                user: HeaderValue::from_static("alice"),
                email: HeaderValue::from_static("alice@example.com"),
                groups: HeaderValue::from_static("devs,ops"),
                preferred_username: HeaderValue::from_static("alice.a"),
                claims: vec![("org.id".into(), HeaderValue::from_static("t-42"))],
            },
            IdentityHeaders::empty(),
        ];
        for id in &ids {
            for extra in forwarding {
                for strip in [&[][..], &["x-forwarded-host"][..]] {
                    for trusted in [false, true] {
                        let sent: Vec<_> = spoofed.iter().chain(extra.iter()).copied().collect();
                        let mut in_map = headers(&sent);
                        scrub(strip, &mut in_map, id, trusted);
                        let mut as_lines = headers(&sent);
                        let mut lines = Vec::new();
                        hygiene(strip).scrub_request(
                            &mut as_lines,
                            "_portcullis",
                            id,
                            None,
                            &fwd(trusted),
                            Carry::Lines(&mut lines),
                        );
                        let text = String::from_utf8(lines).unwrap();
                        assert!(text.ends_with("\r\n"), "{text:?}");
                        for line in text.trim_end_matches("\r\n").split("\r\n") {
                            let (name, value) = line.split_once(": ").expect("name: value");
                            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                            assert!(!as_lines.contains_key(&name), "{name} twice: {sent:?}");
                            as_lines.append(name, HeaderValue::from_str(value).unwrap());
                        }
                        assert_eq!(
                            as_lines, in_map,
                            "{sent:?}, trusted {trusted}, strip {strip:?}"
                        );
                        // Whatever the client sent, each forwarding field
                        // reaches the upstream once, a peer's own or ours.
                        for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
                            assert_eq!(in_map.get_all(name).iter().count(), 1, "{name}: {sent:?}");
                        }
                        let kept = trusted
                            && extra.contains(&("x-forwarded-proto", "gopher"))
                            && !extra.iter().any(|(n, _)| *n == "connection");
                        let xfp = if kept { "gopher" } else { "https" };
                        assert_eq!(in_map["x-forwarded-proto"], xfp, "{sent:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn framing_and_forwarding_fields_in_other_spellings_are_removed() {
        for trusted in [false, true] {
            let mut h = headers(&[
                ("content_length", "99"),
                ("transfer_encoding", "chunked"),
                ("x_forwarded_for", "6.6.6.6"),
                ("X_Forwarded_Proto", "gopher"),
                ("x.forwarded.host", "evil.example"),
                ("x_real_ip", "6.6.6.6"),
                ("forwarded_", "for=6.6.6.6"),
                ("x-real-ip", "7.7.7.7"),
                ("x_custom", "stays"),
            ]);
            scrub(&[], &mut h, &IdentityHeaders::empty(), trusted);
            for gone in [
                "content_length",
                "transfer_encoding",
                "x_forwarded_for",
                "x_forwarded_proto",
                "x.forwarded.host",
                "x_real_ip",
            ] {
                assert!(!h.contains_key(gone), "{gone} survived: {h:?}");
            }
            // Not a respelling of one of them (one separator too many).
            assert_eq!(h["forwarded_"], "for=6.6.6.6");
            assert_eq!(h["x_custom"], "stays");
            assert_eq!(h.contains_key("x-real-ip"), trusted);
            assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        }
    }

    #[test]
    fn a_trusted_peers_forwarding_lines_are_all_kept() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", " 10.1.1.1 , 10.2.2.2"),
            ("x-forwarded-for", ""),
            ("x-forwarded-for", "caf\u{e9}"),
        ];
        for lines in [false, true] {
            let mut h = HeaderMap::new();
            for (k, v) in sent {
                h.append(k, HeaderValue::from_bytes(v.as_bytes()).unwrap());
            }
            let mut out = Vec::new();
            let carry = if lines {
                Carry::Lines(&mut out)
            } else {
                Carry::Map { upgrade: None }
            };
            hygiene(&[]).scrub_request(
                &mut h,
                "_portcullis",
                &IdentityHeaders::empty(),
                None,
                &fwd(true),
                carry,
            );
            let text = String::from_utf8(out).unwrap();
            let xff = if lines {
                assert!(!h.contains_key("x-forwarded-for"));
                text.lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                    .unwrap()
                    .trim_end()
                    .to_owned()
            } else {
                assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
                h["x-forwarded-for"].to_str().unwrap().to_owned()
            };
            assert_eq!(xff, "6.6.6.6, 10.1.1.1 , 10.2.2.2, 10.0.0.9");
        }
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("X_Auth_User"), "x-auth-user");
        assert_eq!(canonical("x-AUTH-user"), "x-auth-user");
        assert_eq!(canonical("X.Auth.User"), "x-auth-user");
        assert!(same_header("x_auth_user", "x-auth-user"));
        assert!(same_header("x.auth.user", "x-auth-user"));
        assert!(same_header("x~auth_user", "x-auth-user"));
        assert!(!same_header("x-auth-users", "x-auth-user"));
        assert!(!same_header("xaauth-user", "x-auth-user"));
    }

    /// Client copies of headers that name another URL, path, prefix or
    /// port, and separator-folded spellings of the identity headers, never
    /// go upstream, from trusted peers either.
    #[test]
    fn url_overrides_and_folded_identity_spellings_are_removed() {
        let sent = [
            ("X-Original-URL", "/admin"),
            ("x_original_url", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("X-Forwarded-Uri", "/admin"),
            ("X.Forwarded.Prefix", "/evil"),
            ("X-Forwarded-Prefix", "/evil"),
            ("X-Forwarded-Port", "1"),
            ("X.Auth.User", "mallory"),
            ("x.AUTH.email", "m@evil"),
            ("X.Auth_Groups", "admins"),
            ("x-auth-access.token", "forged"),
        ];
        for trusted in [false, true] {
            let mut h = headers(&sent);
            scrub(&[], &mut h, &IdentityHeaders::empty(), trusted);
            for (name, _) in sent {
                let lower = name.to_ascii_lowercase();
                let kept = h.get_all(lower.as_str()).iter().count();
                let fresh =
                    ["x-auth-user", "x-auth-email", "x-auth-groups"].contains(&lower.as_str());
                assert_eq!(
                    kept,
                    usize::from(fresh),
                    "{name} (trusted: {trusted}): {h:?}"
                );
            }
            assert_eq!(h["x-auth-user"], "");
        }
    }

    #[test]
    fn hostile_request_headers_are_removed() {
        let mut h = headers(&[
            ("X-Auth-User", "mallory"),
            ("x_auth_user", "mallory"),
            ("X_AUTH_GROUPS", "admins"),
            ("x-auth-access-token", "forged"),
            ("x-forwarded-user", "mallory"),
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "hop"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil.example.com"),
            ("cookie", "_portcullis=abc; theme=dark"),
            ("cookie", "_portcullis_flow_x=1; lang=en"),
            ("x-keep", "yes"),
        ]);
        let id = IdentityHeaders::empty();
        scrub(&["X_Forwarded_User"], &mut h, &id, false);
        for gone in [
            "x_auth_user",
            "x_auth_groups",
            "x-auth-access-token",
            "x-forwarded-user",
            "connection",
            "x-secret",
            "te",
            "upgrade",
            "forwarded",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived: {h:?}");
        }
        assert_eq!(h["x-auth-user"], "");
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["cookie"], "theme=dark; lang=en");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn trusted_peers_extend_forwarding() {
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("cookie", "_portcullis=abc"),
        ]);
        hygiene(&[]).scrub_request(
            &mut h,
            "_portcullis",
            &IdentityHeaders::empty(),
            None,
            &fwd(true),
            Carry::Map {
                upgrade: Some(HeaderValue::from_static("websocket")),
            },
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("cookie"));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn upgrades_are_recognised() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_of(&h).unwrap(), "websocket");
        assert!(upgrade_of(&headers(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn hop_bits_follow_the_list() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_bit(n.as_str()), Some(1 << i), "{n}");
        }
        assert_eq!(hop_bit("connections"), None);
        assert_eq!(hop_bit("host"), None);
    }

    #[test]
    fn ipv4_text_matches_display() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 250] {
                let ip = Ipv4Addr::from([a, b, 255 - a, a / 3]);
                assert_eq!(ipv4_text(ip, &mut [0; 15]), ip.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn forwarded_for_names_the_peer() {
        for (peer, want) in [
            ("10.0.0.9", "10.0.0.9"),
            ("255.255.255.255", "255.255.255.255"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("2001:db8::8:800:200c:417a", "2001:db8::8:800:200c:417a"),
        ] {
            for trusted in [false, true] {
                let mut h = headers(&[("x-forwarded-for", "1.1.1.1")]);
                let f = Forwarding {
                    peer: peer.parse().unwrap(),
                    ..fwd(trusted)
                };
                let sent = Sent {
                    xff: true,
                    ..Sent::default()
                };
                forwarded(&mut h, &f, &sent, None);
                let want = if trusted {
                    format!("1.1.1.1, {want}")
                } else {
                    want.to_owned()
                };
                assert_eq!(h["x-forwarded-for"], want.as_str());
            }
        }
    }

    /// A request without any removed name keeps every header it came with.
    #[test]
    fn clean_requests_keep_their_headers() {
        let mut h = headers(&[
            ("host", "app.example.com"),
            ("accept", "*/*"),
            ("x-request-id", "abc"),
            ("x-auth-userx", "kept: a longer name"),
            ("cookie", "theme=dark"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
        ]);
        scrub(&[], &mut h, &IdentityHeaders::empty(), true);
        assert_eq!(h["host"], "app.example.com");
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h["x-auth-userx"], "kept: a longer name");
        assert_eq!(h["cookie"], "theme=dark");
        // A trusted peer's Forwarded and X-Real-IP stay.
        assert_eq!(h["forwarded"], "for=1.2.3.4");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        // Five identity headers (user, email, groups, preferred username,
        // the claim header), three forwarding headers.
        assert_eq!(h.len(), 7 + 5 + 3, "{h:?}");
    }

    /// Duplicates, `_` spellings, mixed case and names smuggled through
    /// `Connection` are all removed, however many copies there are.
    #[test]
    fn hostile_variants_are_removed() {
        let mut h = headers(&[
            ("x-auth-user", "mallory"),
            ("X-Auth-User", "mallory2"),
            ("x_auth_user", "mallory3"),
            ("X_Auth_Email", "m@evil"),
            ("x-auth_groups", "admins"),
            ("x_AUTH-groups", "admins"),
            ("x-auth-access_token", "forged"),
            ("X-Auth-Request-User", "mallory"),
            ("x_auth_request_groups", "admins"),
            ("X-Auth-Request-Access-Token", "forged"),
            ("x-auth-preferred_username", "mallory"),
            ("X-Auth-Tenant", "t-1"),
            ("x-auth-assertion", "forged"),
            ("X-Internal_Role", "root"),
            ("x-internal-role", "root"),
            ("connection", "X-Auth-User, x-custom"),
            ("Connection", "X-Forwarded-For, close"),
            ("x-custom", "hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-checksum"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("X-Real-IP", "7.7.7.7"),
            ("x-keep", "yes"),
        ]);
        let id = IdentityHeaders {
            user: HeaderValue::from_static("alice"),
            email: HeaderValue::from_static("alice@example.com"),
            groups: HeaderValue::from_static("admins"),
            preferred_username: HeaderValue::from_static("alice.a"),
            claims: vec![("org.id".into(), HeaderValue::from_static("t-42"))],
        };
        // Trusted, so X-Forwarded-For would be extended, but Connection named it.
        scrub(&["x-INTERNAL-role"], &mut h, &id, true);
        for gone in [
            "x_auth_user",
            "x_auth_email",
            "x-auth_groups",
            "x_auth-groups",
            "x-auth-access_token",
            "x-auth-access-token",
            "x-auth-request-user",
            "x_auth_request_groups",
            "x-auth-request-access-token",
            "x-auth-preferred_username",
            "x-auth-assertion",
            "x-internal_role",
            "x-internal-role",
            "connection",
            "x-custom",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "transfer-encoding",
            "trailer",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived: {h:?}");
        }
        let all = |n: &str| h.get_all(n).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all("x-auth-user"), ["alice"]);
        assert_eq!(all("x-auth-email"), ["alice@example.com"]);
        assert_eq!(all("x-auth-groups"), ["admins"]);
        assert_eq!(all("x-auth-preferred-username"), ["alice.a"]);
        assert_eq!(all("x-auth-tenant"), ["t-42"]);
        assert_eq!(all("x-forwarded-for"), ["10.0.0.9"]);
        // From a trusted peer X-Real-IP stays, every copy.
        assert_eq!(all("x-real-ip"), ["6.6.6.6", "7.7.7.7"]);
        assert_eq!(h["x-keep"], "yes");

        // The same from an untrusted peer also drops X-Real-IP and Forwarded.
        let mut h = headers(&[
            ("x-real-ip", "6.6.6.6"),
            ("X-Real-IP", "7.7.7.7"),
            ("forwarded", "for=6.6.6.6"),
            ("Forwarded", "for=7.7.7.7"),
            ("x-forwarded-proto", "http"),
        ]);
        scrub(&[], &mut h, &IdentityHeaders::empty(), false);
        assert!(!h.contains_key("x-real-ip"));
        assert!(!h.contains_key("forwarded"));
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    /// `headers.strip` wins over the cookie cut: a stripped `Cookie` goes whole.
    #[test]
    fn stripped_cookie_header_goes_whole() {
        let mut h = headers(&[("cookie", "_portcullis=abc; theme=dark"), ("Cookie", "a=1")]);
        scrub(&["Cookie"], &mut h, &IdentityHeaders::empty(), false);
        assert!(!h.contains_key("cookie"), "{h:?}");
    }

    #[test]
    fn own_cookies_are_cut_from_every_cookie_header() {
        let mut h = headers(&[
            ("cookie", "_portcullis=abc"),
            ("cookie", "a=1; _portcullis_flow_q=2;b=\"x y\" ; garbage"),
            ("cookie", "_portcullisx=keep"),
        ]);
        scrub(&[], &mut h, &IdentityHeaders::empty(), false);
        let cookies: Vec<_> = h.get_all("cookie").iter().cloned().collect();
        assert_eq!(cookies, ["a=1; b=\"x y\"; garbage; _portcullisx=keep"]);

        // A bare `_portcullis` (no `=`) alone leaves the header as it was;
        // beside a real one of ours it goes too.
        for (sent, want) in [
            ("_portcullis; a=1", Some("_portcullis; a=1")),
            ("_portcullis; a=1; _portcullis=x", Some("a=1")),
            ("_portcullis=x;", None),
            (" ; _portcullis = x ; ", None),
        ] {
            let mut h = headers(&[("cookie", sent)]);
            strip_own_cookies(&mut h, "_portcullis");
            assert_eq!(
                h.get("cookie").map(|v| v.to_str().unwrap()),
                want,
                "{sent:?}"
            );
        }
    }

    /// A cookie that is not ASCII text beside ours hides nothing: ours go,
    /// the others reach the upstream byte for byte.
    #[test]
    fn own_cookies_are_cut_beside_non_ascii_cookies() {
        let mut h = HeaderMap::new();
        for v in [
            &b"z=caf\xc3\xa9; _portcullis=abc; raw=\xff\x80"[..],
            b"_portcullis_flow_q=2; lang=en",
        ] {
            h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        scrub(&[], &mut h, &IdentityHeaders::empty(), false);
        let cookies: Vec<_> = h.get_all("cookie").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(cookies, [&b"z=caf\xc3\xa9; raw=\xff\x80; lang=en"[..]]);
    }

    fn cookie_piece() -> impl Strategy<Value = Vec<u8>> {
        let value = proptest::collection::vec(
            prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')]
                .prop_filter("no ;", |b| *b != b';'),
            0..20,
        );
        let name = prop_oneof![
            Just(b"_portcullis".to_vec()),
            Just(b"_portcullis_flow_abc".to_vec()),
            Just(b"_portcullisx".to_vec()),
            Just(b"_portcullis_flowx".to_vec()),
            Just(b"z".to_vec()),
            Just(Vec::new()),
            proptest::collection::vec(b'a'..=b'z', 1..6),
        ];
        let pad = proptest::sample::select(vec![&b""[..], b" ", b"\t "]);
        let eq = proptest::sample::select(vec![&b"="[..], b" = ", b""]);
        (pad.clone(), name, eq, value, pad).prop_map(|(p1, n, e, v, p2)| {
            let value = if e.is_empty() { Vec::new() } else { v };
            [p1, &n[..], e, &value[..], p2].concat()
        })
    }

    proptest! {
        /// Whatever the `Cookie` headers hold: afterwards none of the
        /// remaining pieces is a `name=value` pair of ours, and when the
        /// header is rewritten, every other piece is there, in order, byte
        /// for byte. Without one of ours the headers are left exactly as sent.
        #[test]
        fn prop_stripping_cuts_ours_and_keeps_the_rest(
            headers_sent in proptest::collection::vec(
                proptest::collection::vec(cookie_piece(), 1..6), 1..4),
        ) {
            let values: Vec<Vec<u8>> = headers_sent.iter().map(|p| p.join(&b';')).collect();
            let mut h = HeaderMap::new();
            for v in &values {
                h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
            }
            let before = h.clone();
            strip_own_cookies(&mut h, "_portcullis");
            let ours = |n: &[u8]| n == b"_portcullis" || n.starts_with(b"_portcullis_flow_");
            let pieces = |h: &HeaderMap| -> Vec<Vec<u8>> {
                h.get_all(header::COOKIE)
                    .iter()
                    .flat_map(|v| http_util::cookie_pieces(v.as_bytes()))
                    .map(|p| p.raw().to_vec())
                    .collect()
            };
            for v in h.get_all(header::COOKIE) {
                for p in http_util::cookie_pieces(v.as_bytes()) {
                    prop_assert!(!(ours(p.name()) && p.value().is_some()), "{:?}", p);
                }
            }
            prop_assert_eq!(http_util::cookie_bytes(&h, "_portcullis"), None);
            let had_ours = http_util::cookies(&before).any(|(k, _)| ours(k));
            if had_ours {
                let others: Vec<Vec<u8>> = pieces(&before)
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .filter(|p| !ours(http_util::cookie_pieces(p).next().unwrap().name()))
                    .collect();
                prop_assert_eq!(pieces(&h), others.clone());
                prop_assert!(h.get_all(header::COOKIE).iter().count() <= 1);
                if let Some(v) = h.get(header::COOKIE) {
                    prop_assert_eq!(v.as_bytes(), others.join(&b"; "[..]));
                }
            } else {
                prop_assert_eq!(h, before);
            }
        }
    }

    #[test]
    fn responses_lose_hop_by_hop_headers() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Upstream-Secret"),
            ("x-upstream-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        scrub_response(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);

        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "x"),
        ]);
        scrub_response(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-accept"], "x");

        let mut h = headers(&[("content-length", "2")]);
        scrub_response(&mut h, false);
        assert_eq!(h.len(), 1);
    }
}
