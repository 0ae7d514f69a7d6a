//! The shared session store: every instance reads and writes the same Redis
//! (standalone, Sentinel or Cluster, see [`conn`]), so a login started on
//! one instance finishes on another, a sign-out anywhere ends the session
//! everywhere, and sessions survive restarts.
//!
//! Layout (all keys under `portcullis:`):
//! - `s:<hex id>`: the session ([`codec`]: version byte + postcard), expiring
//!   with the session (TTL = remaining lifetime, or the idle timeout, which
//!   every use slides).
//! - `u:<user>`, `sub:<sub>`, `sid:<IdP sid>`: sets of session ids, so an
//!   operator (by user) or the IdP's back-channel logout (by `sid` or `sub`)
//!   finds sessions without scanning; `users`: the set of users with
//!   sessions (for `revoke --all`). Members whose session is gone, or no
//!   longer has that user (a refresh renewed the user claim), are pruned
//!   when listed and left alone by revocations.
//! - `lock:<hex id>:<refresh_at>`: held by the one instance refreshing that
//!   generation of the session's tokens, for [`super::REFRESH_LOCK`] and
//!   extended while its refresh runs. The refreshed session is written only
//!   if the stored value is still the one the refresh started from (a
//!   compare-and-set script), so an ending that lands meanwhile stays.
//! - channel `portcullis:invalidate`: `s:<hex id>` or `*` whenever a session
//!   ends or changes.
//!
//! Hot path: a local cache of recently verified sessions (`cache`)
//! answers [`SessionStore::lookup_cached`] without I/O, at the cost of the
//! memory store's lookup. A subscriber on the channel
//! drops entries the moment another instance ends them (well within a
//! second). While the subscription is down, a cached entry is trusted for at
//! most [`STALE_TRUST`] after it was last read from Redis, then re-read;
//! after a resubscription the whole cache is dropped, since messages may
//! have been missed. Redis being unreachable never grants: sessions not in
//! the cache (or older than the bound) fail with [`StoreError`], which the
//! callers answer with 503. The outage is logged once when it starts and
//! once when it ends.

mod cache;
pub mod codec;
pub mod conn;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::FromRedisValue;

use self::cache::{Cached, LocalCache};
use self::conn::{classify, timed, Backend};
use super::{BoxFuture, Revoke, Session, SessionId, SessionStore, StoreError};
use crate::base::clock::{unix_now, unix_secs};
use crate::config::SessionConfig;

/// Longest a cached session is trusted without re-reading it from Redis while
/// the invalidation subscription is down.
pub const STALE_TRUST: Duration = Duration::from_secs(30);
/// Longest a cached session is trusted at all, even with the subscription up.
const MAX_TRUST: Duration = Duration::from_secs(300);
/// Most sessions cached locally.
const MAX_CACHED: usize = 1_000_000;
/// The subscription is checked with a PING this often.
const SUBSCRIBER_PING: Duration = Duration::from_secs(2);
/// Sets `KEYS[1]` to `ARGV[2]` for `ARGV[3]` ms only if it still holds
/// `ARGV[1]` (a refreshed session replacing the copy it was made from); 1
/// when set, 0 when the session ended or changed meanwhile. One script, so
/// no sign-out or revocation can land between the check and the write.
const REPLACE_SCRIPT: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";
/// How long one readiness answer is reused (unless an outage starts or
/// ends meanwhile): however often `/readyz` is asked, Redis sees at most one
/// `PING` per period, on the connection the store already keeps.
const READY_REUSE_MS: u64 = 1000;
/// Key prefix and channel.
const PREFIX: &str = "portcullis:";
const CHANNEL: &str = "portcullis:invalidate";

/// Sessions in Redis, with a local cache.
pub struct RedisStore {
    backend: Backend,
    idle: Option<Duration>,
    /// With an idle timeout: a cached session is answered locally only if
    /// its Redis expiry was last slid less than this long ago (ms), so the
    /// key outlives the next touch; otherwise it is read (and slid) again.
    touch_trust_ms: u64,
    cache: Option<LocalCache>,
    /// True while the invalidation subscription is live.
    subscribed: AtomicBool,
    /// True between the first failure of an outage and the next success.
    down: AtomicBool,
    /// Bumped by every invalidation; a load only caches what it read if no
    /// invalidation arrived meanwhile.
    epoch: AtomicU64,
    /// Bumped whenever an outage starts or ends (`down` flips).
    flips: AtomicU64,
    /// The last readiness answer; its lock makes concurrent checks share one.
    ready: tokio::sync::Mutex<Option<Readiness>>,
}

