//! The whole in-process forward-auth decision: [`forward_auth::check`] on a
//! gateway built from TOML exactly as `serve` builds it, with a memory session
//! store holding one signed-in user.
//!
//! Cases: a valid session cookie on a rule that needs group `admins` (200 with
//! identity headers), and no cookie (401 for an API client, 302 to the login
//! for a browser). Beside them, the pieces of the allowed path one by one
//! (cookie header scan, unseal, store lookup, rule match) and a floor: building
//! the 200 response with three small headers that the plain hyper baseline of
//! `benches/load.rs` answers with, which is what any handler pays at least.
//!
//! The issuer points at a closed loopback port: the hot path never talks to
//! the IdP once a session exists.

#[path = "support/inproc.rs"]
mod inproc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use portcullis::auth::pipeline::{Gateway, Peer, Principal};
use portcullis::auth::rules::{Match, RequestFacts};
use portcullis::auth::session::{Session, SessionId};
use portcullis::base::clock::unix_now;
use portcullis::base::http_util;
use portcullis::endpoints::forward_auth;

fn gateway(rt: &tokio::runtime::Runtime) -> Arc<Gateway> {
    inproc::gateway(rt, &inproc::config_text("", ""))
}

/// The bench config with `headers.assertion` on (key written to `dir`).
fn config_with_assertion(dir: &Path) -> String {
    let key = dir.join("assertion.pem");
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("P-256 key")
        .serialize_pem();
    std::fs::write(&key, pem).expect("write the assertion key");
    inproc::config_text("", "")
        .replace(
            "listen = \"127.0.0.1:0\"\n",
            "listen = \"127.0.0.1:0\"\nexternal_url = \"https://auth.bench.test\"\n",
        )
        .replace(
            "[session]\n",
            &format!("[headers]\nassertion = true\nassertion_key_file = {key:?}\n\n[session]\n"),
        )
}

fn alice_with(id: SessionId) -> Session {
    inproc::alice(id, "alice@example.com")
}

fn request(cookie: Option<&str>, accept: Option<&str>) -> Request<()> {
    let accept: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    inproc::request(&accept, cookie)
}

/// What the plain hyper server answers: 200, empty body, three small headers.
fn floor() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert("x-auth-user", HeaderValue::from_static("alice"));
    h.insert(
        "x-auth-email",
        HeaderValue::from_static("alice@example.com"),
    );
    h.insert("x-auth-groups", HeaderValue::from_static("admins,staff"));
    res
}

