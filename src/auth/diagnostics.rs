//! Run-time diagnostics: "diagnose once, then rate-limit".
//!
//! The IdP-side misconfigurations that only show while serving — an empty
//! groups claim while rules need groups, a redirect URI the IdP rejects,
//! `invalid_grant`, clock skew on ID tokens, a token signed with a key the
//! JWKS does not list — are each a [`Class`]. The first occurrence of a
//! class is logged at warn with its fix in plain words (the same words as
//! `portcullis check`); later ones at most once per [`REPEAT_EVERY`], saying
//! how many were suppressed in between.
//!
//! Callers: `login` (callback failures, the empty-groups case, and a
//! background probe of each new redirect URI against the IdP's
//! authorization endpoint), `server` (connections over the per-client cap).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::auth::oidc::probe::{authorize, http_client, AuthorizeVerdict};
use crate::auth::oidc::{LoginError, Oidc};
use crate::base::clock::unix_now;
use crate::config::OidcConfig;

/// How often a class already diagnosed is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(600);
/// How often a per-request client error of one [`ClientError`] kind is
/// logged at info; the ones in between go to debug and are counted.
pub const CLIENT_ERRORS_EVERY: Duration = Duration::from_secs(10);
/// Most distinct redirect URIs probed in one process.
const MAX_PROBED_URIS: usize = 64;

/// A failure class with one plain-words fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The groups claim came back empty while rules need groups.
    EmptyGroups,
    /// The IdP shows an error page for the redirect URI portcullis sends.
    RedirectUriRejected,
    /// The token endpoint refused an authorization code.
    InvalidGrant,
    /// An ID token was rejected for its times (`exp`, `iat`).
    ClockSkew,
    /// An ID token's key is not in the IdP's JWKS, even after a refetch.
    UnknownKey,
    /// A client address opened more connections than
    /// `server.max_connections_per_client`; the extra ones were closed.
    ClientConnectionCap,
}

const CLASSES: usize = 6;

/// Per-class state: when it was last logged, and how often it was suppressed since.
#[derive(Debug, Default)]
pub struct Diagnostics {
    limits: [Limiter; CLASSES],
}

/// Lets one occurrence through per interval and counts the others.
#[derive(Debug, Default)]
pub struct Limiter {
    /// Unix seconds of the last occurrence let through; 0 before the first.
    last_logged: AtomicU64,
    /// Occurrences held back since then.
    suppressed: AtomicU64,
}

/// Client mistakes that arrive once per request: logged at info at most once
/// per [`CLIENT_ERRORS_EVERY`] each (with the count held back in between), so
/// that no client can fill the disk with log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// A forward-auth check whose original-request headers are malformed.
    BadForwardAuth,
    /// A proxied request whose path is malformed.
    BadProxied,
    /// A bearer token that failed verification.
    InvalidToken,
    /// A request on a path that a rule denies to everybody.
    DeniedByRule,
    /// An admin request without the admin token, or with a wrong one.
    AdminUnauthorized,
    /// An admin request addressed to a DNS name other than `localhost`.
    AdminMisdirected,
    /// A trusted proxy's `X-Forwarded-For` with an entry that is no address.
    BadForwardedFor,
}

const CLIENT_ERRORS: usize = 7;

// === impl Class ===

impl Class {
    fn index(self) -> usize {
        self as usize
    }

