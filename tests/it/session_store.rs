//! One conformance suite for the `SessionStore` trait, run against every
//! backend: the in-process memory store, and the Redis store (with its
//! local cache and without) on a real `redis-server` started for each test
//! (a missing `redis-server` fails the test, never skips it).
//!
//! Each case is written once against [`Stores`]: two handles on the same
//! sessions, as two gateway instances see them (for memory, the one store
//! twice; for Redis, two stores on the same server, their invalidation
//! subscriptions live). The cases follow the trait's documentation: save,
//! load and remove; expiry and the idle timeout; listing and revocation by
//! user, subject, IdP session and all; the conditional replace of a
//! refresh; the refresh locks; one-time token ids; absent ids; large
//! sessions.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::auth::session::memory::MemoryStore;
use portcullis::auth::session::redis::RedisStore;
use portcullis::auth::session::{Revoke, Session, SessionId, SessionStore};
use portcullis::base::clock::unix_now;
use portcullis::base::identity::Identity;
use portcullis::base::secret::Secret;
use portcullis::config::{Config, SessionConfig};

use crate::common::redis::Redis;

/// How long another instance may keep answering from its local cache after a
/// change made elsewhere (the invalidation subscription delivers well within).
const EVERYWHERE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Redis,
    RedisWithoutCache,
}

/// Two handles on the same sessions, as two instances see them.
struct Stores {
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
    redis: Option<Redis>,
}

// === the stores ===

impl Backend {
    async fn open(self) -> Stores {
        self.open_with_idle(None).await
    }

    /// The stores, with `session.idle_timeout` when given.
    async fn open_with_idle(self, idle: Option<Duration>) -> Stores {
        let cache = match self {
            Backend::Memory => {
                let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(idle));
                return Stores {
                    a: store.clone(),
                    b: store,
                    redis: None,
                };
            }
            Backend::Redis => true,
            Backend::RedisWithoutCache => false,
        };
        let redis = Redis::start();
        let cfg = redis_config(&redis.url(), idle, cache);
        let (a, b) = (redis_store(&cfg).await, redis_store(&cfg).await);
        Stores {
            a,
            b,
            redis: Some(redis),
        }
    }
}

/// `[session]` for a Redis store at `url`, as the config loader builds it.
fn redis_config(url: &str, idle: Option<Duration>, local_cache: bool) -> SessionConfig {
    let idle = idle
        .map(|d| format!("idle_timeout = \"{}ms\"\n", d.as_millis()))
        .unwrap_or_default();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[oidc]\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"portcullis\"\n[session]\nstore = \"redis\"\nredis_url = \"{url}\"\nlocal_cache = {local_cache}\n{idle}[[rule]]\npolicy = \"public\"\n"
    );
    let env: HashMap<String, String> = HashMap::from([
        (
            "PORTCULLIS_OIDC_CLIENT_SECRET".into(),
            "client-secret".into(),
        ),
        (
            "PORTCULLIS_SESSION_SECRET".into(),
            crate::support::SESSION_SECRET.into(),
        ),
    ]);
    Config::from_toml(&toml, Path::new("."), &env)
        .unwrap_or_else(|e| panic!("config: {e}\n{toml}"))
        .session
}

