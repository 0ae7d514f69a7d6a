//! Sessions: what a signed-in browser is, where it is kept, and the cookie
//! that points at it.
//!
//! The cookie holds only a random 256-bit session id, signed with HMAC-SHA256
//! (the `cookie` crate's signed jar) under the first configured secret and
//! verified under any of them, so secrets can be rotated. The session data
//! lives in a [`SessionStore`]: [`memory::MemoryStore`] (in process, one instance)
//! or [`redis::RedisStore`] (shared by every instance, with a local cache). A cookie that fails to parse or verify, or names an
//! unknown or expired session, is simply "no session" — never an error page.
//!
//! Called by `pipeline` (hot path: [`SessionKeys::unseal`] then
//! [`SessionStore::lookup_cached`]) and by `oidc` (creating and ending sessions).

pub mod cookie;
pub mod memory;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::base::identity::{Identity, IdentityHeaders};
use crate::base::secret::Secret;

pub use self::cookie::SessionKeys;

/// How long a refresh lock lasts unless extended: a running refresh
/// extends it every third of this (see `refresh`), so it is held for as
/// long as the refresh takes, however long `oidc.http_timeout` is; also the
/// pause between attempts after a failure.
pub const REFRESH_LOCK: std::time::Duration = std::time::Duration::from_secs(15);

/// When to renew the claims of a session whose ID token is `id_token`:
/// a quarter of the token's lifetime (between 1 s and 60 s) before its
/// `exp`; 0 (never) without a refresh token or with `session.refresh` off.
pub fn refresh_at(id_token: &str, enabled: bool, has_refresh_token: bool) -> u64 {
    if !enabled || !has_refresh_token {
        return 0;
    }
    let Some(claims) = crate::base::jwt::jwt_payload(id_token) else {
        return 0;
    };
    let (Some(exp), iat) = (
        claims.get("exp").and_then(serde_json::Value::as_u64),
        claims.get("iat").and_then(serde_json::Value::as_u64),
    ) else {
        return 0;
    };
    let lifetime = exp.saturating_sub(iat.unwrap_or(exp));
    exp.saturating_sub((lifetime / 4).clamp(1, 60))
}

/// A boxed future, used only off the hot path (store misses, writes).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A random 256-bit session id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub [u8; 32]);

/// Hashes the first 64 bits only: ids are uniformly random and every id
/// looked up has passed the cookie MAC first, so no client can pick ids that
/// collide, and hashing 8 bytes instead of 32 keeps lookups cheap.
impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// One signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// The id the cookie carries.
    pub id: SessionId,
    /// Who it is.
    pub identity: Identity,
    /// Identity header values, rendered once.
    pub headers: IdentityHeaders,
    /// The IdP's `sub`.
    pub subject: String,
    /// The IdP's session id (`sid` claim), for back-channel logout.
    pub idp_session: Option<String>,
    /// Raw ID token (for RP-initiated logout and `pass_authorization`).
    pub id_token: Option<Secret<String>>,
    /// Access token (for `pass_access_token`).
    pub access_token: Option<Secret<String>>,
    /// Refresh token, when the IdP issued one.
    pub refresh_token: Option<Secret<String>>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the absolute end of the session.
    pub expires_at: u64,
    /// Unix seconds after which the claims are renewed with the refresh
    /// token (a little before the ID token expires); 0 = never (no refresh
    /// token, or `session.refresh = false`).
    pub refresh_at: u64,
}

