//! The memory session store at scale: a thousand sessions against a
//! million; and the Redis store's cached lookup beside the memory store's.
//!
//! - `session_store/lookup_*`: [`SessionStore::lookup_cached`] cycling over
//!   1 000 sessions held in a store of 1 000 and of 1 000 000 (`_large`; what a check
//!   pays for the store; the map's probe misses the cache more often in the
//!   larger one);
//! - `session_store/login_at_capacity_*`: saving a new session into a full
//!   store, which evicts one first (sampled least recently used), for
//!   stores of 1 000 and 1 000 000;
//! - `session_store/cached_lookup_{memory,redis}_1k`: the same lookup over
//!   1 000 sessions, in the memory store and in the Redis store's local
//!   cache (warm, invalidation subscription live; a real `redis-server` on
//!   loopback, started here): what a check pays for the store with each;
//! - resident memory per session, printed once: the process's resident set
//!   before and after filling a store with 1 000 000 sessions, without
//!   tokens and with tokens of the sizes a typical IdP issues. The allocator
//!   is mimalloc, as in the `portcullis` binary.
//!
//! With `-- --test` (the test suite runs every bench once) the large store
//! holds 20 000 sessions instead of a million, so the run stays small.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::auth::session::memory::MemoryStore;
use portcullis::auth::session::redis::RedisStore;
use portcullis::auth::session::{Session, SessionId, SessionStore};
use portcullis::base::clock::unix_now;
use portcullis::base::identity::Identity;
use portcullis::base::secret::Secret;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The large store's size: a million, or 20 000 when only testing the bench.
fn large() -> usize {
    if std::env::args().any(|a| a == "--test") {
        20_000
    } else {
        1_000_000
    }
}

/// Token sizes seen from Keycloak and Authentik with a few groups: an ID
/// token of about 1.1 KB, an access token of 1.3 KB, a refresh token of 0.7 KB.
const TOKEN_SIZES: [usize; 3] = [1100, 1300, 700];

/// A signed-in user with three groups, like the load harness's; with or
/// without the IdP's tokens.
fn session(i: usize, tokens: bool) -> Arc<Session> {
    let identity = Identity {
        user: format!("user{i:07}"),
        email: format!("user{i:07}@example.com"),
        groups: vec!["staff".into(), "grafana-editors".into(), "vpn".into()],
        preferred_username: format!("user{i:07}"),
        ..Identity::default()
    };
    let token = |n: usize| tokens.then(|| Secret::new("t".repeat(n)));
    Arc::new(Session {
        id: SessionId::random(),
        headers: identity.headers(),
        identity,
        subject: format!("8d1c6e7a-5b2f-4c1e-9a3d-{i:012}"),
        idp_session: Some(format!("5f0e2b1c-{i:012}")),
        id_token: token(TOKEN_SIZES[0]),
        access_token: token(TOKEN_SIZES[1]),
        refresh_token: token(TOKEN_SIZES[2]),
        created_at: unix_now(),
        expires_at: unix_now() + 12 * 3600,
        refresh_at: 0,
    })
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn filled(rt: &tokio::runtime::Runtime, n: usize, tokens: bool) -> (MemoryStore, Vec<SessionId>) {
    let store = MemoryStore::with_capacity(None, n);
    let mut ids = Vec::with_capacity(n.min(1000));
    for i in 0..n {
        let s = session(i, tokens);
        if i < 1000 {
            ids.push(s.id);
        }
        rt.block_on(store.save(s)).expect("memory store saves");
    }
    assert_eq!(store.len(), n);
    (store, ids)
}

/// Prints the resident memory the large store's sessions take, per session.
fn report_memory(rt: &tokio::runtime::Runtime) {
    let n = large();
    // Each store stays alive until both are measured: memory a dropped
    // store gave back to the allocator would make the second one look smaller.
    let mut kept = Vec::new();
    for tokens in [false, true] {
        let before = rss();
        let (store, _) = filled(rt, n, tokens);
        let after = rss();
        let per = after.saturating_sub(before) as f64 / n as f64;
        let token_bytes: usize = if tokens { TOKEN_SIZES.iter().sum() } else { 0 };
        eprintln!(
            "memory store: {n} sessions {}: {:.0} MiB resident, {per:.0} bytes per session{}",
            if tokens {
                "with tokens"
            } else {
                "without tokens"
            },
            after.saturating_sub(before) as f64 / 1048576.0,
            if tokens {
                format!(" ({token_bytes} of them the tokens' text)")
            } else {
                String::new()
            },
        );
        kept.push(store);
    }
}

fn store_scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    report_memory(&rt);

    let mut g = c.benchmark_group("session_store");
    for (label, n) in [("1k", 1000), ("large", large())] {
        let (store, ids) = filled(&rt, n, false);
        let mut next = 0usize;
        g.bench_function(format!("lookup_{label}"), |b| {
            b.iter(|| {
                next = (next + 1) % ids.len();
                black_box(store.lookup_cached(black_box(&ids[next])))
            })
        });
        let mut i = n;
        g.bench_function(format!("login_at_capacity_{label}"), |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(store.save(session(i, false)))
                    .expect("memory store saves")
            })
        });
        assert_eq!(store.len(), n, "a full store stays at its capacity");
    }
    g.finish();
}

/// A Redis store with the local cache on, subscribed to invalidations
/// (else a cached entry is trusted only 30 s), holding `n` saved sessions.
fn redis_store(
    rt: &tokio::runtime::Runtime,
    redis: &common::redis::Redis,
    n: usize,
) -> (Arc<RedisStore>, Vec<SessionId>) {
    let cfg = common::redis::bench_session_config(redis);
    rt.block_on(async {
        // The store's connection manager starts on this runtime.
        let store = RedisStore::new(&cfg).expect("redis store");
        store.spawn_background();
        let until = Instant::now() + Duration::from_secs(20);
        while !store.is_subscribed() {
            assert!(Instant::now() < until, "subscribed within 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let s = session(i, false);
            ids.push(s.id);
            store.save(s).await.expect("redis store saves");
        }
        // A save's own invalidation message comes back through the
        // subscription and drops the local copy: once those have arrived,
        // a load (as a gateway's first check does) caches each session.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for id in &ids {
            store.load(id).await.expect("redis store loads");
        }
        (store, ids)
    })
}

/// The cached lookup of both stores, 1 000 sessions each.
fn cached_lookup(c: &mut Criterion) {
    // The subscriber runs on this runtime's worker while the bench loops.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = common::redis::Redis::start();
    let (memory, memory_ids) = filled(&rt, 1000, false);
    let (store, redis_ids) = redis_store(&rt, &redis, 1000);
    for id in &redis_ids {
        assert!(
            store.lookup_cached(id).is_some(),
            "saved sessions are cached"
        );
    }
    let mut g = c.benchmark_group("session_store");
    let mut next = 0usize;
    g.bench_function("cached_lookup_memory_1k", |b| {
        b.iter(|| {
            next = (next + 1) % memory_ids.len();
            black_box(memory.lookup_cached(black_box(&memory_ids[next])))
        })
    });
    g.bench_function("cached_lookup_redis_1k", |b| {
        b.iter(|| {
            next = (next + 1) % redis_ids.len();
            black_box(store.lookup_cached(black_box(&redis_ids[next])))
        })
    });
    g.finish();
    assert!(
        store.lookup_cached(&redis_ids[0]).is_some(),
        "still answered from the cache"
    );
}

criterion_group!(benches, store_scale, cached_lookup);
criterion_main!(benches);