    /// The class's name in logs (`diagnosis=...`).
    pub fn name(self) -> &'static str {
        match self {
            Class::EmptyGroups => "empty_groups_claim",
            Class::RedirectUriRejected => "redirect_uri_rejected",
            Class::InvalidGrant => "invalid_grant",
            Class::ClockSkew => "clock_skew",
            Class::UnknownKey => "jwks_missing_kid",
            Class::ClientConnectionCap => "client_connection_cap",
        }
    }

    /// What to do about it.
    pub fn fix(self) -> &'static str {
        match self {
            Class::EmptyGroups => "request the `groups` scope (oidc.scopes), map groups into the token at the IdP (Authentik: a scope mapping returning [g.name for g in request.user.ak_groups.all()]), or point oidc.groups_claim at the claim your IdP uses (e.g. realm_access.roles); `portcullis check --login` shows the claims received",
            Class::RedirectUriRejected => "register exactly this redirect URI for the client at the IdP (scheme, host, port, path and trailing slash must all match), or set server.external_url to the one that is registered",
            Class::InvalidGrant => "authorization codes are single-use and short-lived: repeated invalid_grant means the token request differs from the login request (redirect URI or client), something replays the callback, or the clocks differ; run `portcullis check`",
            Class::ClockSkew => "synchronise the clocks of this host and the IdP with NTP (chrony, systemd-timesyncd), or raise oidc.clock_leeway; `portcullis check` measures the skew",
            Class::UnknownKey => "the IdP signed the ID token with a key its jwks_uri does not publish: check the signing key attached to the client at the IdP; `portcullis check` lists the published keys",
            Class::ClientConnectionCap => "one client address holds server.max_connections_per_client connections: if it is a front proxy, add its address to server.trusted_proxies (exempt from the cap); if it is a legitimate client, raise the limit",
        }
    }
}

// === impl Diagnostics ===

impl Diagnostics {
    /// Fresh state: nothing diagnosed yet.
    pub fn new() -> Self {
        Diagnostics::default()
    }

    /// Records one occurrence at `now` (unix seconds). Returns `Some(n)` when
    /// it is to be logged, `n` being the occurrences suppressed since the last
    /// log line; `None` when it is rate-limited.
    pub fn occur(&self, class: Class, now: u64) -> Option<u64> {
        self.limits[class.index()].occur(now, REPEAT_EVERY)
    }

    /// Logs `detail` with the class's fix at warn, unless rate-limited.
    pub fn diagnose(&self, class: Class, detail: &str) {
        if let Some(suppressed) = self.occur(class, unix_now()) {
            tracing::warn!(
                diagnosis = class.name(),
                fix = class.fix(),
                suppressed,
                "{detail}"
            );
        }
    }
}

// === impl Limiter ===

impl Limiter {
    /// Nothing let through yet.
    pub const fn new() -> Self {
        Limiter {
            last_logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Records one occurrence at `now` (unix seconds). Returns `Some(n)` when
    /// it is to be logged, `n` being the occurrences held back since the last
    /// one let through; `None` when it is held back.
    pub fn occur(&self, now: u64, every: Duration) -> Option<u64> {
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= every.as_secs();
        if due
            && self
                .last_logged
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Records one per-request client error of `kind`: `Some(n)` when this one
/// is to be logged at info (`n` held back since the last), `None` when it
/// belongs at debug.
pub fn client_error(kind: ClientError) -> Option<u64> {
    static LIMITS: [Limiter; CLIENT_ERRORS] = [const { Limiter::new() }; CLIENT_ERRORS];
    LIMITS[kind as usize].occur(crate::base::clock::unix_secs(), CLIENT_ERRORS_EVERY)
}

/// The process-wide diagnostics.
pub fn global() -> &'static Diagnostics {
    static D: OnceLock<Diagnostics> = OnceLock::new();
    D.get_or_init(Diagnostics::new)
}

/// Logs `detail` for `class` through the process-wide state.
pub fn diagnose(class: Class, detail: &str) {
    global().diagnose(class, detail);
}

/// Diagnoses a failed login when its cause is one of the classes.
pub fn login_failed(e: &LoginError) {
    if let Some((class, detail)) = classify(e) {
        diagnose(class, &detail);
    }
}

/// The class of a failed login, with the line to log, if it has one.
pub fn classify(e: &LoginError) -> Option<(Class, String)> {
    match e {
        LoginError::InvalidGrant(d) => Some((
            Class::InvalidGrant,
            format!("the token endpoint refused the authorization code (invalid_grant: {d})"),
        )),
        LoginError::IdTokenRejected {
            check: "expiry",
            detail,
            source,
        } => Some((
            Class::ClockSkew,
            format!(
                "an ID token was rejected for its times ({}): the clocks of this host and the IdP differ",
                crate::auth::oidc::with_causes(detail, source.as_ref())
            ),
        )),
        LoginError::IdTokenRejected {
            check: "signature",
            ..
        } if e.is_unknown_key() => Some((
            Class::UnknownKey,
            "an ID token is signed with a key the IdP's JWKS does not list, even after refetching it".to_owned(),
        )),
        _ => None,
    }
}

/// The first time a login sends browsers to the IdP with `redirect_uri`,
/// asks the IdP's authorization endpoint in the background whether it
/// accepts that URI; a rejection is diagnosed (the browser sees only the
/// IdP's error page and never comes back).
pub fn watch_redirect_uri(oidc: &Arc<Oidc>, redirect_uri: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    {
        let Ok(mut seen) = seen.lock() else { return };
        if seen.len() >= MAX_PROBED_URIS || !seen.insert(redirect_uri.to_owned()) {
            return;
        }
    }
    let oidc = oidc.clone();
    let uri = redirect_uri.to_owned();
    tokio::spawn(async move {
        let Ok(meta) = oidc.metadata().await else {
            return;
        };
        let endpoint = meta.authorization_endpoint().url().to_string();
        let http = match http_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %crate::base::error::error_chain(&e), "cannot ask the identity provider about the redirect URI: no HTTP client");
                return;
            }
        };
        let verdict = authorize(&http, &endpoint, oidc.config(), &uri).await;
        if let AuthorizeVerdict::ErrorPage { status, text } = verdict {
            diagnose(
                Class::RedirectUriRejected,
                &redirect_rejected(oidc.config(), &uri, status, &text),
            );
        }
    });
}

