//! What `Authorization: Basic` costs per forward-auth check on a rule with
//! `basic_auth`, beside a session cookie on the same rule: the in-process
//! [`forward_auth::check`] on a gateway built from TOML as `serve` builds it,
//! with an htpasswd file (bcrypt, cost 5 as `htpasswd -B` writes by default)
//! and a groups file, and a memory session store holding the same user.
//!
//! Cases: a session cookie (the baseline), Basic credentials that were
//! verified before (the cache: HMAC of `user:password`, one moka lookup),
//! and, for scale, what a cache miss would add: one bcrypt check at cost 5
//! and at cost 10 (the gateway runs it on the blocking pool).

#[path = "support/inproc.rs"]
mod inproc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use portcullis::auth::pipeline::{Gateway, Peer};
use portcullis::auth::session::SessionId;
use portcullis::config::htpasswd::classify;
use portcullis::endpoints::forward_auth;

const PASSWORD: &str = "correct horse battery staple";

/// The bench config: the `/admin` rules with `basic_auth`, and the password
/// and groups files (bcrypt at cost 5) written to `dir`.
fn gateway(rt: &tokio::runtime::Runtime, dir: &Path) -> Arc<Gateway> {
    let hash = bcrypt::hash(PASSWORD, 5).expect("bcrypt hashes");
    std::fs::write(dir.join("htpasswd"), format!("alice:{hash}\n")).expect("write htpasswd");
    std::fs::write(dir.join("htgroups"), "admins: alice\nstaff: alice\n").expect("write groups");
    let access = format!(
        "htpasswd_file = \"{dir}/htpasswd\"\nhtpasswd_groups_file = \"{dir}/htgroups\"\n",
        dir = dir.display()
    );
    inproc::gateway(rt, &inproc::config_text(&access, "basic_auth = true\n"))
}

fn request(cookie: Option<&str>, authorization: Option<&str>) -> Request<()> {
    let mut headers = vec![("x-forwarded-for", "203.0.113.7")];
    headers.extend(authorization.map(|a| ("authorization", a)));
    inproc::request(&headers, cookie)
}

fn basic_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = gateway(&rt, dir.path());
    let session = inproc::alice(SessionId::random(), "");
    let id = session.id;
    rt.block_on(gw.sessions.save(Arc::new(session)))
        .expect("memory store saves");
    let cookie = gw.keys.seal(&id);
    let addr: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let live = gw.runtime.load_full();
    let request_id = http::HeaderValue::from_static("bench-request");
    let peer = Peer::new(&live, addr, false, &request_id);
    let credentials = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
    );

    let with_cookie = request(Some(&cookie), None);
    let with_basic = request(None, Some(&credentials));
    for req in [&with_cookie, &with_basic] {
        let res = rt.block_on(forward_auth::check(&gw, &live, req, peer));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-auth-user"], "alice");
        assert_eq!(res.headers()["x-auth-groups"], "admins,staff");
    }
    assert_eq!(gw.basic.hash_checks(), 1, "the first Basic check hashes");

    let mut g = c.benchmark_group("basic_auth_check");
    g.bench_function("session_cookie_group_rule", |b| {
        b.to_async(&rt)
            .iter(|| forward_auth::check(&gw, &live, black_box(&with_cookie), peer))
    });
    g.bench_function("basic_cached_group_rule", |b| {
        b.to_async(&rt)
            .iter(|| forward_auth::check(&gw, &live, black_box(&with_basic), peer))
    });
    g.finish();
    assert_eq!(gw.basic.hash_checks(), 1, "cached checks ran a hash");

    let mut g = c.benchmark_group("basic_auth_miss");
    g.sample_size(10);
    for cost in [5, 10] {
        let hash =
            classify(&bcrypt::hash(PASSWORD, cost).expect("bcrypt hashes")).expect("a bcrypt hash");
        g.bench_function(format!("bcrypt_verify_cost_{cost}"), |b| {
            b.iter(|| hash.verify(black_box(PASSWORD.as_bytes())))
        });
    }
    g.finish();
}

criterion_group!(benches, basic_auth);
criterion_main!(benches);