/// A Redis store as a serving gateway runs it: background tasks started,
/// and (with the local cache) its invalidation subscription live.
async fn redis_store(cfg: &SessionConfig) -> Arc<dyn SessionStore> {
    let store = RedisStore::new(cfg).expect("a Redis store");
    store.spawn_background();
    if cfg.local_cache {
        let t0 = Instant::now();
        while !store.is_subscribed() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no invalidation subscription"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    store
}

// === sessions ===

fn identity(user: &str, groups: &[&str]) -> Identity {
    Identity {
        user: user.into(),
        email: format!("{user}@example.com"),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::default()
    }
}

/// A session of `user` (subject `sub-<user>`, no IdP session) ending in `lifetime_secs`.
fn session(user: &str, lifetime_secs: u64) -> Session {
    session_of(
        identity(user, &["staff"]),
        &format!("sub-{user}"),
        None,
        lifetime_secs,
    )
}

fn session_of(identity: Identity, subject: &str, sid: Option<&str>, lifetime_secs: u64) -> Session {
    Session {
        id: SessionId::random(),
        headers: identity.headers(),
        identity,
        subject: subject.into(),
        idp_session: sid.map(str::to_owned),
        id_token: Some(Secret::new("header.payload.signature".into())),
        access_token: Some(Secret::new("access-token".into())),
        refresh_token: None,
        created_at: unix_now(),
        expires_at: unix_now() + lifetime_secs,
        refresh_at: 0,
    }
}

/// A copy of `s` with another identity (a refresh that renewed the claims).
fn renewed(s: &Session, identity: Identity, refresh_at: u64) -> Session {
    Session {
        id: s.id,
        headers: identity.headers(),
        identity,
        subject: s.subject.clone(),
        idp_session: s.idp_session.clone(),
        id_token: s.id_token.as_ref().map(|t| Secret::new(t.expose().clone())),
        access_token: s
            .access_token
            .as_ref()
            .map(|t| Secret::new(t.expose().clone())),
        refresh_token: s
            .refresh_token
            .as_ref()
            .map(|t| Secret::new(t.expose().clone())),
        created_at: s.created_at,
        expires_at: s.expires_at,
        refresh_at,
    }
}

/// Every stored field of `got` equals `want`'s.
fn assert_same(got: &Session, want: &Session, what: &str) {
    let token = |t: &Option<Secret<String>>| t.as_ref().map(|t| t.expose().clone());
    assert!(got.id == want.id, "{what}: id");
    assert_eq!(got.identity, want.identity, "{what}: identity");
    assert_eq!(
        got.headers.user, want.headers.user,
        "{what}: the user header"
    );
    assert_eq!(
        got.headers.groups, want.headers.groups,
        "{what}: the groups header"
    );
    assert_eq!(got.subject, want.subject, "{what}: subject");
    assert_eq!(got.idp_session, want.idp_session, "{what}: IdP session");
    assert_eq!(
        token(&got.id_token),
        token(&want.id_token),
        "{what}: ID token"
    );
    assert_eq!(
        token(&got.access_token),
        token(&want.access_token),
        "{what}: access token"
    );
    assert_eq!(
        token(&got.refresh_token),
        token(&want.refresh_token),
        "{what}: refresh token"
    );
    assert_eq!(got.created_at, want.created_at, "{what}: created_at");
    assert_eq!(got.expires_at, want.expires_at, "{what}: expires_at");
    assert_eq!(got.refresh_at, want.refresh_at, "{what}: refresh_at");
}

async fn load(store: &Arc<dyn SessionStore>, id: &SessionId) -> Option<Arc<Session>> {
    store.load(id).await.expect("the store answers")
}

/// A use as a request makes it: the local answer, else the store's.
async fn used(store: &Arc<dyn SessionStore>, id: &SessionId) -> Option<Arc<Session>> {
    match store.lookup_cached(id) {
        Some(s) => Some(s),
        None => load(store, id).await,
    }
}

async fn ids(store: &Arc<dyn SessionStore>, user: Option<&str>) -> BTreeSet<[u8; 32]> {
    let listed = store.list(user).await.expect("the store lists");
    listed.iter().map(|s| s.id.0).collect()
}

fn set(sessions: &[&Arc<Session>]) -> BTreeSet<[u8; 32]> {
    sessions.iter().map(|s| s.id.0).collect()
}

/// Polls `f` until it holds, for at most `limit`.
async fn eventually<F: Future<Output = bool>>(limit: Duration, mut f: impl FnMut() -> F) -> bool {
    let t0 = Instant::now();
    loop {
        if f().await {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === the cases ===

/// An id never saved is no session for every call, and no call fails.
async fn absent_ids_are_no_session(backend: Backend) {
    let s = backend.open().await;
    let ghost = Arc::new(session("ghost", 3600));
    assert!(s.a.lookup_cached(&ghost.id).is_none());
    assert!(load(&s.a, &ghost.id).await.is_none());
    s.a.remove(&ghost.id).await.expect("removing an absent id");
    let renewed = Arc::new(renewed(&ghost, ghost.identity.clone(), 1));
    assert!(
        !s.a.replace(&ghost, renewed).await.unwrap(),
        "a refresh of a session never stored stores nothing"
    );
    assert!(load(&s.b, &ghost.id).await.is_none());
    assert!(
        !s.a.extend_refresh(&ghost.id, 1).await.unwrap(),
        "never locked"
    );
    assert!(ids(&s.a, Some("ghost")).await.is_empty());
    assert!(ids(&s.a, None).await.is_empty());
    assert_eq!(s.a.revoke(Revoke::User("ghost")).await.unwrap(), 0);
    assert_eq!(s.a.revoke(Revoke::Subject("sub-ghost")).await.unwrap(), 0);
    assert_eq!(
        s.a.revoke(Revoke::IdpSession("sid-ghost")).await.unwrap(),
        0
    );
    assert_eq!(s.a.revoke(Revoke::All).await.unwrap(), 0);
    s.a.forget_use(&[9; 32])
        .await
        .expect("forgetting an unseen id");
    s.a.ping().await.expect("a reachable store is ready");
}

/// A saved session loads back whole on every instance: a small one, and a
/// large one (200 groups, an 8 KiB ID token, extra claims, non-ASCII text).
async fn saved_sessions_load_back_whole(backend: Backend) {
    let s = backend.open().await;
    let small = Session {
        id_token: None,
        access_token: None,
        ..session_of(
            Identity {
                email: String::new(),
                groups: Vec::new(),
                ..identity("u", &[])
            },
            "u",
            None,
            60,
        )
    };
    let groups: Vec<String> = (0..200).map(|i| format!("group-{i:03}-größe")).collect();
    let big_identity = Identity {
        user: "zoë o'brien: ops/team #1".into(),
        email: "zoë@example.com".into(),
        groups,
        preferred_username: "Zoë".into(),
        claims: vec![
            ("department".into(), "Forschung & Entwicklung".into()),
            ("org.unit".into(), "ops".into()),
        ],
    };
    let big = Session {
        id_token: Some(Secret::new("x".repeat(8 * 1024))),
        refresh_token: Some(Secret::new("r".repeat(512))),
        refresh_at: unix_now() + 600,
        ..session_of(big_identity, "subject ü 42", Some("sid: ü/1"), 3600)
    };
    let (small, big) = (Arc::new(small), Arc::new(big));
    for x in [&small, &big] {
        s.a.save(x.clone()).await.expect("save");
    }
    for x in [&small, &big] {
        let user = &x.identity.user;
        assert_same(&load(&s.a, &x.id).await.expect("saved"), x, user);
        assert_same(&load(&s.b, &x.id).await.expect("saved"), x, user);
        if let Some(local) = s.a.lookup_cached(&x.id) {
            assert_same(&local, x, user);
        }
        assert_eq!(ids(&s.b, Some(user)).await, set(&[x]), "{user}");
    }
    assert_eq!(ids(&s.b, None).await, set(&[&small, &big]));
}

/// Saving a session again (same id) replaces it on every instance.
async fn saving_again_updates_everywhere(backend: Backend) {
    let s = backend.open().await;
    let first = Arc::new(session("alice", 3600));
    s.a.save(first.clone()).await.unwrap();
    assert!(used(&s.b, &first.id).await.is_some());
    let second = Arc::new(renewed(&first, identity("alice", &["staff", "admins"]), 7));
    s.a.save(second.clone()).await.unwrap();
    assert_same(&load(&s.a, &first.id).await.unwrap(), &second, "reread");
    if let Some(local) = s.a.lookup_cached(&first.id) {
        assert_same(&local, &second, "the writer's local copy");
    }
    let b = s.b.clone();
    let id = first.id;
    assert!(
        eventually(EVERYWHERE, || {
            let b = b.clone();
            async move { used(&b, &id).await.is_some_and(|x| x.refresh_at == 7) }
        })
        .await,
        "the other instance still answers with the old copy"
    );
    assert_eq!(
        ids(&s.a, None).await,
        set(&[&second]),
        "one session, not two"
    );
}

/// A removed session is gone everywhere, and stays gone.
async fn removal_ends_the_session_everywhere(backend: Backend) {
    let s = backend.open().await;
    let x = Arc::new(session("alice", 3600));
    let other = Arc::new(session("alice", 3600));
    s.a.save(x.clone()).await.unwrap();
    s.a.save(other.clone()).await.unwrap();
    let current = load(&s.a, &x.id).await.expect("saved");
    assert!(used(&s.b, &x.id).await.is_some());
    s.b.remove(&x.id).await.unwrap();
    assert!(s.b.lookup_cached(&x.id).is_none());
    assert!(load(&s.a, &x.id).await.is_none());
    let a = s.a.clone();
    let id = x.id;
    assert!(
        eventually(EVERYWHERE, || {
            let a = a.clone();
            async move { a.lookup_cached(&id).is_none() }
        })
        .await,
        "the other instance still answers from its local copy"
    );
    let refreshed = Arc::new(renewed(&current, current.identity.clone(), 9));
    assert!(
        !s.a.replace(&current, refreshed).await.unwrap(),
        "a refresh never brings back a removed session"
    );
    assert!(load(&s.a, &x.id).await.is_none());
    assert!(load(&s.b, &x.id).await.is_none());
    assert_eq!(ids(&s.a, Some("alice")).await, set(&[&other]));
    assert!(
        load(&s.a, &other.id).await.is_some(),
        "only that session ended"
    );
}

/// A session past its end is never returned, listed or counted, and a
/// session ends when its lifetime does.
async fn expired_sessions_are_never_returned(backend: Backend) {
    let s = backend.open().await;
    let ended = Arc::new(Session {
        expires_at: unix_now(),
        ..session("alice", 0)
    });
    let long_ago = Arc::new(Session {
        expires_at: unix_now() - 60,
        ..session("alice", 0)
    });
    // Two seconds, so that it is live through the next second whenever saved.
    let short = Arc::new(session("bob", 2));
    for x in [&ended, &long_ago, &short] {
        s.a.save(x.clone())
            .await
            .expect("saving an ended session is no error");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for x in [&ended, &long_ago] {
        assert!(s.a.lookup_cached(&x.id).is_none());
        assert!(load(&s.a, &x.id).await.is_none());
        assert!(load(&s.b, &x.id).await.is_none());
    }
    assert!(ids(&s.a, Some("alice")).await.is_empty());
    assert_eq!(ids(&s.a, None).await, set(&[&short]));
    assert!(used(&s.b, &short.id).await.is_some(), "live for now");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(used(&s.a, &short.id).await.is_none(), "past its end");
    assert!(
        used(&s.b, &short.id).await.is_none(),
        "past its end everywhere"
    );
    assert!(ids(&s.b, None).await.is_empty());
    assert_eq!(
        s.a.revoke(Revoke::All).await.unwrap(),
        0,
        "ended sessions are not counted"
    );
}

/// With `session.idle_timeout`, a session ends after that long without use;
/// each use (answered locally or by the store) starts the timer again.
async fn idle_sessions_end_and_use_keeps_them(backend: Backend) {
    let s = backend.open_with_idle(Some(Duration::from_secs(1))).await;
    let (kept, idle) = (
        Arc::new(session("alice", 3600)),
        Arc::new(session("bob", 3600)),
    );
    s.a.save(kept.clone()).await.unwrap();
    s.a.save(idle.clone()).await.unwrap();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            used(&s.a, &kept.id).await.is_some(),
            "in use, round {round}: kept"
        );
    }
    assert!(used(&s.a, &idle.id).await.is_none(), "idle 1.5 s: ended");
    assert!(used(&s.b, &idle.id).await.is_none(), "ended everywhere");
    assert_eq!(ids(&s.b, None).await, set(&[&kept]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(used(&s.a, &kept.id).await.is_none(), "then idle: ended");
}

/// `list` gives every live session, or one user's.
async fn listing_by_user_and_all(backend: Backend) {
    let s = backend.open().await;
    let a1 = Arc::new(session("alice", 3600));
    let a2 = Arc::new(session("alice", 3600));
    let b1 = Arc::new(session("bob", 3600));
    for x in [&a1, &a2, &b1] {
        s.a.save(x.clone()).await.unwrap();
    }
    for store in [&s.a, &s.b] {
        assert_eq!(ids(store, Some("alice")).await, set(&[&a1, &a2]));
        assert_eq!(ids(store, Some("bob")).await, set(&[&b1]));
        assert!(ids(store, Some("carol")).await.is_empty());
        assert_eq!(ids(store, None).await, set(&[&a1, &a2, &b1]));
    }
}

/// `revoke` ends the sessions of one user, one IdP subject, one IdP session
/// or all, everywhere, and counts them; the others stay.
async fn revocation_by_user_subject_idp_session_and_all(backend: Backend) {
    let s = backend.open().await;
    let with = |user: &str, sub: &str, sid: Option<&str>| {
        Arc::new(session_of(identity(user, &["staff"]), sub, sid, 3600))
    };
    let alice_1 = with("alice", "sub-a", Some("sid-1"));
    let alice_2 = with("alice", "sub-a", Some("sid-2"));
    let bob_1 = with("bob", "sub-b", Some("sid-1"));
    let carol = with("carol", "sub-c", None);
    let dave = with("dave", "sub-d", None);
    let all = [&alice_1, &alice_2, &bob_1, &carol, &dave];
    for x in all {
        s.a.save(x.clone()).await.unwrap();
        assert!(used(&s.a, &x.id).await.is_some());
    }
    let live = |gone: &[&Arc<Session>]| {
        all.iter()
            .filter(|x| !gone.iter().any(|g| g.id == x.id))
            .map(|x| x.id.0)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(s.b.revoke(Revoke::IdpSession("sid-1")).await.unwrap(), 2);
    assert_eq!(ids(&s.a, None).await, live(&[&alice_1, &bob_1]));
    assert!(load(&s.a, &alice_1.id).await.is_none());
    assert!(load(&s.a, &bob_1.id).await.is_none());
    assert_eq!(s.b.revoke(Revoke::Subject("sub-a")).await.unwrap(), 1);
    assert!(load(&s.a, &alice_2.id).await.is_none());
    assert_eq!(s.b.revoke(Revoke::User("carol")).await.unwrap(), 1);
    assert!(load(&s.a, &carol.id).await.is_none());
    assert_eq!(ids(&s.a, None).await, set(&[&dave]));
    assert_eq!(s.b.revoke(Revoke::User("carol")).await.unwrap(), 0, "again");
    assert_eq!(s.b.revoke(Revoke::All).await.unwrap(), 1);
    assert!(ids(&s.a, None).await.is_empty());
    let a = s.a.clone();
    let ended: Vec<SessionId> = all.iter().map(|x| x.id).collect();
    assert!(
        eventually(EVERYWHERE, || {
            let (a, ended) = (a.clone(), ended.clone());
            async move { ended.iter().all(|id| a.lookup_cached(id).is_none()) }
        })
        .await,
        "an instance still answers a revoked session from its local copy"
    );
}

/// A session whose user changed (a refresh renewed the user claim) is
/// listed and revoked under its new user only.
async fn a_session_belongs_to_its_current_user(backend: Backend) {
    let s = backend.open().await;
    let before = Arc::new(session("alice", 3600));
    s.a.save(before.clone()).await.unwrap();
    let after = Arc::new(renewed(&before, identity("alice.smith", &["staff"]), 1));
    s.a.save(after.clone()).await.unwrap();
    assert!(
        ids(&s.b, Some("alice")).await.is_empty(),
        "not alice's any more"
    );
    assert_eq!(ids(&s.b, Some("alice.smith")).await, set(&[&after]));
    assert_eq!(s.b.list(None).await.unwrap().len(), 1, "listed once");
    assert_eq!(
        s.b.revoke(Revoke::User("alice")).await.unwrap(),
        0,
        "revoking alice's sessions ends none of alice.smith's"
    );
    assert!(load(&s.a, &after.id).await.is_some());
    assert_eq!(s.b.revoke(Revoke::User("alice.smith")).await.unwrap(), 1);
    assert!(load(&s.a, &after.id).await.is_none());
}

/// `replace` stores a refreshed copy only over the very session the refresh
/// started from: not over another refresh's result, a newer save, a
/// removed, revoked or ended session.
async fn a_refresh_replaces_only_the_session_it_started_from(backend: Backend) {
    let s = backend.open().await;
    let x = Arc::new(session("alice", 3600));
    s.a.save(x.clone()).await.unwrap();
    let current = load(&s.a, &x.id).await.unwrap();
    let first = Arc::new(renewed(&current, identity("alice", &["admins"]), 1));
    assert!(s.a.replace(&current, first.clone()).await.unwrap());
    assert_same(&load(&s.b, &x.id).await.unwrap(), &first, "the refresh");
    assert!(
        !s.a.replace(
            &current,
            Arc::new(renewed(&current, current.identity.clone(), 2))
        )
        .await
        .unwrap(),
        "changed since: another refresh won"
    );
    assert_same(&load(&s.b, &x.id).await.unwrap(), &first, "kept");

    // A save after the load: the refresh started from an older copy.
    let current = load(&s.a, &x.id).await.unwrap();
    let saved = Arc::new(renewed(&current, identity("alice", &["ops"]), 3));
    s.b.save(saved.clone()).await.unwrap();
    assert!(
        !s.a.replace(
            &current,
            Arc::new(renewed(&current, current.identity.clone(), 4))
        )
        .await
        .unwrap(),
        "saved meanwhile"
    );
    assert_same(&load(&s.a, &x.id).await.unwrap(), &saved, "the save stays");

    // Revoked during the refresh.
    let current = load(&s.a, &x.id).await.unwrap();
    assert_eq!(s.b.revoke(Revoke::User("alice")).await.unwrap(), 1);
    assert!(
        !s.a.replace(
            &current,
            Arc::new(renewed(&current, current.identity.clone(), 5))
        )
        .await
        .unwrap(),
        "revoked meanwhile: stays revoked"
    );
    assert!(load(&s.a, &x.id).await.is_none());
    assert!(load(&s.b, &x.id).await.is_none());

    // Ended by its lifetime.
    let short = Arc::new(session("bob", 2));
    s.a.save(short.clone()).await.unwrap();
    let current = load(&s.a, &short.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(
        !s.a.replace(
            &current,
            Arc::new(renewed(&current, current.identity.clone(), 6))
        )
        .await
        .unwrap(),
        "ended meanwhile"
    );
    assert!(load(&s.a, &short.id).await.is_none());
}

/// One refresh lock per session and generation across every instance,
/// extendable while held.
async fn one_refresh_lock_per_generation(backend: Backend) {
    let s = backend.open().await;
    let (id, other) = (SessionId::random(), SessionId::random());
    assert!(s.a.lock_refresh(&id, 7).await.unwrap());
    assert!(!s.b.lock_refresh(&id, 7).await.unwrap(), "held by a");
    assert!(!s.a.lock_refresh(&id, 7).await.unwrap(), "held, also for a");
    assert!(s.a.extend_refresh(&id, 7).await.unwrap(), "held: extended");
    assert!(!s.b.lock_refresh(&id, 7).await.unwrap(), "still held");
    assert!(!s.a.extend_refresh(&id, 8).await.unwrap(), "never taken");
    assert!(s.b.lock_refresh(&id, 8).await.unwrap(), "a new generation");
    assert!(
        s.b.lock_refresh(&other, 7).await.unwrap(),
        "another session"
    );
}

/// A one-time token id is accepted once across every instance, again after
/// it is forgotten, and again once its time is up.
async fn one_time_ids_are_accepted_once(backend: Backend) {
    let s = backend.open().await;
    let (x, y, z) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let long = Duration::from_secs(600);
    assert!(s.a.first_use(&x, long).await.unwrap());
    assert!(
        !s.b.first_use(&x, long).await.unwrap(),
        "a replay elsewhere"
    );
    assert!(!s.a.first_use(&x, long).await.unwrap(), "a replay here");
    assert!(s.b.first_use(&y, long).await.unwrap(), "another id");
    s.b.forget_use(&x).await.unwrap();
    assert!(
        s.a.first_use(&x, long).await.unwrap(),
        "forgotten: usable again"
    );
    assert!(!s.b.first_use(&x, long).await.unwrap(), "and then used");
    assert!(s.a.first_use(&z, Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        s.b.first_use(&z, long).await.unwrap(),
        "remembered only for its time"
    );
}

/// Runs each case against each backend, as its own test.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Memory).await
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Redis).await
            })*
        }
        mod redis_without_local_cache {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::RedisWithoutCache).await
            })*
        }
    };
}

