//! The client address that rule `networks` are matched against.
//!
//! It is the TCP peer, unless the peer is in `server.trusted_proxies`: then
//! the list `X-Forwarded-For` + peer is walked from the right, skipping
//! addresses in `trusted_proxies`, and the first untrusted address is the
//! client (if every address is trusted, the leftmost). Each proxy appends the
//! address it received the request from, so entries to the right of the
//! first untrusted one were written by trusted hops, and everything to its
//! left came from the client and may be forged: a client that sends
//! `X-Forwarded-For: 192.168.1.1` through the front proxy is still judged by
//! the address the proxy saw. From an untrusted peer the header is ignored.
//!
//! Entries are bare addresses (`203.0.113.7`, `2001:db8::1`); the forms some
//! proxies write with a port (`203.0.113.7:5678`, `[2001:db8::1]:443`) or
//! brackets (`[2001:db8::1]`) are read too, and IPv4-mapped IPv6 addresses
//! count as IPv4. An entry that is none of these (`unknown`, a host name,
//! text that is not ASCII) ends the walk with an error: the request then has
//! no client address and matches no rule with `networks` — never a rule
//! matched on a guess. Empty entries (`a,,b`) are skipped.
//!
//! Called by `forward_auth` and `proxy` once per request, and only when some
//! rule has `networks` or `basic_auth` ([`for_rules`]: Basic auth counts
//! failed attempts per client address); the walk allocates nothing.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::auth::diagnostics::{self, ClientError};
use crate::auth::rules::RuleSet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Why a trusted peer's `X-Forwarded-For` gave no client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedForError {
    /// A header value is not visible ASCII; no proxy writes that.
    #[error("X-Forwarded-For from a trusted proxy is not ASCII text")]
    NotText,
    /// An entry the walk reached is not an IP address (`unknown`, a host
    /// name, garbage): a proxy in between that obfuscates addresses, or a
    /// trusted client sending its own header.
    #[error("X-Forwarded-For from a trusted proxy has an entry that is not an IP address")]
    NotAnAddress,
}

/// The client address of a request from `peer` (see the module docs).
/// Allocates nothing.
pub fn client_addr(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, ForwardedForError> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut leftmost = canonical(peer);
    if !is_trusted(&leftmost) {
        return Ok(leftmost);
    }
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().map_err(|_| ForwardedForError::NotText)?;
        for entry in text.rsplit(',').map(str::trim_ascii) {
            if entry.is_empty() {
                continue;
            }
            let ip = canonical(parse_entry(entry).ok_or(ForwardedForError::NotAnAddress)?);
            if !is_trusted(&ip) {
                return Ok(ip);
            }
            leftmost = ip;
        }
    }
    Ok(leftmost)
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 so `127.0.0.1/32` matches `::ffff:127.0.0.1`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client address for [`RequestFacts::client`](crate::auth::rules::RequestFacts::client): `None`
/// without computing anything when no rule has `networks` or `basic_auth`, and `None` when
/// `X-Forwarded-For` is unreadable (logged at info, rate-limited).
pub fn for_rules(
    rules: &RuleSet,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    if !(rules.has_networks() || rules.has_basic_auth()) {
        return None;
    }
    match client_addr(peer, headers, trusted) {
        Ok(ip) => Some(ip),
        Err(e) => {
            match diagnostics::client_error(ClientError::BadForwardedFor) {
                Some(suppressed) => {
                    tracing::info!(client.addr = %peer, error = %e, suppressed, "no client address: rules with networks do not match this request")
                }
                None => {
                    tracing::debug!(client.addr = %peer, error = %e, "no client address: rules with networks do not match this request")
                }
            }
            None
        }
    }
}

/// `1.2.3.4`, `::1`, `1.2.3.4:80`, `[::1]:80` or `[::1]`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let bare = entry.strip_prefix('[')?.strip_suffix(']')?;
    bare.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests;