fn redirect_rejected(cfg: &OidcConfig, uri: &str, status: u16, text: &str) -> String {
    format!(
        "the IdP shows an error page instead of its login page for client {:?} with redirect URI {uri} ({status} {text}); browsers never come back from it",
        cfg.client_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_logs_then_rate_limited() {
        let d = Diagnostics::new();
        assert_eq!(d.occur(Class::InvalidGrant, 1000), Some(0));
        assert_eq!(d.occur(Class::InvalidGrant, 1001), None);
        assert_eq!(d.occur(Class::InvalidGrant, 1500), None);
        // Another class is independent.
        assert_eq!(d.occur(Class::ClockSkew, 1001), Some(0));
        // After the interval, one more line saying how many were suppressed.
        assert_eq!(d.occur(Class::InvalidGrant, 1000 + 600), Some(2));
        assert_eq!(d.occur(Class::InvalidGrant, 1601), None);
    }

    #[test]
    fn client_errors_log_once_per_interval_with_a_count() {
        let l = Limiter::new();
        let every = CLIENT_ERRORS_EVERY;
        assert_eq!(l.occur(5000, every), Some(0));
        for t in 0..1000 {
            assert_eq!(l.occur(5000 + t % 9, every), None);
        }
        assert_eq!(l.occur(5010, every), Some(1000));
        assert_eq!(l.occur(5011, every), None);
    }

    #[test]
    fn login_failures_map_to_classes() {
        use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
        let rejected = |check, e: C| LoginError::IdTokenRejected {
            check,
            detail: String::new(),
            source: Some(Arc::new(e)),
        };
        let skew = rejected(
            "expiry",
            C::Expired("issued in the future (clock skew?)".into()),
        );
        let (class, line) = classify(&skew).unwrap();
        assert_eq!(class, Class::ClockSkew);
        assert!(line.contains("issued in the future"), "{line}");
        let kid = rejected("signature", C::SignatureVerification(S::NoMatchingKey));
        assert_eq!(classify(&kid).unwrap().0, Class::UnknownKey);
        let bad_sig = rejected(
            "signature",
            C::SignatureVerification(S::CryptoError("bad signature".into())),
        );
        assert!(classify(&bad_sig).is_none());
        assert_eq!(
            classify(&LoginError::InvalidGrant("code spent".into()))
                .unwrap()
                .0,
            Class::InvalidGrant
        );
        assert!(classify(&LoginError::StateMismatch).is_none());
    }

    #[test]
    fn every_class_has_a_fix() {
        for c in [
            Class::EmptyGroups,
            Class::RedirectUriRejected,
            Class::InvalidGrant,
            Class::ClockSkew,
            Class::UnknownKey,
            Class::ClientConnectionCap,
        ] {
            assert!(c.index() < CLASSES);
            assert!(!c.fix().is_empty() && !c.name().is_empty());
        }
    }
}