/// Which sessions to end at once (operators, back-channel logout).
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    /// Every session of one user (the `user_claim` value).
    User(&'a str),
    /// Every session with this IdP `sub`.
    Subject(&'a str),
    /// Every session started in this IdP session (`sid`).
    IdpSession(&'a str),
    /// Every session.
    All,
}

/// Why the store could not answer. Every variant fails closed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backing store is unreachable or timed out.
    #[error("session store unreachable: {}", crate::base::error::error_chain(.0))]
    Unavailable(#[source] ::redis::RedisError),
    /// The store refused our credentials (Redis ACL user or password).
    #[error("session store refused the credentials (check the user and password in session.redis_url): {}", crate::base::error::error_chain(.0))]
    AuthFailed(#[source] ::redis::RedisError),
    /// The TLS connection to the store failed (certificate, hostname or protocol).
    #[error("session store TLS failure (check the server certificate, session.redis_ca and that the port speaks TLS): {}", crate::base::error::error_chain(.0))]
    Tls(#[source] ::redis::RedisError),
    /// The store settings are unusable (no URL, a malformed sentinel URL).
    #[error("session store settings: {0}")]
    Config(String),
    /// A Redis URL in the store settings is rejected by the Redis client.
    #[error("session store settings: {}", crate::base::error::error_chain(.0))]
    BadUrl(#[source] ::redis::RedisError),
}

/// Where sessions live. Implementations: [`memory::MemoryStore`], [`redis::RedisStore`].
///
/// The hot path calls only [`SessionStore::lookup_cached`], which must not do
/// I/O or allocate beyond cloning an `Arc`. The other methods may reach a
/// network store and are boxed futures.
pub trait SessionStore: Send + Sync + 'static {
    /// A session known locally and still valid, without I/O. Refreshes the idle timer.
    fn lookup_cached(&self, id: &SessionId) -> Option<Arc<Session>>;
    /// The session, asking the backing store when it is not cached.
    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, StoreError>>;
    /// Stores a new or updated session.
    fn save(&self, session: Arc<Session>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Ends a session everywhere.
    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every live session, optionally of one user.
    fn list<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Session>>, StoreError>>;
    /// Ends the chosen sessions everywhere; how many there were.
    fn revoke<'a>(&'a self, what: Revoke<'a>) -> BoxFuture<'a, Result<usize, StoreError>>;
    /// Stores `renewed` (a refreshed copy of `current`, same id) only if
    /// the stored session is still exactly `current`: true when stored,
    /// false when it ended (sign-out, revocation, back-channel logout) or
    /// changed since `current` was loaded, so a refresh never brings back
    /// a session that was ended during its IdP round trip.
    fn replace<'a>(
        &'a self,
        current: &'a Arc<Session>,
        renewed: Arc<Session>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Claims the right to refresh this session's claims generation
    /// (`refresh_at`) for [`REFRESH_LOCK`]: true for exactly one caller
    /// across every instance sharing the store.
    fn lock_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Holds a lock taken with [`SessionStore::lock_refresh`] for another
    /// [`REFRESH_LOCK`] from now, while its refresh is still running: false
    /// when the lock has already lapsed.
    fn extend_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Records a one-time token id (a back-channel logout token's `jti`, as
    /// a digest) for `ttl`: true the first time it is seen across every
    /// instance sharing the store, false for a replay within `ttl`.
    fn first_use<'a>(
        &'a self,
        digest: &'a [u8; 32],
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Forgets a one-time token id recorded by [`SessionStore::first_use`]
    /// (its use failed and may be retried).
    fn forget_use<'a>(&'a self, digest: &'a [u8; 32]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Whether the store can be reached (for `/readyz`). Never opens a
    /// connection per call: a network store reuses its connection and its
    /// recent answer, so a flood of readiness checks is no flood at the store.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

// === impl SessionId ===

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        SessionId(b)
    }

    /// A short, non-reversible tag for logs (first 8 hex chars of SHA-256).
    pub fn log_tag(&self) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.0);
        d[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.log_tag())
    }
}

// === impl Session ===

impl Session {
    /// True while `now` (unix seconds) is before the absolute expiry.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// What operators see of a session (`sessions list`, `/admin/sessions`):
    /// never the id or any token, only a log tag.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.identity.user,
            "email": self.identity.email,
            "groups": self.identity.groups,
            "subject": self.subject,
            "session": self.id.log_tag(),
            "idp_sid": self.idp_session,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        })
    }

    /// True when `self` is one of the sessions `what` names.
    pub fn matches(&self, what: Revoke<'_>) -> bool {
        match what {
            Revoke::User(u) => self.identity.user == u,
            Revoke::Subject(s) => self.subject == s,
            Revoke::IdpSession(s) => self.idp_session.as_deref() == Some(s),
            Revoke::All => true,
        }
    }
}

/// The next pseudo-random number (splitmix64) from `state`: which sessions
/// a full store or cache compares for eviction needs no unpredictability,
/// only spread. Shared by the memory store and the Redis store's cache.
pub(crate) fn eviction_pick(state: &std::sync::atomic::AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
