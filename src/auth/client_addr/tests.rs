//! The X-Forwarded-For walk: trusted and untrusted peers, spoofed leftmost
//! entries, IPv6 and mapped addresses, unreadable entries, and a property
//! test over arbitrary lists.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    }
    h
}

fn walk(peer: &str, values: &[&str], trusted: &[&str]) -> Result<IpAddr, ForwardedForError> {
    client_addr(ip(peer), &xff(values), &nets(trusted))
}

const PROXIES: &[&str] = &["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"];

#[test]
fn untrusted_peer_is_the_client_whatever_it_sends() {
    assert_eq!(
        walk("203.0.113.9", &["192.168.1.1"], PROXIES),
        Ok(ip("203.0.113.9"))
    );
    assert_eq!(
        walk("203.0.113.9", &["garbage"], PROXIES),
        Ok(ip("203.0.113.9"))
    );
    assert_eq!(walk("203.0.113.9", &[], PROXIES), Ok(ip("203.0.113.9")));
}

#[test]
fn trusted_peer_gives_the_nearest_untrusted_hop() {
    assert_eq!(
        walk("127.0.0.1", &["198.51.100.4"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    // Spoofed leftmost entries are never chosen over the hop the proxy saw.
    assert_eq!(
        walk("127.0.0.1", &["192.168.1.1, 198.51.100.4"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    // Trusted hops in between are skipped.
    assert_eq!(
        walk(
            "127.0.0.1",
            &["192.168.1.1, 198.51.100.4, 10.1.2.3"],
            PROXIES
        ),
        Ok(ip("198.51.100.4"))
    );
    // Several header lines are one list, in order.
    assert_eq!(
        walk(
            "127.0.0.1",
            &["192.168.1.1", "198.51.100.4", "10.1.2.3"],
            PROXIES
        ),
        Ok(ip("198.51.100.4"))
    );
    // Every hop trusted: the leftmost; no header: the peer.
    assert_eq!(
        walk("127.0.0.1", &["10.9.9.9, 10.1.1.1"], PROXIES),
        Ok(ip("10.9.9.9"))
    );
    assert_eq!(walk("127.0.0.1", &[], PROXIES), Ok(ip("127.0.0.1")));
    assert_eq!(walk("127.0.0.1", &[""], PROXIES), Ok(ip("127.0.0.1")));
}

#[test]
fn ipv6_ports_brackets_and_mapped_addresses() {
    assert_eq!(
        walk("fd00::1", &["2001:db8::7"], PROXIES),
        Ok(ip("2001:db8::7"))
    );
    assert_eq!(
        walk("::ffff:127.0.0.1", &["2001:db8::7"], PROXIES),
        Ok(ip("2001:db8::7"))
    );
    assert_eq!(
        walk("127.0.0.1", &["::ffff:198.51.100.4"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    // A mapped trusted hop is skipped like its IPv4 form.
    assert_eq!(
        walk("127.0.0.1", &["198.51.100.4, ::ffff:10.0.0.1"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    assert_eq!(
        walk("127.0.0.1", &["198.51.100.4:5678"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    assert_eq!(
        walk("127.0.0.1", &["[2001:db8::7]:443"], PROXIES),
        Ok(ip("2001:db8::7"))
    );
    assert_eq!(
        walk("127.0.0.1", &[" [2001:db8::7] "], PROXIES),
        Ok(ip("2001:db8::7"))
    );
    // An untrusted mapped peer is its IPv4 form.
    assert_eq!(
        walk("::ffff:198.51.100.4", &[], PROXIES),
        Ok(ip("198.51.100.4"))
    );
}

#[test]
fn unreadable_entries_end_the_walk() {
    use ForwardedForError::*;
    assert_eq!(walk("127.0.0.1", &["unknown"], PROXIES), Err(NotAnAddress));
    assert_eq!(
        walk("127.0.0.1", &["198.51.100.4, 10.0.0.1 x"], PROXIES),
        Err(NotAnAddress)
    );
    assert_eq!(
        walk("127.0.0.1", &["1.2.3.4.5"], PROXIES),
        Err(NotAnAddress)
    );
    assert_eq!(
        walk("127.0.0.1", &["[1.2.3.4]"], PROXIES),
        Err(NotAnAddress)
    );
    // Garbage left of the first untrusted hop is never read.
    assert_eq!(
        walk("127.0.0.1", &["garbage, 198.51.100.4"], PROXIES),
        Ok(ip("198.51.100.4"))
    );
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
    );
    assert_eq!(
        client_addr(ip("127.0.0.1"), &h, &nets(PROXIES)),
        Err(NotText)
    );
}

/// Entries drawn from trusted and untrusted addresses, in every spelling,
/// plus garbage.
fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4).prop_map(|n| format!("10.0.0.{n}")),
        (0u8..4).prop_map(|n| format!("198.51.100.{n}")),
        (0u8..4).prop_map(|n| format!("::ffff:10.0.0.{n}")),
        (0u16..4).prop_map(|n| format!("fd00::{n}")),
        (0u16..4).prop_map(|n| format!("[2001:db8::{n}]:80")),
        "[ -~]{0,12}",
    ]
}

proptest! {
    #[test]
    fn walk_never_panics_and_never_picks_a_trusted_hop_needlessly(
        peer_trusted in any::<bool>(),
        lines in prop::collection::vec(prop::collection::vec(entry(), 0..5), 0..4),
    ) {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let peer = if peer_trusted { ip("10.0.0.9") } else { ip("203.0.113.1") };
        let values: Vec<String> = lines.iter().map(|l| l.join(",")).collect();
        let mut h = HeaderMap::new();
        for v in &values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append("x-forwarded-for", v);
            }
        }
        let got = client_addr(peer, &h, &trusted);
        if !peer_trusted {
            // An untrusted peer's header is ignored.
            prop_assert_eq!(got, Ok(peer));
        } else if let Ok(ip) = got {
            let parsed: Vec<IpAddr> = h
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| v.to_str().unwrap().split(','))
                .filter(|e| !e.trim().is_empty())
                .filter_map(|e| parse_entry(e.trim()))
                .map(canonical)
                .collect();
            let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
            if is_trusted(&ip) {
                // Only when every address on the list is trusted.
                prop_assert!(parsed.iter().all(is_trusted), "{:?} -> {}", values, ip);
            } else {
                // The chosen address is on the list, and every address right of it is trusted.
                let pos = parsed.iter().rposition(|a| *a == ip);
                prop_assert!(pos.is_some(), "{:?} -> {}", values, ip);
                prop_assert!(parsed[pos.unwrap() + 1..].iter().all(is_trusted), "{:?} -> {}", values, ip);
            }
        }
    }
}