/// One readiness answer of [`SessionStore::ping`].
struct Readiness {
    /// When it was found ([`now_ms`]).
    at_ms: u64,
    /// `flips` when it was found.
    flips: u64,
    result: Result<(), StoreError>,
}

// === impl RedisStore ===

impl RedisStore {
    /// A store for the configured Redis; connects lazily. Call
    /// [`RedisStore::spawn_background`] in a long-running process.
    pub fn new(cfg: &SessionConfig) -> Result<Arc<RedisStore>, StoreError> {
        let backend = Backend::new(&cfg.redis_urls, cfg.redis_ca.as_ref())?;
        let cache = cfg
            .local_cache
            .then(|| LocalCache::new(MAX_CACHED, now_ms()));
        Ok(Arc::new(RedisStore {
            backend,
            idle: cfg.idle_timeout,
            touch_trust_ms: cfg.idle_timeout.map_or(u64::MAX, |idle| {
                millis(idle.saturating_sub(touch_every(idle)))
            }),
            cache,
            subscribed: AtomicBool::new(false),
            down: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            flips: AtomicU64::new(0),
            ready: tokio::sync::Mutex::new(None),
        }))
    }

    /// Starts the invalidation subscriber and, with an idle timeout, the task
    /// that slides the Redis TTL of sessions used from the local cache. Both
    /// stop when the store is dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        if self.cache.is_none() {
            return;
        }
        tokio::spawn(subscribe_loop(Arc::downgrade(self)));
        if let Some(idle) = self.idle {
            tokio::spawn(touch_loop(Arc::downgrade(self), touch_every(idle)));
        }
    }

    /// True while cross-instance invalidation is live.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Number of sessions in the local cache (approximate).
    pub fn cached_len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.len() as u64)
    }

    /// Whether a cached entry may still be kept: its session has not ended,
    /// it was verified less than [`MAX_TRUST`] ago and, with an idle
    /// timeout, used less than that long ago. (Whether it may be answered
    /// is [`SessionStore::lookup_cached`]'s stricter test.)
    fn keeps(&self, c: &Cached, now_ms: u64, now_secs: u64) -> bool {
        c.session.is_live(now_secs)
            && now_ms.saturating_sub(c.verified_ms) < millis(MAX_TRUST)
            && self.idle.is_none_or(|idle| {
                now_ms.saturating_sub(c.used_ms.load(Ordering::Relaxed)) < millis(idle)
            })
    }

    /// Drops the cached entries that have ended, once a minute (with the
    /// subscriber's checks, for a cache that sees no new sessions).
    fn sweep_if_due(&self) {
        let Some(cache) = &self.cache else { return };
        let now = now_ms();
        if cache.sweep_due(now) {
            let secs = unix_secs();
            cache.sweep(now, |c| self.keeps(c, now, secs));
        }
    }

    fn key(id: &SessionId) -> String {
        format!("{PREFIX}s:{}", hex(&id.0))
    }

    fn index(kind: &str, value: &str) -> String {
        format!("{PREFIX}{kind}:{value}")
    }

    /// The refresh lock of one generation (`refresh_at`) of a session.
    fn lock_key(id: &SessionId, generation: u64) -> String {
        Self::index("lock", &format!("{}:{generation}", hex(&id.0)))
    }

    fn users_key() -> String {
        format!("{PREFIX}users")
    }

    /// Milliseconds the Redis key should live: the remaining lifetime, capped by the idle timeout.
    fn ttl_ms(&self, s: &Session) -> u64 {
        let remaining = s.expires_at.saturating_sub(unix_now()).saturating_mul(1000);
        self.idle
            .map_or(remaining, |i| remaining.min(millis(i)))
            .max(1)
    }

    /// A fresh connection and `PING`, for `portcullis check` and the
    /// start-up checks: the error names the cause, and the outage state (and
    /// its log line, which the serving store writes) is left alone.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.backend.probe().await.map_err(|e| classify(&e))
    }

    /// Sets `key` for `ttl` unless it exists (`SET NX PX`): true for the one
    /// caller, across every instance, that set it.
    async fn set_once(&self, key: String, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg((ttl.as_millis() as u64).max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Runs one command, tracking the outage state.
    async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let attempt = || async {
            let mut c = self.backend.conn().await?;
            timed(cmd.query_async::<T>(&mut c)).await
        };
        let mut result = attempt().await;
        if let Err(e) = &result {
            // A connection that broke while Redis was away reports that once,
            // then reconnects: one retry makes recovery invisible to users.
            if wants_reconnect(e) {
                self.backend.failed(e);
                result = attempt().await;
            }
        }
        match result {
            Ok(v) => {
                self.up();
                Ok(v)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn failed(&self, e: &redis::RedisError) -> StoreError {
        self.backend.failed(e);
        let err = classify(e);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.flips.fetch_add(1, Ordering::AcqRel);
            tracing::error!(
                error = %err,
                "session store unreachable: sessions verified in the last {}s keep working from the local cache; logins, sign-outs and other sessions answer 503 until it is back",
                STALE_TRUST.as_secs()
            );
        }
        err
    }

    fn up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.flips.fetch_add(1, Ordering::AcqRel);
            tracing::info!("session store reachable again");
        }
    }

    /// Caches what a load read, unless an invalidation arrived since `epoch`.
    fn remember(&self, session: &Arc<Session>, epoch: u64) {
        let Some(cache) = &self.cache else { return };
        let (now, secs) = (now_ms(), unix_secs());
        cache.insert(
            Cached::verified(session.clone(), now),
            now,
            // Checked under the shard's lock: an invalidation either bumped
            // the epoch first, or removes this entry after.
            || self.epoch.load(Ordering::Acquire) == epoch,
            |c| self.keeps(c, now, secs),
        );
    }

    fn forget(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.remove(id);
        }
    }

    fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Applies one invalidation message.
    fn apply(&self, payload: &[u8]) {
        if payload == b"*" {
            self.forget_all();
            return;
        }
        match payload.strip_prefix(b"s:").and_then(unhex) {
            Some(id) => self.forget(&SessionId(id)),
            None => tracing::debug!("ignoring a malformed invalidation message"),
        }
    }

    async fn publish(&self, message: &str) -> Result<(), StoreError> {
        self.run::<i64>(redis::cmd("PUBLISH").arg(CHANNEL).arg(message))
            .await
            .map(|_| ())
    }

    async fn members(&self, key: &str) -> Result<Vec<SessionId>, StoreError> {
        let raw: Vec<Vec<u8>> = self.run(redis::cmd("SMEMBERS").arg(key)).await?;
        Ok(raw.iter().filter_map(|m| unhex(m)).map(SessionId).collect())
    }

    /// The sessions of one user, pruning index members whose session is
    /// gone or is no longer that user's (a refresh renewed the user claim).
    async fn user_sessions(&self, user: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let index = Self::index("u", user);
        let now = unix_now();
        let mut out = Vec::new();
        for id in self.members(&index).await? {
            let bytes: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(Self::key(&id))).await?;
            match bytes.and_then(|b| codec::decode(id, &b).ok()) {
                Some(s) if s.is_live(now) && s.identity.user == user => out.push(Arc::new(s)),
                _ => {
                    self.run::<i64>(redis::cmd("SREM").arg(&index).arg(hex(&id.0)))
                        .await?;
                }
            }
        }
        Ok(out)
    }

    /// The ids among `ids` (an index's members) whose stored session `what`
    /// still names: a session whose user changed since it was indexed (a
    /// refresh renewed the user claim) is no longer the old user's. Gone
    /// and unreadable ones stay (deleting them is harmless).
    async fn still_named(
        &self,
        ids: Vec<SessionId>,
        what: Revoke<'_>,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let bytes: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(Self::key(&id))).await?;
            match bytes.and_then(|b| codec::decode(id, &b).ok()) {
                Some(s) if !s.matches(what) => {}
                _ => out.push(id),
            }
        }
        Ok(out)
    }

    async fn users(&self) -> Result<Vec<String>, StoreError> {
        self.run(redis::cmd("SMEMBERS").arg(Self::users_key()))
            .await
    }

    async fn load_inner(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let key = Self::key(id);
        let mut cmd = match self.idle {
            Some(idle) => {
                // Slides the idle timeout; a key outliving the absolute end is
                // harmless, `is_live` rejects it.
                let mut c = redis::cmd("GETEX");
                c.arg(&key).arg("PX").arg(millis(idle));
                c
            }
            None => redis::cmd("GET"),
        };
        if self.idle.is_none() {
            cmd.arg(&key);
        }
        let Some(bytes) = self.run::<Option<Vec<u8>>>(&cmd).await? else {
            return Ok(None);
        };
        let session = match codec::decode(*id, &bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(session = %id.log_tag(), error = %e, "stored session unreadable; treating it as signed out");
                return Ok(None);
            }
        };
        if !session.is_live(unix_now()) {
            return Ok(None);
        }
        let session = Arc::new(session);
        self.remember(&session, epoch);
        Ok(Some(session))
    }

    async fn save_inner(&self, session: Arc<Session>) -> Result<(), StoreError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.run::<()>(
            redis::cmd("SET")
                .arg(Self::key(&session.id))
                .arg(codec::encode(&session))
                .arg("PX")
                .arg(self.ttl_ms(&session)),
        )
        .await?;
        self.saved(session, epoch).await
    }

    async fn replace_inner(
        &self,
        current: &Session,
        renewed: Arc<Session>,
    ) -> Result<bool, StoreError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let swapped: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(REPLACE_SCRIPT)
                    .arg(1)
                    .arg(Self::key(&current.id))
                    .arg(codec::encode(current))
                    .arg(codec::encode(&renewed))
                    .arg(self.ttl_ms(&renewed)),
            )
            .await?;
        if swapped != 1 {
            return Ok(false);
        }
        self.saved(renewed, epoch).await?;
        Ok(true)
    }

    /// After a session's value is written: its index entries, the
    /// invalidation of other instances' copies, the local cache.
    async fn saved(&self, session: Arc<Session>, epoch: u64) -> Result<(), StoreError> {
        let id = hex(&session.id.0);
        let lifetime = session.expires_at.saturating_sub(unix_now()).max(1);
        let mut indexes = vec![
            Self::index("u", &session.identity.user),
            Self::index("sub", &session.subject),
        ];
        if let Some(sid) = &session.idp_session {
            indexes.push(Self::index("sid", sid));
        }
        for index in &indexes {
            self.run::<i64>(redis::cmd("SADD").arg(index).arg(&id))
                .await?;
            // Every session of a deployment has the same lifetime, so the newest sets the longest.
            self.run::<i64>(redis::cmd("EXPIRE").arg(index).arg(lifetime))
                .await?;
        }
        self.run::<i64>(
            redis::cmd("SADD")
                .arg(Self::users_key())
                .arg(&session.identity.user),
        )
        .await?;
        // Instances holding an older copy (after a refresh) drop it.
        self.publish(&format!("s:{id}")).await?;
        self.remember(&session, epoch);
        Ok(())
    }

    async fn remove_inner(&self, id: &SessionId) -> Result<(), StoreError> {
        self.forget(id);
        self.run::<i64>(redis::cmd("DEL").arg(Self::key(id)))
            .await?;
        self.publish(&format!("s:{}", hex(&id.0))).await?;
        Ok(())
    }

    async fn revoke_inner(&self, what: Revoke<'_>) -> Result<usize, StoreError> {
        let (ids, indexes) = match what {
            Revoke::All => {
                let mut ids = Vec::new();
                let mut indexes = Vec::new();
                for user in self.users().await? {
                    let index = Self::index("u", &user);
                    ids.extend(self.members(&index).await?);
                    indexes.push(index);
                }
                (ids, indexes)
            }
            Revoke::User(u) => {
                let index = Self::index("u", u);
                (self.members(&index).await?, vec![index])
            }
            Revoke::Subject(s) => {
                let index = Self::index("sub", s);
                (self.members(&index).await?, vec![index])
            }
            Revoke::IdpSession(s) => {
                let index = Self::index("sid", s);
                (self.members(&index).await?, vec![index])
            }
        };
        let ids = match what {
            Revoke::All => ids,
            _ => self.still_named(ids, what).await?,
        };
        let mut ended = 0;
        for id in &ids {
            self.forget(id);
            let n: i64 = self.run(redis::cmd("DEL").arg(Self::key(id))).await?;
            ended += usize::from(n > 0);
        }
        for index in &indexes {
            self.run::<i64>(redis::cmd("DEL").arg(index)).await?;
        }
        if matches!(what, Revoke::All) {
            self.publish("*").await?;
        } else {
            for id in &ids {
                self.publish(&format!("s:{}", hex(&id.0))).await?;
            }
        }
        Ok(ended)
    }
}

