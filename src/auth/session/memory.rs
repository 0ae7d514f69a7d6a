//! The in-process session store: suits a single instance; sessions are lost
//! on restart. Implements [`SessionStore`] with no I/O, so every call
//! completes immediately.
//!
//! A session ends at the earlier of its absolute end (`expires_at`) and,
//! with `session.idle_timeout`, its last use plus that timeout. Both are
//! checked on every lookup, so an ended session is never returned, however
//! long it stays in memory; ended sessions are dropped by a sweep that runs
//! with the next write once a minute has passed since the last one.
//!
//! The map is split into shards, each behind a read-write lock, and a
//! lookup takes one shard's read lock, so checks for different sessions
//! never wait for each other and a login (a write) holds up only its
//! shard. The last use is stamped in the entry with the coarse clock, and
//! only when that clock has moved, so one busy session checked from every
//! worker thread does not bounce that cache line on each request. A general
//! cache (moka) did all this and more — an admission policy, access-order
//! queues and timer wheels kept up on every read — at about 1 000
//! instructions and several percent of a forward-auth check's CPU; sessions
//! need none of it: they leave by their own expiry.
//!
//! Past [`MAX_SESSIONS`], a new session first sweeps the ended ones (at most
//! once a second), then, if the store is still full, evicts the least
//! recently used of [`EVICTION_SAMPLES`] sessions picked at random (as
//! Redis does for `maxmemory-policy allkeys-lru`): a login at capacity costs
//! the same whether the store holds a thousand sessions or a million. Each
//! shard keeps its ids in a dense list beside the map for that pick. Small
//! stores (up to [`EXACT_EVICTION_UP_TO`] sessions) evict the least recently
//! used of all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rustc_hash::FxBuildHasher;

use super::{BoxFuture, Revoke, Session, SessionId, SessionStore, StoreError, REFRESH_LOCK};
use crate::base::clock;

/// Most sessions kept by default; beyond it the least recently used go.
pub const MAX_SESSIONS: usize = 1_000_000;

/// Shards of the map (a power of two).
const SHARDS: usize = 32;

/// Ended sessions are swept at most this often (with a write).
const SWEEP_EVERY_MS: u64 = 60_000;

/// Past this many one-time token digests, expired ones are dropped first.
const SEEN_PRUNE_AT: usize = 4096;

/// Sessions compared, at random, to pick the one a full store evicts.
pub const EVICTION_SAMPLES: usize = 16;

/// Up to this many sessions, eviction compares them all.
pub const EXACT_EVICTION_UP_TO: usize = 256;

/// Sessions in process memory.
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    /// `session.idle_timeout` in milliseconds.
    idle_ms: Option<u64>,
    max: usize,
    len: AtomicUsize,
    /// When the last sweep ran ([`clock::mono_ms`]).
    swept_ms: AtomicU64,
    /// One-time token digests seen ([`SessionStore::first_use`]) → until when.
    seen: Mutex<HashMap<[u8; 32], u64>>,
    /// Refresh locks ([`SessionStore::lock_refresh`]): (session, generation)
    /// → until when ([`clock::mono_ms`]).
    refresh_locks: Mutex<HashMap<(SessionId, u64), u64>>,
    /// State of the generator that picks eviction samples.
    pick: AtomicU64,
}

/// One shard: the sessions by id, and the same ids in a dense list (in no
/// order) from which eviction picks at random.
#[derive(Default)]
struct Shard {
    map: HashMap<SessionId, Entry, FxBuildHasher>,
    ids: Vec<SessionId>,
}

struct Entry {
    session: Arc<Session>,
    /// Last use ([`clock::mono_ms`]).
    used_ms: AtomicU64,
    /// Where this id is in its shard's `ids`.
    slot: usize,
}

// === impl Shard ===

impl Shard {
    fn get(&self, id: &SessionId) -> Option<&Entry> {
        self.map.get(id)
    }

    /// Stores `session` under its id; true when the id was new.
    fn insert(&mut self, session: Arc<Session>, used_ms: u64) -> bool {
        let id = session.id;
        if let Some(e) = self.map.get_mut(&id) {
            e.session = session;
            e.used_ms = AtomicU64::new(used_ms);
            return false;
        }
        let slot = self.ids.len();
        self.ids.push(id);
        self.map.insert(
            id,
            Entry {
                session,
                used_ms: AtomicU64::new(used_ms),
                slot,
            },
        );
        true
    }

