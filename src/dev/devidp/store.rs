//! The development issuer's mutable state: users (whose groups tests may
//! change), outstanding authorization codes, access tokens and refresh tokens.
//!
//! Everything lives behind one `std::sync::Mutex` owned by the issuer; the
//! functions here never await, so the lock is never held across an `.await`.
//! Every collection is a [`Bounded`] map that evicts its oldest entry when
//! full, so a long-running demo cannot grow without bound.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::DevUser;

/// How long an authorization code may be redeemed after it was issued.
pub(super) const CODE_TTL: Duration = Duration::from_secs(60);
/// Outstanding authorization codes kept at most.
pub(super) const MAX_CODES: usize = 1024;
/// Live access tokens kept at most.
pub(super) const MAX_ACCESS_TOKENS: usize = 4096;
/// Live refresh tokens kept at most.
pub(super) const MAX_REFRESH_TOKENS: usize = 4096;

/// An issued authorization code, waiting for the client to redeem it.
#[derive(Debug, Clone)]
pub(super) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub username: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub sid: String,
    /// Seconds since the Unix epoch when the user entered the password.
    pub auth_time: u64,
    pub expires: Instant,
}

/// What an access or refresh token stands for.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    pub client_id: String,
    pub username: String,
    pub scopes: Vec<String>,
    pub sid: String,
    pub auth_time: u64,
    /// `None` for refresh tokens, which live until used, revoked or evicted.
    pub expires: Option<Instant>,
}

/// A map with insertion-order eviction: inserting into a full map first
/// removes the oldest entry.
#[derive(Debug)]
pub(super) struct Bounded<V> {
    cap: usize,
    next_seq: u64,
    entries: HashMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
}

/// All state the issuer changes while it runs.
#[derive(Debug)]
pub(super) struct Store {
    pub users: HashMap<String, DevUser>,
    pub codes: Bounded<CodeGrant>,
    pub access_tokens: Bounded<Grant>,
    pub refresh_tokens: Bounded<Grant>,
    /// Codes already redeemed (until they would have expired), to detect
    /// replays and revoke what the first redemption issued.
    pub redeemed_codes: Bounded<(String, Instant)>,
}

// === impl Bounded ===

impl<V> Bounded<V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            cap: cap.max(1),
            next_seq: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.remove(&key);
        while self.entries.len() >= self.cap {
            match self.order.pop_first() {
                Some((_, oldest)) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (seq, value));
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let (seq, value) = self.entries.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    /// Removes every entry for which `keep` returns false.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|_, (seq, v)| {
            let k = keep(v);
            if !k {
                order.remove(seq);
            }
            k
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

// === impl Store ===

impl Store {
    pub fn new(users: &[DevUser]) -> Self {
        Store {
            users: users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            codes: Bounded::new(MAX_CODES),
            access_tokens: Bounded::new(MAX_ACCESS_TOKENS),
            refresh_tokens: Bounded::new(MAX_REFRESH_TOKENS),
            redeemed_codes: Bounded::new(MAX_CODES),
        }
    }

    /// Takes the code out of the store (a code is good for one attempt, right
    /// or wrong). A replayed code revokes every token of the login it started
    /// (RFC 6749 §4.1.2) and yields `None`, as does an unknown or expired code.
    pub fn redeem_code(&mut self, code: &str, now: Instant) -> Option<CodeGrant> {
        if let Some((sid, _)) = self.redeemed_codes.get(code).cloned() {
            self.revoke_sid(&sid);
            return None;
        }
        let grant = self.codes.remove(code)?;
        self.redeemed_codes
            .insert(code.to_owned(), (grant.sid.clone(), grant.expires));
        self.redeemed_codes.retain(|(_, expires)| *expires > now);
        (grant.expires > now).then_some(grant)
    }

    /// Revokes every access and refresh token issued for login `sid`.
    pub fn revoke_sid(&mut self, sid: &str) {
        self.access_tokens.retain(|g| g.sid != sid);
        self.refresh_tokens.retain(|g| g.sid != sid);
    }

    /// The grant behind a live access token.
    pub fn access_grant(&mut self, token: &str, now: Instant) -> Option<Grant> {
        let grant = self.access_tokens.get(token)?;
        if grant.expires.is_some_and(|e| e <= now) {
            self.access_tokens.remove(token);
            return None;
        }
        Some(grant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(sid: &str) -> Grant {
        Grant {
            client_id: "c".into(),
            username: "alice".into(),
            scopes: vec!["openid".into()],
            sid: sid.into(),
            auth_time: 0,
            expires: None,
        }
    }

    fn code(sid: &str, expires: Instant) -> CodeGrant {
        CodeGrant {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            username: "alice".into(),
            scopes: vec!["openid".into()],
            nonce: None,
            code_challenge: "x".into(),
            sid: sid.into(),
            auth_time: 0,
            expires,
        }
    }

    #[test]
    fn bounded_evicts_oldest_first() {
        let mut m = Bounded::new(2);
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        m.insert("c".into(), 3);
        assert_eq!(m.len(), 2);
        assert!(m.get("a").is_none());
        assert_eq!(m.get("b"), Some(&2));
        assert_eq!(m.get("c"), Some(&3));
        m.remove("b");
        m.insert("d".into(), 4);
        m.insert("e".into(), 5);
        assert!(m.get("c").is_none());
        assert_eq!(m.order.len(), m.entries.len());
    }

    #[test]
    fn bounded_stays_bounded_under_churn() {
        let mut m = Bounded::new(8);
        for i in 0..10_000 {
            m.insert(format!("k{i}"), i);
            if i % 3 == 0 {
                m.remove(&format!("k{}", i - 1));
            }
        }
        assert!(m.len() <= 8);
        assert_eq!(m.order.len(), m.entries.len());
    }

    #[test]
    fn code_is_single_use_and_replay_revokes_tokens() {
        let now = Instant::now();
        let mut s = Store::new(&[]);
        s.codes.insert("k".into(), code("sid1", now + CODE_TTL));
        assert!(s.redeem_code("k", now).is_some());
        s.access_tokens.insert("at".into(), grant("sid1"));
        s.refresh_tokens.insert("rt".into(), grant("sid1"));
        s.access_tokens.insert("other".into(), grant("sid2"));
        assert!(s.redeem_code("k", now).is_none());
        assert!(s.access_tokens.get("at").is_none());
        assert!(s.refresh_tokens.get("rt").is_none());
        assert!(s.access_tokens.get("other").is_some());
    }

    #[test]
    fn expired_code_is_refused_and_consumed() {
        let now = Instant::now();
        let mut s = Store::new(&[]);
        s.codes.insert("k".into(), code("sid", now + CODE_TTL));
        let later = now + CODE_TTL + Duration::from_secs(1);
        assert!(s.redeem_code("k", later).is_none());
        assert!(s.codes.get("k").is_none());
    }

    #[test]
    fn expired_access_token_is_refused() {
        let now = Instant::now();
        let mut s = Store::new(&[]);
        let mut g = grant("sid");
        g.expires = Some(now + Duration::from_secs(5));
        s.access_tokens.insert("at".into(), g);
        assert!(s.access_grant("at", now).is_some());
        assert!(s.access_grant("at", now + Duration::from_secs(5)).is_none());
    }
}
