//! The server's own HTTP/1.1 path without hyper (`base::h1_server`): what
//! reading a request head and writing an answer head cost per request.
//!
//! - `request/load`: the load harness's proxied request (`Host` and the
//!   session cookie);
//! - `request/browser`: a browser's navigation (twelve fields);
//! - each beside `httparse_only`, the bare `httparse` parse into header
//!   slots (both copy the head into a fresh buffer first, as a read would);
//! - `answer/proxied`: the head of a proxied answer (200, five fields and a
//!   known length); `answer/check`: a forward-auth check's 200 with the
//!   identity fields and no body.

use std::hint::black_box;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis::base::h1_server::{encode_head, parse, Parsed};

const LOAD: &[u8] = b"GET /admin/users?page=2 HTTP/1.1\r\nHost: app7.bench.test\r\nCookie: _portcullis=uBRVVoy6KezXoyP3iyP5snKU6+YPnbb2qLWrAdxNAMc=w7HAF4WYd37uAvE5HuM3w0ib_3iE0AGg4FJkGKHzDRs\r\n\r\n";

const BROWSER: &[u8] = b"GET /dashboards/f/abc?orgId=1 HTTP/1.1\r\n\
Host: grafana.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://grafana.example.com/\r\n\
Cookie: _portcullis=uBRVVoy6KezXoyP3iyP5snKU6+YPnbb2qLWrAdxNAMc=w7HAF4WYd37uAvE5HuM3w0ib_3iE0AGg4FJkGKHzDRs; grafana_session=0123456789abcdef\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=0, i\r\n\r\n";

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for (name, raw) in [("load", LOAD), ("browser", BROWSER)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(raw));
                match parse(&mut buf, 16 * 1024) {
                    Parsed::Request { req, .. } => req,
                    other => panic!("{other:?}"),
                }
            })
        });
        g.bench_function(format!("{name}/httparse_only"), |b| {
            b.iter(|| {
                let buf = BytesMut::from(black_box(raw));
                let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
                let mut req = httparse::Request::new(&mut []);
                let n = httparse::ParserConfig::default()
                    .parse_request_with_uninit_headers(&mut req, &buf, &mut slots)
                    .map(|s| s.is_complete());
                black_box(n.unwrap_or(false))
            })
        });
    }
    g.finish();
}

fn write(c: &mut Criterion) {
    let mut proxied = HeaderMap::new();
    for (n, v) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "deny"),
        ("x-request-id", "dac93b88-0000000000000001"),
    ] {
        proxied.insert(n, HeaderValue::from_static(v));
    }
    let mut check = HeaderMap::new();
    for (n, v) in [
        ("x-auth-user", "alice"),
        ("x-auth-email", "alice@example.com"),
        ("x-auth-groups", "admins,staff"),
        ("x-request-id", "dac93b88-0000000000000002"),
    ] {
        check.insert(n, HeaderValue::from_static(v));
    }
    let mut g = c.benchmark_group("answer");
    let mut out = Vec::with_capacity(1024);
    g.bench_function("proxied", |b| {
        b.iter(|| {
            out.clear();
            encode_head(
                &mut out,
                StatusCode::OK,
                black_box(&proxied),
                Some(5120),
                false,
                false,
            )
        })
    });
    g.bench_function("check", |b| {
        b.iter(|| {
            out.clear();
            encode_head(
                &mut out,
                StatusCode::OK,
                black_box(&check),
                Some(0),
                false,
                false,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, read, write);
criterion_main!(benches);