impl SessionStore for RedisStore {
    fn lookup_cached(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.cache.as_ref()?.with(id, |c| {
            let now = now_ms();
            if !c.session.is_live(unix_secs()) {
                return None;
            }
            let verified_ago = now.saturating_sub(c.verified_ms);
            // Trusted for `MAX_TRUST` with the subscription up, `STALE_TRUST` without.
            if verified_ago >= millis(MAX_TRUST)
                || (verified_ago > STALE_TRUST.as_millis() as u64
                    && !self.subscribed.load(Ordering::Acquire))
            {
                return None;
            }
            // Answered here, this use reaches Redis at the next touch; if the
            // key might expire before that, read it (sliding it) instead.
            // (This also ends an idle session: `touch_trust_ms` < idle timeout.)
            if now.saturating_sub(c.touched_ms.load(Ordering::Relaxed)) >= self.touch_trust_ms {
                return None;
            }
            // Write only when the coarse clock has moved: the same session checked
            // from every worker thread would otherwise bounce this cache line.
            if c.used_ms.load(Ordering::Relaxed) != now {
                c.used_ms.store(now, Ordering::Relaxed);
            }
            Some(c.session.clone())
        })
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Arc<Session>>, StoreError>> {
        Box::pin(self.load_inner(id))
    }

    fn save(&self, session: Arc<Session>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.save_inner(session))
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.remove_inner(id))
    }

    fn list<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Session>>, StoreError>> {
        Box::pin(async move {
            let users = match user {
                Some(u) => vec![u.to_owned()],
                None => self.users().await?,
            };
            let mut out = Vec::new();
            for u in users {
                out.extend(self.user_sessions(&u).await?);
            }
            Ok(out)
        })
    }

    fn revoke<'a>(&'a self, what: Revoke<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.revoke_inner(what))
    }

    fn replace<'a>(
        &'a self,
        current: &'a Arc<Session>,
        renewed: Arc<Session>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.replace_inner(current, renewed))
    }

    fn lock_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.set_once(Self::lock_key(id, generation), super::REFRESH_LOCK))
    }

    fn extend_refresh<'a>(
        &'a self,
        id: &'a SessionId,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let held: i64 = self
                .run(
                    redis::cmd("PEXPIRE")
                        .arg(Self::lock_key(id, generation))
                        .arg(millis(super::REFRESH_LOCK)),
                )
                .await?;
            Ok(held == 1)
        })
    }

    fn first_use<'a>(
        &'a self,
        digest: &'a [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.set_once(Self::index("once", &hex(digest)), ttl))
    }

    fn forget_use<'a>(&'a self, digest: &'a [u8; 32]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.run::<()>(redis::cmd("DEL").arg(Self::index("once", &hex(digest))))
                .await
        })
    }

    /// Single-flight and reused for [`READY_REUSE_MS`] (unless an outage
    /// started or ended since): a `PING` on the store's own connection. Only
    /// when that fails is a fresh connection opened, once, to name the cause
    /// (a wrong password or a TLS failure; the shared connection would only
    /// say it is broken).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut last = self.ready.lock().await;
            if let Some(r) = last.as_ref() {
                if now_ms().saturating_sub(r.at_ms) < READY_REUSE_MS
                    && r.flips == self.flips.load(Ordering::Acquire)
                {
                    return r.result.clone();
                }
            }
            let result = match self.run::<()>(&redis::cmd("PING")).await {
                Ok(()) => Ok(()),
                Err(shared) => match self.backend.probe().await {
                    Ok(()) => {
                        self.up();
                        Ok(())
                    }
                    Err(e) => {
                        let named = self.failed(&e);
                        tracing::debug!(error = %shared, "readiness: the shared store connection failed");
                        Err(named)
                    }
                },
            };
            *last = Some(Readiness {
                at_ms: now_ms(),
                flips: self.flips.load(Ordering::Acquire),
                result: result.clone(),
            });
            result
        })
    }
}

