//! The Redis store's local cache: sessions verified against Redis, kept in
//! process so a forward-auth check is answered without I/O.
//!
//! Built like the memory store's map, for the same reason (see
//! `session::memory`): a general cache (moka, which this replaced) kept
//! access-order queues and timer wheels up to date on every read, about
//! 1 000 instructions per check that a session cache does not need, since
//! entries leave by their own expiry. The map is split into shards, each
//! behind a read-write lock; a hit takes one shard's read lock, and the use
//! stamp is written with the coarse clock, only when it has moved.
//!
//! Whether an entry may still be used is decided by its reader
//! ([`super::RedisStore`]: the session's end, the trust bounds, the idle
//! timeout); the cache only drops what the same test says has ended, in a
//! sweep at most once a minute, and past its capacity evicts the least
//! recently used of a few entries of one shard picked at random.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxBuildHasher;

use crate::auth::session::{Session, SessionId};

/// Shards of the map (a power of two).
const SHARDS: usize = 32;

/// Ended entries are swept at most this often.
pub const SWEEP_EVERY_MS: u64 = 60_000;

/// Entries of one shard compared to pick the one a full cache evicts.
const EVICTION_SAMPLES: usize = 16;

/// A session as verified against Redis at `verified_ms` ([`crate::base::clock::mono_ms`]).
pub struct Cached {
    pub session: Arc<Session>,
    pub verified_ms: u64,
    /// Last answered from the cache.
    pub used_ms: AtomicU64,
    /// Last use whose Redis expiry was slid (the touch loop, or a read).
    pub touched_ms: AtomicU64,
}

/// Sessions by id, sharded.
pub struct LocalCache {
    shards: Box<[RwLock<HashMap<SessionId, Cached, FxBuildHasher>>]>,
    max: usize,
    len: AtomicUsize,
    /// When the last sweep ran.
    swept_ms: AtomicU64,
    /// State of the generator that picks the shard a full cache evicts from.
    pick: AtomicU64,
}

type Shard = HashMap<SessionId, Cached, FxBuildHasher>;

// === impl Cached ===

impl Cached {
    /// Just read from Redis (or written there) at `now_ms`.
    pub fn verified(session: Arc<Session>, now_ms: u64) -> Cached {
        Cached {
            session,
            verified_ms: now_ms,
            used_ms: AtomicU64::new(now_ms),
            touched_ms: AtomicU64::new(now_ms),
        }
    }
}

// === impl LocalCache ===