    /// Drops `id`; true when it was there.
    fn remove(&mut self, id: &SessionId) -> bool {
        let Some(e) = self.map.remove(id) else {
            return false;
        };
        self.ids.swap_remove(e.slot);
        // The last id moved into the freed slot.
        if let Some(moved) = self.ids.get(e.slot) {
            if let Some(m) = self.map.get_mut(moved) {
                m.slot = e.slot;
            }
        }
        true
    }

    /// Keeps the entries `keep` says yes to; returns how many went.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| keep(e));
        if self.map.len() != before {
            self.ids.clear();
            for (id, e) in self.map.iter_mut() {
                e.slot = self.ids.len();
                self.ids.push(*id);
            }
        }
        before - self.map.len()
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    /// A store whose sessions also end after `idle` without use.
    pub fn new(idle: Option<Duration>) -> Self {
        Self::with_capacity(idle, MAX_SESSIONS)
    }

    /// A store keeping at most `max` sessions.
    pub fn with_capacity(idle: Option<Duration>, max: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            idle_ms: idle.map(|d| d.as_millis() as u64),
            max: max.max(1),
            len: AtomicUsize::new(0),
            swept_ms: AtomicU64::new(clock::mono_ms()),
            seen: Mutex::default(),
            refresh_locks: Mutex::default(),
            pick: AtomicU64::new(clock::mono_ms()),
        }
    }

    /// How many sessions are held, ended ones not yet swept included.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &SessionId) -> &RwLock<Shard> {
        // Ids are uniformly random; the map's hash uses bytes 0..8.
        &self.shards[usize::from(id.0[8]) % SHARDS]
    }

    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a map half-updated
        // (every update is one insert or remove): keep serving.
        shard.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Still within its absolute end and its idle timeout.
    fn is_current(&self, e: &Entry, now_ms: u64, now_secs: u64) -> bool {
        e.session.is_live(now_secs)
            && self
                .idle_ms
                .is_none_or(|idle| now_ms.saturating_sub(e.used_ms.load(Ordering::Relaxed)) < idle)
    }

    /// Drops ended sessions from every shard.
    fn sweep(&self, now_ms: u64) {
        self.swept_ms.store(now_ms, Ordering::Relaxed);
        let now_secs = clock::unix_secs();
        for shard in self.shards.iter() {
            let gone = Self::write(shard).retain(|e| self.is_current(e, now_ms, now_secs));
            self.len.fetch_sub(gone, Ordering::Relaxed);
        }
    }

    /// Drops one session to make room: the least recently used of
    /// [`EVICTION_SAMPLES`] picked at random, or of all in a small store.
    fn evict_one(&self) {
        let oldest = if self.len() <= EXACT_EVICTION_UP_TO {
            self.shards
                .iter()
                .enumerate()
                .filter_map(|(i, shard)| {
                    let shard = Self::read(shard);
                    shard
                        .map
                        .iter()
                        .map(|(id, e)| (e.used_ms.load(Ordering::Relaxed), *id))
                        .min_by_key(|(used, _)| *used)
                        .map(|(used, id)| (used, i, id))
                })
                .min_by_key(|(used, _, _)| *used)
        } else {
            (0..EVICTION_SAMPLES)
                .filter_map(|_| {
                    let r = super::eviction_pick(&self.pick);
                    let i = (r as usize) % SHARDS;
                    let shard = Self::read(&self.shards[i]);
                    let n = shard.ids.len();
                    if n == 0 {
                        return None;
                    }
                    let id = shard.ids[((r >> 32) as usize) % n];
                    let used = shard.get(&id)?.used_ms.load(Ordering::Relaxed);
                    Some((used, i, id))
                })
                .min_by_key(|(used, _, _)| *used)
        };
        if let Some((_, i, id)) = oldest {
            if Self::write(&self.shards[i]).remove(&id) {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl SessionStore for MemoryStore {
    fn lookup_cached(&self, id: &SessionId) -> Option<Arc<Session>> {
        let shard = Self::read(self.shard(id));
        let e = shard.get(id)?;
        let now_ms = clock::mono_ms();
        if !self.is_current(e, now_ms, clock::unix_secs()) {
            return None;
        }
        // Stamped only when the coarse clock has moved: the same session
        // checked from every worker thread would otherwise bounce this line.
        if e.used_ms.load(Ordering::Relaxed) != now_ms {
            e.used_ms.store(now_ms, Ordering::Relaxed);
        }
        Some(e.session.clone())
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, StoreError>> {
        let found = self.lookup_cached(id);
        Box::pin(async move { Ok(found) })
    }

    fn save(&self, session: Arc<Session>) -> BoxFuture<'_, Result<(), StoreError>> {
        let now_ms = clock::mono_ms();
        let since_sweep = now_ms.saturating_sub(self.swept_ms.load(Ordering::Relaxed));
        let full = self.len() >= self.max;
        if since_sweep >= SWEEP_EVERY_MS || (full && since_sweep >= 1_000) {
            self.sweep(now_ms);
        }
        let shard = self.shard(&session.id);
        if self.len() >= self.max && Self::read(shard).get(&session.id).is_none() {
            self.evict_one();
        }
        if Self::write(shard).insert(session, now_ms) {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        if Self::write(self.shard(id)).remove(id) {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Session>>, StoreError>> {
        let (now_ms, now_secs) = (clock::mono_ms(), clock::unix_secs());
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            let shard = Self::read(shard);
            found.extend(
                shard
                    .map
                    .values()
                    .filter(|e| self.is_current(e, now_ms, now_secs))
                    .filter(|e| user.is_none_or(|u| e.session.identity.user == u))
                    .map(|e| e.session.clone()),
            );
        }
        Box::pin(async move { Ok(found) })
    }

    fn revoke<'a>(&'a self, what: Revoke<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        let (now_ms, now_secs) = (clock::mono_ms(), clock::unix_secs());
        let mut n = 0;
        for shard in self.shards.iter() {
            let gone = Self::write(shard).retain(|e| {
                let hit = e.session.matches(what);
                // Ended sessions matched are dropped too, but not counted.
                if hit && self.is_current(e, now_ms, now_secs) {
                    n += 1;
                }
                !hit
            });
            self.len.fetch_sub(gone, Ordering::Relaxed);
        }
        Box::pin(async move { Ok(n) })
    }

    fn replace<'a>(
        &'a self,
        current: &'a Arc<Session>,
        renewed: Arc<Session>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (now_ms, now_secs) = (clock::mono_ms(), clock::unix_secs());
        let mut shard = Self::write(self.shard(&current.id));
        // The stored entry is still the very session the refresh started
        // from: not removed, not revoked, not replaced by another refresh.
        let stored = match shard.map.get_mut(&current.id) {
            Some(e) if Arc::ptr_eq(&e.session, current) && self.is_current(e, now_ms, now_secs) => {
                e.session = renewed;
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(stored) })
    }

    fn lock_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now_ms = clock::mono_ms();
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, until| *until > now_ms);
        let taken = match locks.entry((*id, generation)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now_ms + REFRESH_LOCK.as_millis() as u64);
                true
            }
        };
        Box::pin(async move { Ok(taken) })
    }

    fn extend_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now_ms = clock::mono_ms();
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|p| p.into_inner());
        let held = match locks.get_mut(&(*id, generation)) {
            Some(until) if *until > now_ms => {
                *until = now_ms + REFRESH_LOCK.as_millis() as u64;
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(held) })
    }

    fn first_use<'a>(
        &'a self,
        digest: &'a [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now_ms = clock::mono_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_PRUNE_AT {
            seen.retain(|_, until| *until > now_ms);
        }
        let first = match seen.get(digest) {
            Some(until) if *until > now_ms => false,
            _ => {
                seen.insert(*digest, now_ms.saturating_add(ttl.as_millis() as u64));
                true
            }
        };
        Box::pin(async move { Ok(first) })
    }

    fn forget_use<'a>(&'a self, digest: &'a [u8; 32]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::unix_now;
    use crate::base::identity::Identity;

    fn session(user: &str, lifetime: u64) -> Arc<Session> {
        let identity = Identity {
            user: user.into(),
            email: String::new(),
            groups: vec![],
            ..Identity::default()
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
            // A lifetime of 0: ended a second ago, so that the coarse
            // clock the store reads (a few milliseconds behind) agrees.
            expires_at: (unix_now() + lifetime).saturating_sub(u64::from(lifetime == 0)),
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
        store.save(a.clone()).await.unwrap();
        assert_eq!(store.len(), 2, "saving again replaces");
        assert!(store.lookup_cached(&a.id).is_some());
        assert!(store.lookup_cached(&SessionId::random()).is_none());
        assert_eq!(store.list(Some("alice")).await.unwrap().len(), 1);
        assert_eq!(store.list(None).await.unwrap().len(), 2);
        store.remove(&a.id).await.unwrap();
        assert!(store.lookup_cached(&a.id).is_none());
        assert_eq!(store.revoke(Revoke::User("bob")).await.unwrap(), 1);
        assert!(store.lookup_cached(&b.id).is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn one_time_ids_are_accepted_once_until_forgotten_or_expired() {
        let store = MemoryStore::new(None);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let long = Duration::from_secs(600);
        assert!(store.first_use(&a, long).await.unwrap());
        assert!(!store.first_use(&a, long).await.unwrap(), "a replay");
        assert!(store.first_use(&b, long).await.unwrap(), "another id");
        store.forget_use(&a).await.unwrap();
        assert!(
            store.first_use(&a, long).await.unwrap(),
            "forgotten: usable again"
        );
        let c = [3u8; 32];
        assert!(store.first_use(&c, Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            store.first_use(&c, long).await.unwrap(),
            "remembered only for its ttl"
        );
    }

    #[tokio::test]
    async fn a_refresh_replaces_only_the_session_it_started_from() {
        let store = MemoryStore::new(None);
        let s = session("alice", 60);
        store.save(s.clone()).await.unwrap();
        let current = store.load(&s.id).await.unwrap().unwrap();
        let renewed = |from: &Arc<Session>| {
            let mut r = Session {
                id: from.id,
                identity: from.identity.clone(),
                headers: from.headers.clone(),
                subject: from.subject.clone(),
                idp_session: None,
                id_token: None,
                access_token: None,
                refresh_token: None,
                created_at: from.created_at,
                expires_at: from.expires_at,
                refresh_at: from.refresh_at,
            };
            r.refresh_at += 1;
            Arc::new(r)
        };
        let first = renewed(&current);
        assert!(store.replace(&current, first.clone()).await.unwrap());
        assert_eq!(store.lookup_cached(&s.id).unwrap().refresh_at, 1);
        assert!(
            !store.replace(&current, renewed(&current)).await.unwrap(),
            "changed since: another refresh won"
        );
        store.remove(&s.id).await.unwrap();
        assert!(
            !store.replace(&first, renewed(&first)).await.unwrap(),
            "signed out meanwhile: stays signed out"
        );
        assert!(store.lookup_cached(&s.id).is_none());
    }

    #[tokio::test]
    async fn one_refresh_lock_per_generation_extended_while_held() {
        let store = MemoryStore::new(None);
        let id = SessionId::random();
        assert!(store.lock_refresh(&id, 7).await.unwrap());
        assert!(!store.lock_refresh(&id, 7).await.unwrap(), "held");
        assert!(store.extend_refresh(&id, 7).await.unwrap());
        assert!(!store.lock_refresh(&id, 7).await.unwrap(), "still held");
        assert!(!store.extend_refresh(&id, 8).await.unwrap(), "never taken");
        assert!(
            store.lock_refresh(&id, 8).await.unwrap(),
            "a new generation"
        );
    }

    #[tokio::test]
    async fn expired_sessions_are_not_returned_and_are_swept() {
        let store = MemoryStore::new(None);
        let s = session("alice", 0);
        store.save(s.clone()).await.unwrap();
        assert!(store.lookup_cached(&s.id).is_none());
        assert!(store.load(&s.id).await.unwrap().is_none());
        assert!(store.list(None).await.unwrap().is_empty());
        assert_eq!(store.revoke(Revoke::All).await.unwrap(), 0, "not counted");
        store.save(s.clone()).await.unwrap();
        store.sweep(clock::mono_ms());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn idle_sessions_end_and_use_keeps_them() {
        let store = MemoryStore::new(Some(Duration::from_secs(1)));
        let (used, idle) = (session("a", 3600), session("b", 3600));
        store.save(used.clone()).await.unwrap();
        store.save(idle.clone()).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(store.lookup_cached(&used.id).is_some(), "in use: kept");
        }
        assert!(store.lookup_cached(&idle.id).is_none(), "idle 1.2 s: ended");
        assert_eq!(store.list(None).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(store.lookup_cached(&used.id).is_none());
    }

    #[tokio::test]
    async fn past_capacity_the_least_recently_used_goes() {
        let store = MemoryStore::with_capacity(None, 3);
        let all: Vec<_> = (0..3).map(|i| session(&format!("u{i}"), 3600)).collect();
        for s in &all {
            store.save(s.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        assert!(store.lookup_cached(&all[0].id).is_some());
        let fresh = session("fresh", 3600);
        store.save(fresh.clone()).await.unwrap();
        assert_eq!(store.len(), 3);
        assert!(store.lookup_cached(&fresh.id).is_some());
        assert!(store.lookup_cached(&all[0].id).is_some(), "used last: kept");
        assert!(
            store.lookup_cached(&all[1].id).is_none(),
            "least recently used: evicted"
        );
        assert!(store.lookup_cached(&all[2].id).is_some());
    }

    /// Every id is in its shard's list exactly once, at the slot its entry names.
    fn assert_lists_match(store: &MemoryStore) {
        let mut total = 0;
        for shard in store.shards.iter() {
            let shard = MemoryStore::read(shard);
            assert_eq!(shard.ids.len(), shard.map.len());
            for (i, id) in shard.ids.iter().enumerate() {
                assert_eq!(shard.map[id].slot, i);
            }
            total += shard.map.len();
        }
        assert_eq!(total, store.len());
    }

    #[tokio::test]
    async fn a_large_full_store_evicts_from_the_least_recently_used() {
        let store = MemoryStore::with_capacity(None, 1000);
        let all: Vec<_> = (0..1000).map(|i| session(&format!("u{i}"), 3600)).collect();
        for s in &all {
            store.save(s.clone()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A tenth of them used since. Each eviction compares 16 sessions at
        // random and takes a used one only if all 16 were used or new: with
        // at least 800 of the 1 000 unused throughout, at most 0.2^16.
        for s in all.iter().step_by(10) {
            assert!(store.lookup_cached(&s.id).is_some());
        }
        for i in 0..100 {
            store.save(session(&format!("new{i}"), 3600)).await.unwrap();
        }
        assert_eq!(store.len(), 1000);
        assert_lists_match(&store);
        for s in all.iter().step_by(10) {
            assert!(store.lookup_cached(&s.id).is_some(), "used: kept");
        }
        let unused_left = all
            .iter()
            .enumerate()
            .filter(|(i, s)| i % 10 != 0 && store.lookup_cached(&s.id).is_some())
            .count();
        assert_eq!(unused_left, 800, "the 100 evicted were all unused ones");
    }

    #[tokio::test]
    async fn the_eviction_lists_follow_every_change() {
        let store = MemoryStore::with_capacity(None, 300);
        let all: Vec<_> = (0..400)
            .map(|i| session(&format!("u{}", i % 37), if i % 5 == 0 { 0 } else { 3600 }))
            .collect();
        for (i, s) in all.iter().enumerate() {
            store.save(s.clone()).await.unwrap();
            if i % 3 == 0 {
                store.remove(&all[i / 2].id).await.unwrap();
            }
            if i % 7 == 0 {
                // The same id saved again (a refresh or a re-login) keeps one slot.
                store.save(s.clone()).await.unwrap();
            }
            if i % 50 == 0 {
                assert_lists_match(&store);
            }
        }
        assert_lists_match(&store);
        store.revoke(Revoke::User("u3")).await.unwrap();
        assert_lists_match(&store);
        store.sweep(clock::mono_ms());
        assert_lists_match(&store);
        assert!(store.len() <= 300);
    }
}