conformance!(
    absent_ids_are_no_session,
    saved_sessions_load_back_whole,
    saving_again_updates_everywhere,
    removal_ends_the_session_everywhere,
    expired_sessions_are_never_returned,
    idle_sessions_end_and_use_keeps_them,
    listing_by_user_and_all,
    revocation_by_user_subject_idp_session_and_all,
    a_session_belongs_to_its_current_user,
    a_refresh_replaces_only_the_session_it_started_from,
    one_refresh_lock_per_generation,
    one_time_ids_are_accepted_once,
);

/// Redis unreachable: every call that needs it fails (the callers answer
/// 503), none grants; back, it answers again.
#[tokio::test]
async fn redis_unreachable_fails_closed_and_recovers() {
    let s = Backend::Redis.open().await;
    let redis = s.redis.as_ref().expect("a Redis");
    let x = Arc::new(session("alice", 3600));
    s.a.save(x.clone()).await.unwrap();
    redis.stop();
    let unknown = SessionId::random();
    assert!(s.b.load(&unknown).await.is_err(), "load");
    assert!(
        s.b.save(Arc::new(session("bob", 60))).await.is_err(),
        "save"
    );
    assert!(s.b.remove(&x.id).await.is_err(), "remove");
    assert!(s.b.list(None).await.is_err(), "list");
    assert!(s.b.revoke(Revoke::All).await.is_err(), "revoke");
    assert!(s.b.lock_refresh(&x.id, 1).await.is_err(), "lock_refresh");
    assert!(
        s.b.first_use(&[4; 32], Duration::from_secs(60))
            .await
            .is_err(),
        "first_use"
    );
    assert!(s.b.ping().await.is_err(), "ping");
    redis.resume();
    let b = s.b.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let b = b.clone();
            async move { b.ping().await.is_ok() }
        })
        .await,
        "ready again once Redis is back"
    );
    // Persistence is off: the restarted Redis is empty.
    assert!(load(&s.b, &x.id).await.is_none());
    assert!(s
        .b
        .first_use(&[4; 32], Duration::from_secs(60))
        .await
        .unwrap());
}