impl LocalCache {
    /// An empty cache of at most `max` sessions.
    pub fn new(max: usize, now_ms: u64) -> LocalCache {
        LocalCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            max: max.max(1),
            len: AtomicUsize::new(0),
            swept_ms: AtomicU64::new(now_ms),
            pick: AtomicU64::new(now_ms),
        }
    }

    /// Sessions held, ended ones not yet swept included.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn shard(&self, id: &SessionId) -> &RwLock<Shard> {
        // Ids are uniformly random; the map's hash uses bytes 0..8.
        &self.shards[usize::from(id.0[8]) % SHARDS]
    }

    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        // Every update is one insert or remove: a panic elsewhere while
        // holding the lock cannot leave the map half-updated.
        shard.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` of the entry for `id`, under its shard's read lock.
    #[inline]
    pub fn with<R>(&self, id: &SessionId, f: impl FnOnce(&Cached) -> Option<R>) -> Option<R> {
        f(Self::read(self.shard(id)).get(id)?)
    }

    /// Stores `entry` for its session's id if `admit()`, asked under the
    /// shard's write lock, still says yes: a removal that `admit` would
    /// notice (an invalidation epoch) either came first and is seen, or
    /// waits for the lock and removes this entry after. Sweeps the entries
    /// `current` says have ended once [`SWEEP_EVERY_MS`] has passed (or
    /// every second while full), and evicts one first when still full.
    pub fn insert(
        &self,
        entry: Cached,
        now_ms: u64,
        admit: impl FnOnce() -> bool,
        current: impl Fn(&Cached) -> bool,
    ) {
        let since_sweep = now_ms.saturating_sub(self.swept_ms.load(Ordering::Relaxed));
        let full = self.len() >= self.max;
        if since_sweep >= SWEEP_EVERY_MS || (full && since_sweep >= 1_000) {
            self.sweep(now_ms, &current);
        }
        let id = entry.session.id;
        let shard = self.shard(&id);
        if self.len() >= self.max && !Self::read(shard).contains_key(&id) {
            self.evict_one();
        }
        let mut map = Self::write(shard);
        if admit() && map.insert(id, entry).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops `id`.
    pub fn remove(&self, id: &SessionId) {
        if Self::write(self.shard(id)).remove(id).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut map = Self::write(shard);
            self.len.fetch_sub(map.len(), Ordering::Relaxed);
            map.clear();
        }
    }

    /// Drops the entries `current` says have ended.
    pub fn sweep(&self, now_ms: u64, current: impl Fn(&Cached) -> bool) {
        self.swept_ms.store(now_ms, Ordering::Relaxed);
        for shard in self.shards.iter() {
            let mut map = Self::write(shard);
            let before = map.len();
            map.retain(|_, c| current(c));
            self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
        }
    }

    /// True when a sweep is due (for an owner that sweeps without writes).
    pub fn sweep_due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.swept_ms.load(Ordering::Relaxed)) >= SWEEP_EVERY_MS
    }

    /// `f` of every entry, shard by shard under its read lock.
    pub fn for_each(&self, mut f: impl FnMut(&SessionId, &Cached)) {
        for shard in self.shards.iter() {
            for (id, c) in Self::read(shard).iter() {
                f(id, c);
            }
        }
    }

    /// Drops one entry to make room: the least recently used of up to
    /// [`EVICTION_SAMPLES`] of the first non-empty shard from one picked at
    /// random (ids are random, so a shard's first entries are as good a
    /// sample as any: a miss only costs a read from Redis).
    fn evict_one(&self) {
        let start = crate::auth::session::eviction_pick(&self.pick) as usize;
        for i in 0..SHARDS {
            let shard = &self.shards[(start + i) % SHARDS];
            let oldest = Self::read(shard)
                .iter()
                .take(EVICTION_SAMPLES)
                .min_by_key(|(_, c)| c.used_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                if Self::write(shard).remove(&id).is_some() {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::unix_now;
    use crate::base::identity::Identity;

    fn session(user: &str) -> Arc<Session> {
        let identity = Identity {
            user: user.into(),
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
            expires_at: unix_now() + 3600,
            refresh_at: 0,
        })
    }

    fn hit(cache: &LocalCache, s: &Arc<Session>) -> bool {
        cache.with(&s.id, |c| Some(c.session.clone())).is_some()
    }

    #[test]
    fn insert_lookup_remove_clear() {
        let cache = LocalCache::new(100, 0);
        let (a, b) = (session("a"), session("b"));
        cache.insert(Cached::verified(a.clone(), 1), 1, || true, |_| true);
        cache.insert(Cached::verified(b.clone(), 1), 1, || true, |_| true);
        cache.insert(Cached::verified(a.clone(), 2), 2, || true, |_| true);
        assert_eq!(cache.len(), 2, "inserting again replaces");
        assert_eq!(cache.with(&a.id, |c| Some(c.verified_ms)), Some(2));
        assert!(!hit(&cache, &session("c")));
        cache.remove(&a.id);
        assert!(!hit(&cache, &a) && hit(&cache, &b));
        cache.clear();
        assert!(!hit(&cache, &b));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_entry_not_admitted_is_not_stored() {
        let cache = LocalCache::new(100, 0);
        let a = session("a");
        cache.insert(Cached::verified(a.clone(), 1), 1, || false, |_| true);
        assert!(!hit(&cache, &a));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn sweeps_drop_what_has_ended_once_a_minute() {
        let cache = LocalCache::new(100, 0);
        let (old, new) = (session("old"), session("new"));
        let recent = |c: &Cached| c.verified_ms >= 10;
        cache.insert(Cached::verified(old.clone(), 5), 5, || true, recent);
        cache.insert(Cached::verified(new.clone(), 10), 10, || true, recent);
        assert!(hit(&cache, &old), "no sweep within the minute");
        assert!(!cache.sweep_due(SWEEP_EVERY_MS - 1));
        assert!(cache.sweep_due(SWEEP_EVERY_MS));
        let later = session("later");
        cache.insert(
            Cached::verified(later.clone(), SWEEP_EVERY_MS),
            SWEEP_EVERY_MS,
            || true,
            recent,
        );
        assert!(!hit(&cache, &old) && hit(&cache, &new) && hit(&cache, &later));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_of_a_sample() {
        let cache = LocalCache::new(64, 0);
        // Every entry present, with its last use.
        let mut present: Vec<(Arc<Session>, u64)> = Vec::new();
        for i in 0..64 {
            let s = session(&format!("u{i}"));
            cache.insert(Cached::verified(s.clone(), 1), 1, || true, |_| true);
            // Every entry a different last use.
            let used = 10 + i as u64;
            cache.with(&s.id, |c| {
                c.used_ms.store(used, Ordering::Relaxed);
                Some(())
            });
            present.push((s, used));
        }
        let shard_of = |id: &SessionId| usize::from(id.0[8]) % SHARDS;
        for i in 0..10 {
            let new = session(&format!("new{i}"));
            cache.insert(Cached::verified(new.clone(), 100), 100, || true, |_| true);
            assert_eq!(cache.len(), 64, "stays at its capacity");
            let evicted: Vec<usize> = (0..present.len())
                .filter(|&k| !hit(&cache, &present[k].0))
                .collect();
            assert_eq!(evicted.len(), 1, "one entry evicted per insert");
            let (gone, used) = present.remove(evicted[0]);
            // It was the least recently used of its shard (every shard
            // holds fewer entries than a sample); a shard holding only
            // new entries gives up one of those.
            for (s, u) in &present {
                if shard_of(&s.id) == shard_of(&gone.id) {
                    assert!(
                        *u >= used,
                        "evicted {} (used {used}) while {} (used {u}) stayed",
                        gone.identity.user,
                        s.identity.user
                    );
                }
            }
            assert!(hit(&cache, &new), "the new entry is kept");
            present.push((new, 100));
        }
        let mut counted = 0;
        cache.for_each(|_, _| counted += 1);
        assert_eq!(counted, 64);
    }
}