/// Keeps the invalidation subscription up: (re)subscribes with backoff,
/// drops the whole cache after each (re)subscription, and checks the
/// connection with a PING every [`SUBSCRIBER_PING`] so a silent network
/// failure is noticed too.
async fn subscribe_loop(weak: Weak<RedisStore>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(this) = weak.upgrade() else { return };
        match subscribe(&this).await {
            Ok((mut sink, mut stream)) => {
                this.forget_all();
                this.subscribed.store(true, Ordering::Release);
                this.up();
                tracing::debug!("session invalidation subscription live");
                backoff = Duration::from_millis(100);
                drop(this);
                let mut tick = tokio::time::interval(SUBSCRIBER_PING);
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let (Some(msg), Some(this)) = (msg, weak.upgrade()) else { break };
                            this.apply(msg.get_payload_bytes());
                        }
                        _ = tick.tick() => {
                            if timed(sink.ping::<redis::Value>()).await.is_err() {
                                break;
                            }
                            let Some(this) = weak.upgrade() else { break };
                            this.sweep_if_due();
                        }
                    }
                }
                let Some(this) = weak.upgrade() else { return };
                this.subscribed.store(false, Ordering::Release);
                tracing::debug!(
                    "session invalidation subscription lost; cached sessions are re-read after {}s",
                    STALE_TRUST.as_secs()
                );
            }
            Err(e) => {
                this.subscribed.store(false, Ordering::Release);
                this.failed(&e);
                drop(this);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn subscribe(
    store: &RedisStore,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), redis::RedisError> {
    let mut last = None;
    for client in store.backend.pubsub_clients().await? {
        let attempt = async {
            let mut ps = timed(client.get_async_pubsub()).await?;
            timed(ps.subscribe(CHANNEL)).await?;
            Ok::<_, redis::RedisError>(ps.split())
        };
        match attempt.await {
            Ok(pair) => return Ok(pair),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        redis::RedisError::from(std::io::Error::other("no Redis node to subscribe to"))
    }))
}

