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

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Request, StatusCode};
use portcullis::basic::htpasswd::classify;
use portcullis::clock::unix_now;
use portcullis::config::Config;
use portcullis::forward_auth;
use portcullis::identity::Identity;
use portcullis::pipeline::{Gateway, Peer};
use portcullis::session::{Session, SessionId};

const PASSWORD: &str = "correct horse battery staple";

/// 20 hosts with a Basic-auth `/admin` rule for group `admins` and a catch-all each.
fn config_text(dir: &Path) -> String {
    let mut t = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[oidc]
issuer = "http://127.0.0.1:9"
client_id = "portcullis"

[session]
cookie_secure = true

[access]
default = "deny"
allowed_redirect_domains = [".bench.test"]
htpasswd_file = "{dir}/htpasswd"
htpasswd_groups_file = "{dir}/htgroups"
"#,
        dir = dir.display()
    );
    for i in 0..20 {
        t.push_str(&format!(
            "\n[[rule]]\nname = \"app{i} admin\"\nhost = \"app{i}.bench.test\"\npath = \"/admin\"\ngroups = [\"admins\"]\nbasic_auth = true\n\n[[rule]]\nname = \"app{i}\"\nhost = \"app{i}.bench.test\"\n"
        ));
    }
    t
}

fn gateway(rt: &tokio::runtime::Runtime, dir: &Path) -> Arc<Gateway> {
    let hash = bcrypt::hash(PASSWORD, 5).expect("bcrypt hashes");
    std::fs::write(dir.join("htpasswd"), format!("alice:{hash}\n")).expect("write htpasswd");
    std::fs::write(dir.join("htgroups"), "admins: alice\nstaff: alice\n").expect("write groups");
    let env: HashMap<String, String> = HashMap::from([
        (
            "PORTCULLIS_OIDC_CLIENT_SECRET".into(),
            "bench-client-secret".into(),
        ),
        (
            "PORTCULLIS_SESSION_SECRET".into(),
            "a-benchmark-session-secret-that-is-long-enough".into(),
        ),
    ]);
    let config = match Config::from_toml(&config_text(dir), Path::new("."), &env) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    };
    let _guard = rt.enter();
    match portcullis::server::build(config, None) {
        Ok(gw) => gw,
        Err(e) => panic!("build: {e}"),
    }
}

fn alice() -> Session {
    let identity = Identity {
        user: "alice".into(),
        email: String::new(),
        groups: vec!["admins".into(), "staff".into()],
        ..Identity::default()
    };
    Session {
        id: SessionId::random(),
        headers: identity.headers(),
        identity,
        subject: "alice-subject".into(),
        idp_session: None,
        id_token: None,
        access_token: None,
        refresh_token: None,
        created_at: unix_now(),
        expires_at: unix_now() + 12 * 3600,
        refresh_at: 0,
    }
}

fn request(cookie: Option<&str>, authorization: Option<&str>) -> Request<()> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri("/oauth2/auth")
        .header("host", "auth.bench.test")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app7.bench.test")
        .header("x-forwarded-uri", "/admin/users?page=2")
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", "bench");
    if let Some(c) = cookie {
        b = b.header(
            "cookie",
            format!("_ga=GA1.2.1234567890.1234567890; _portcullis={c}; theme=dark"),
        );
    }
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    b.body(()).expect("valid request")
}

fn basic_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = gateway(&rt, dir.path());
    let session = alice();
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
