//! Sessions: what a signed-in browser is, where it is kept, and the cookie
//! that points at it.
//!
//! The cookie holds only a random 256-bit session id, signed with HMAC-SHA256
//! (the `cookie` crate's signed jar) under the first configured secret and
//! verified under any of them, so secrets can be rotated. The session data
//! lives in a [`SessionStore`]: [`memory::MemoryStore`] (moka, one instance)
//! today, Redis next. A cookie that fails to parse or verify, or names an
//! unknown or expired session, is simply "no session" — never an error page.
//!
//! Called by `pipeline` (hot path: [`SessionKeys::unseal`] then
//! [`SessionStore::lookup_cached`]) and by `oidc` (creating and ending sessions).

pub mod cookie;
pub mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::identity::{Identity, IdentityHeaders};
use crate::secret::Secret;

pub use self::cookie::SessionKeys;

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
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store refused or timed out; the request fails closed.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Where sessions live. Implementations: [`memory::MemoryStore`].
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
    /// Whether the store can be reached (for `/readyz`).
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
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