fn forward_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gw = gateway(&rt);
    let session = alice_with(SessionId::random());
    let id = session.id;
    rt.block_on(gw.sessions.save(Arc::new(session)))
        .expect("memory store saves");
    let cookie = gw.keys.seal(&id);
    let addr: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let live = gw.runtime.load_full();
    let request_id = http::HeaderValue::from_static("bench-request");
    let peer = Peer::new(&live, addr, false, &request_id);

    let with_cookie = request(Some(&cookie), None);
    let api_no_cookie = request(None, None);
    let browser_no_cookie = request(None, Some("text/html,application/xhtml+xml"));

    let res = rt.block_on(forward_auth::check(&gw, &live, &with_cookie, peer));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-auth-user"], "alice");
    assert_eq!(res.headers()["x-auth-groups"], "admins,staff");
    let res = rt.block_on(forward_auth::check(&gw, &live, &api_no_cookie, peer));
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = rt.block_on(forward_auth::check(&gw, &live, &browser_no_cookie, peer));
    assert_eq!(res.status(), StatusCode::FOUND);

    let mut g = c.benchmark_group("forward_auth_check");
    g.bench_function("valid_cookie_group_rule", |b| {
        b.to_async(&rt)
            .iter(|| forward_auth::check(&gw, &live, black_box(&with_cookie), peer))
    });
    g.bench_function("no_cookie_api_401", |b| {
        b.to_async(&rt)
            .iter(|| forward_auth::check(&gw, &live, black_box(&api_no_cookie), peer))
    });
    g.bench_function("no_cookie_browser_302", |b| {
        b.to_async(&rt)
            .iter(|| forward_auth::check(&gw, &live, black_box(&browser_no_cookie), peer))
    });
    g.bench_function("floor_response_three_headers", |b| b.iter(floor));

    // The same allowed check with `headers.assertion` on: the signed token
    // comes from the signer's cache after the first check.
    let dir = tempfile::tempdir().expect("temp dir");
    let signing = inproc::gateway(&rt, &config_with_assertion(dir.path()));
    rt.block_on(signing.sessions.save(Arc::new(alice_with(id))))
        .expect("memory store saves");
    let signing_cookie = signing.keys.seal(&id);
    let signing_live = signing.runtime.load_full();
    let signing_peer = Peer::new(&signing_live, addr, false, &request_id);
    let with_signing_cookie = request(Some(&signing_cookie), None);
    let res = rt.block_on(forward_auth::check(
        &signing,
        &signing_live,
        &with_signing_cookie,
        signing_peer,
    ));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-auth-assertion"));
    g.bench_function("valid_cookie_group_rule_with_assertion", |b| {
        b.to_async(&rt).iter(|| {
            forward_auth::check(
                &signing,
                &signing_live,
                black_box(&with_signing_cookie),
                signing_peer,
            )
        })
    });
    g.finish();

    // The assertion alone: a cache hit (what every check after the first
    // pays) and a signing (once per session, host and 40 s).
    let signer = signing_live.assertion.as_ref().expect("assertion on");
    let principal = Principal::Session(Arc::new(alice_with(id)));
    let now = unix_now();
    let mut g = c.benchmark_group("assertion");
    g.bench_function("cached", |b| {
        b.iter(|| signer.assertion(black_box(&principal), "app7.bench.test", now))
    });
    let mut n = 0u64;
    g.bench_function("sign_new_audience", |b| {
        b.iter(|| {
            n += 1;
            // A new audience each time: always a miss, always a signature.
            signer.assertion(&principal, &format!("app{n}.miss.test"), now)
        })
    });
    g.finish();

    // The allowed path, piece by piece.
    let headers = with_cookie.headers();
    let runtime = gw.runtime.load_full();
    let method = Method::GET;
    let facts = RequestFacts {
        host: "app7.bench.test",
        path: "/admin/users",
        method: Some(&method),
        client: None,
    };
    assert!(matches!(runtime.rules.evaluate(&facts), Match::Rule(r) if r.needs_groups()));
    let mut g = c.benchmark_group("forward_auth_parts");
    g.bench_function("runtime_load", |b| b.iter(|| gw.runtime.load().rules.len()));
    g.bench_function("cookie_header_scan", |b| {
        b.iter(|| http_util::cookie_bytes(black_box(headers), "_portcullis").map(<[u8]>::len))
    });
    g.bench_function("unseal", |b| b.iter(|| gw.keys.unseal(black_box(&cookie))));
    g.bench_function("store_lookup_cached", |b| {
        b.iter(|| gw.sessions.lookup_cached(black_box(&id)))
    });
    g.bench_function("rules_evaluate", |b| {
        b.iter(|| matches!(runtime.rules.evaluate(black_box(&facts)), Match::Rule(_)))
    });
    g.bench_function("is_trusted", |b| {
        b.iter(|| runtime.is_trusted(black_box(addr.ip())))
    });
    // What the listener adds around each check: the request id (made,
    // since the request brings none) returned in the answer, and the
    // latency histogram's clock readings and observation.
    let empty = http::HeaderMap::new();
    g.bench_function("request_id_and_timer", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            let mut res = Response::new(());
            let id = portcullis::base::request_id::of(black_box(&empty), true);
            if let Some(id) = id {
                res.headers_mut()
                    .insert(&portcullis::base::request_id::X_REQUEST_ID, id);
            }
            portcullis::base::metrics::global()
                .check_duration
                .observe(started.elapsed());
            res
        })
    });
    g.finish();
}

criterion_group!(benches, forward_auth);
criterion_main!(benches);