/// Slides the Redis TTL of sessions used only from the local cache since
/// their last touch, to the idle timeout counted from that last use (so an
/// idle session ends in Redis when it ends in the cache, not up to `every`
/// later). `GT`: another instance's more recent use is never shortened.
/// At most one command per used session per `every`, whatever the traffic.
/// A session not touched for `idle - every` is not answered from the cache
/// (see `touch_trust_ms`), so a use can never come too late for its touch.
async fn touch_loop(weak: Weak<RedisStore>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(this) = weak.upgrade() else { return };
        let (Some(cache), Some(idle)) = (&this.cache, this.idle) else {
            return;
        };
        let mut due: Vec<(SessionId, u64)> = Vec::new();
        cache.for_each(|id, c| {
            let used = c.used_ms.load(Ordering::Relaxed);
            if used > c.touched_ms.load(Ordering::Relaxed) {
                due.push((*id, used));
            }
        });
        for (id, used) in due {
            let left = millis(idle).saturating_sub(now_ms().saturating_sub(used));
            if left == 0 {
                continue;
            }
            let cmd = redis::cmd("PEXPIRE")
                .arg(RedisStore::key(&id))
                .arg(left)
                .arg("GT")
                .to_owned();
            if this.run::<i64>(&cmd).await.is_err() {
                break;
            }
            cache.with(&id, |c| {
                c.touched_ms.store(used, Ordering::Relaxed);
                Some(())
            });
        }
    }
}

/// The connection is broken, or (`READONLY`) the server it reaches is no
/// longer the master: the next attempt should reconnect (with Sentinel,
/// after asking the sentinels again).
fn wants_reconnect(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

/// How often [`touch_loop`] runs for an idle timeout.
fn touch_every(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Milliseconds on the coarse monotonic clock (verification and use stamps).
fn now_ms() -> u64 {
    crate::base::clock::mono_ms()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

fn unhex(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_hostile_ids() {
        let id = [0xab; 32];
        assert_eq!(unhex(hex(&id).as_bytes()), Some(id));
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(unhex(&[b'g'; 64]), None);
        assert_eq!(unhex(&[b'a'; 63]), None);
    }
}
