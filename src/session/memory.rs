//! The in-process session store: a moka cache whose per-entry expiry is the
//! earlier of the session's absolute end and its idle timeout (reset on every
//! read). Suits a single instance; sessions are lost on restart. Implements
//! [`SessionStore`] with no I/O, so every call completes immediately.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::{unix_now, BoxFuture, Revoke, Session, SessionId, SessionStore, StoreError};

/// Most sessions kept; beyond it the least recently used are evicted.
const MAX_SESSIONS: u64 = 1_000_000;

/// Sessions in process memory.
pub struct MemoryStore {
    cache: Cache<SessionId, Arc<Session>, rustc_hash::FxBuildHasher>,
}

struct SessionExpiry {
    idle: Option<Duration>,
}

// === impl SessionExpiry ===

impl SessionExpiry {
    fn ttl(&self, s: &Session) -> Duration {
        let remaining = Duration::from_secs(s.expires_at.saturating_sub(unix_now()));
        match self.idle {
            Some(idle) => remaining.min(idle),
            None => remaining,
        }
    }
}

impl Expiry<SessionId, Arc<Session>> for SessionExpiry {
    fn expire_after_create(&self, _: &SessionId, s: &Arc<Session>, _: Instant) -> Option<Duration> {
        Some(self.ttl(s))
    }

    fn expire_after_read(
        &self,
        _: &SessionId,
        s: &Arc<Session>,
        _: Instant,
        current: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        match self.idle {
            Some(_) => Some(self.ttl(s)),
            None => current,
        }
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        s: &Arc<Session>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(s))
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    /// A store whose sessions also end after `idle` without use.
    pub fn new(idle: Option<Duration>) -> Self {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(SessionExpiry { idle })
                // Ids are random and MAC-checked before lookup (see `SessionId`'s Hash).
                .build_with_hasher(rustc_hash::FxBuildHasher),
        }
    }
}

impl SessionStore for MemoryStore {
    fn lookup_cached(&self, id: &SessionId) -> Option<Arc<Session>> {
        let s = self.cache.get(id)?;
        s.is_live(crate::clock::unix_secs()).then_some(s)
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, StoreError>> {
        let found = self.lookup_cached(id);
        Box::pin(async move { Ok(found) })
    }

    fn save(&self, session: Arc<Session>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.cache.insert(session.id, session);
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.cache.invalidate(id);
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Session>>, StoreError>> {
        let now = unix_now();
        let found = self
            .cache
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.is_live(now) && user.is_none_or(|u| s.identity.user == u))
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn revoke<'a>(&'a self, what: Revoke<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        let ids: Vec<SessionId> = self
            .cache
            .iter()
            .filter(|(_, s)| s.matches(what))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.cache.invalidate(id);
        }
        let n = ids.len();
        Box::pin(async move { Ok(n) })
    }

    fn lock_refresh<'a>(
        &'a self,
        _: &'a SessionId,
        _: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // One process: the gateway's own single-flight is enough.
        Box::pin(async { Ok(true) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn session(user: &str, lifetime: u64) -> Arc<Session> {
        let identity = Identity {
            user: user.into(),
            email: String::new(),
            groups: vec![],
        };
        Arc::new(Session {
            id: SessionId::random(),
            headers: identity.headers(),
            identity,
            subject: user.into(),
            idp_session: None,
            id_token: None,
            access_token: None,
            refresh_token: None,
            created_at: unix_now(),
            expires_at: unix_now() + lifetime,
            refresh_at: 0,
        })
    }

    #[tokio::test]
    async fn save_lookup_remove_list() {
        let store = MemoryStore::new(None);
        let a = session("alice", 60);
        let b = session("bob", 60);
        store.save(a.clone()).await.unwrap();
        store.save(b.clone()).await.unwrap();
        assert!(store.lookup_cached(&a.id).is_some());
        assert!(store.lookup_cached(&SessionId::random()).is_none());
        store.cache.run_pending_tasks();
        assert_eq!(store.list(Some("alice")).await.unwrap().len(), 1);
        assert_eq!(store.list(None).await.unwrap().len(), 2);
        store.remove(&a.id).await.unwrap();
        assert!(store.lookup_cached(&a.id).is_none());
        assert_eq!(store.revoke(Revoke::User("bob")).await.unwrap(), 1);
        assert!(store.lookup_cached(&b.id).is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_not_returned() {
        let store = MemoryStore::new(None);
        let s = session("alice", 0);
        store.save(s.clone()).await.unwrap();
        assert!(store.lookup_cached(&s.id).is_none());
    }

    #[test]
    fn idle_timeout_caps_the_ttl() {
        let e = SessionExpiry {
            idle: Some(Duration::from_secs(5)),
        };
        assert_eq!(e.ttl(&session("a", 3600)), Duration::from_secs(5));
        let e = SessionExpiry { idle: None };
        assert!(e.ttl(&session("a", 3600)) > Duration::from_secs(3500));
    }
}
