//! Login-flow state kept in the browser: one encrypted, short-lived cookie
//! per login in progress.
//!
//! Each flow gets its own cookie, named after the first characters of its
//! `state`, so several tabs can log in at once without overwriting each other
//! (the cause of "CSRF token not found" failures with a single state cookie).
//! The cookies live 10 minutes, are scoped to the gateway's path prefix, are
//! capped at [`MAX_FLOWS`] per browser (the oldest are expired first, so they
//! can never pile up into a 431), and each is cleared by its callback. Because
//! the state is sealed with the shared session secret, any instance with the
//! same config completes a login another instance started.

use serde::{Deserialize, Serialize};

use crate::auth::session::SessionKeys;
use crate::base::clock::unix_now;

/// Lifetime of a login flow, in seconds.
pub const FLOW_TTL_SECS: u64 = 600;
/// Most flow cookies one browser keeps at once.
pub const MAX_FLOWS: usize = 4;
/// Characters of `state` used in the cookie name.
const STATE_TAG_LEN: usize = 12;

/// Everything the callback needs to finish a login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowState {
    /// The `state` sent to the IdP.
    #[serde(rename = "s")]
    pub state: String,
    /// The `nonce` sent to the IdP.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE code verifier.
    #[serde(rename = "v")]
    pub verifier: String,
    /// The redirect URI used (the token request must repeat it).
    #[serde(rename = "u")]
    pub redirect_uri: String,
    /// Where to send the browser afterwards (already validated).
    #[serde(rename = "r")]
    pub rd: String,
    /// Unix seconds.
    #[serde(rename = "t")]
    pub issued_at: u64,
}

// === impl FlowState ===

impl FlowState {
    /// The flow cookie's name for a given `state`.
    pub fn cookie_name(prefix: &str, state: &str) -> Option<String> {
        let tag = state.get(..STATE_TAG_LEN)?;
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then(|| format!("{prefix}_flow_{tag}"))
    }

    /// Seals this flow into a `(name, value)` cookie pair.
    pub fn seal(&self, keys: &SessionKeys) -> Option<(String, String)> {
        let name = Self::cookie_name(keys.cookie_name(), &self.state)?;
        let json = serde_json::to_string(self).ok()?;
        let value = keys.encrypt(&name, &json);
        Some((name, value))
    }

    /// Opens a flow cookie. `None` when it does not decrypt or parse.
    pub fn unseal(keys: &SessionKeys, name: &str, value: &str) -> Option<FlowState> {
        let json = keys.decrypt(name, value)?;
        serde_json::from_str(&json).ok()
    }

    /// True when the flow is older than [`FLOW_TTL_SECS`] (or from the future).
    pub fn is_expired(&self) -> bool {
        let now = unix_now();
        now > self.issued_at + FLOW_TTL_SECS || self.issued_at > now + 60
    }
}

/// The flow cookies present in a request (`name=value` pairs as the
/// `Cookie` header carries them), as `(name, issued_at)` pairs
/// (undecryptable ones get `issued_at = 0`, so they are expired first).
pub fn present<'a>(
    keys: &SessionKeys,
    cookies: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<(String, u64)> {
    let prefix = format!("{}_flow_", keys.cookie_name());
    cookies
        .filter_map(|(k, v)| {
            let name = std::str::from_utf8(k)
                .ok()
                .filter(|k| k.starts_with(&prefix))?;
            let t = std::str::from_utf8(v)
                .ok()
                .and_then(|v| FlowState::unseal(keys, name, v))
                .map_or(0, |f| f.issued_at);
            Some((name.to_owned(), t))
        })
        .collect()
}

/// Which existing flow cookies to expire so that, with one new flow, at most
/// [`MAX_FLOWS`] remain: the oldest first, and every expired one.
pub fn to_evict(mut present: Vec<(String, u64)>) -> Vec<String> {
    present.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let now = unix_now();
    present
        .into_iter()
        .enumerate()
        .filter(|(i, (_, t))| *i + 1 >= MAX_FLOWS || now > t + FLOW_TTL_SECS)
        .map(|(_, (name, _))| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::Secret;
    use crate::config::{SessionConfig, StoreKind};
    use std::time::Duration;

    fn keys() -> SessionKeys {
        SessionKeys::new(&SessionConfig {
            cookie_name: "_p".into(),
            cookie_domain: None,
            cookie_secure: true,
            secrets: vec![Secret::new(vec![7u8; 32])],
            lifetime: Duration::from_secs(60),
            idle_timeout: None,
            refresh: false,
            store: StoreKind::Memory,
            redis_urls: vec![],
            redis_ca: None,
            local_cache: true,
        })
    }

    fn flow(state: &str, t: u64) -> FlowState {
        FlowState {
            state: state.into(),
            nonce: "n".into(),
            verifier: "v".into(),
            redirect_uri: "https://a/cb".into(),
            rd: "/".into(),
            issued_at: t,
        }
    }

    #[test]
    fn seal_unseal() {
        let k = keys();
        let f = flow("abcdefghijklmnop", unix_now());
        let (name, value) = f.seal(&k).unwrap();
        assert_eq!(name, "_p_flow_abcdefghijkl");
        assert_eq!(FlowState::unseal(&k, &name, &value), Some(f));
        assert_eq!(FlowState::unseal(&k, "_p_flow_other", &value), None);
    }

    #[test]
    fn hostile_state_never_names_a_cookie() {
        assert!(FlowState::cookie_name("_p", "short").is_none());
        assert!(FlowState::cookie_name("_p", "abc;def=ghijk").is_none());
    }

    #[test]
    fn eviction_keeps_newest() {
        let now = unix_now();
        let present = (0..6).map(|i| (format!("c{i}"), now - i)).collect();
        let evicted = to_evict(present);
        assert_eq!(evicted, vec!["c3", "c4", "c5"]);
        assert_eq!(to_evict(vec![("old".into(), now - 10_000)]), vec!["old"]);
        assert!(to_evict(vec![("new".into(), now)]).is_empty());
    }
}
