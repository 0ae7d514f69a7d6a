//! The way up of one proxied request, after the decision: header hygiene
//! (`auth::proxy_headers`) and the HTTP/1.1 request head the proxy's
//! own client writes (`base::h1_request`).
//!
//! - `scrub/map`: the client's fields scrubbed, the identity and forwarding
//!   fields inserted into the header map (what hyper's client takes: HTTP/2
//!   and TLS upstreams that offer it, upgrades);
//! - `scrub/lines`: the same with those fields written as head lines (what
//!   an upstream that only speaks HTTP/1.1 gets);
//! - `head/lines`: `scrub/lines` and then the request head written with
//!   them, the whole cost before the first byte goes up.
//!
//! The request is the load harness's (`GET /admin/users?page=2`, a
//! browser's fields, the session cookie among two others) and the identity
//! alice's, on the bench config of `benches/forward_auth.rs`.

#[path = "support/inproc.rs"]
mod inproc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::auth::proxy_headers::{Carry, Forwarding};
use portcullis::auth::session::SessionId;
use portcullis::base::h1_request::{write_head_with, BodyFraming};

fn client_fields() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app7.bench.test"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "cookie",
            "theme=dark; _portcullis=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=BBBBBBBB; lang=en",
        ),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn hygiene(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gw = inproc::gateway(&rt, &inproc::config_text("", ""));
    let runtime = gw.runtime.load();
    let hygiene = &runtime.proxy.hygiene;
    let session = inproc::alice(SessionId::random(), "alice@example.com");
    let fwd = Forwarding {
        peer: "10.1.2.3".parse().expect("address"),
        trusted: false,
        proto: "https",
        host: "app7.bench.test",
    };
    let fields = client_fields();
    let mut g = c.benchmark_group("scrub");
    // The load harness's request scrubbed as the proxy scrubs it.
    let scrub = |carry: Carry<'_>| {
        let mut h = fields.clone();
        hygiene.scrub_request(
            &mut h,
            "_portcullis",
            &session.headers,
            Some(&session),
            black_box(&fwd),
            carry,
        );
        h
    };
    g.bench_function("map", |b| {
        b.iter(|| scrub(Carry::Map { upgrade: None }).len())
    });
    g.bench_function("lines", |b| {
        b.iter(|| {
            let mut lines = Vec::with_capacity(256);
            scrub(Carry::Lines(&mut lines)).len() + lines.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("head");
    let mut out = Vec::with_capacity(1024);
    g.bench_function("lines", |b| {
        b.iter(|| {
            let mut lines = Vec::with_capacity(256);
            let h = scrub(Carry::Lines(&mut lines));
            out.clear();
            write_head_with(
                &mut out,
                &Method::GET,
                "/admin/users?page=2",
                &h,
                &lines,
                BodyFraming::Empty,
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, hygiene);
criterion_main!(benches);
