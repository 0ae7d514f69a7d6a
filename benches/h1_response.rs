//! Reading an upstream's HTTP/1.1 answer without hyper
//! (`base::h1_response`): the cost the proxy would pay per answer.
//!
//! - `head/small`: the answer of the load harness's upstream (200, three
//!   small headers, `Content-Length: 0`);
//! - `head/typical`: an application's answer (twelve fields, cookies,
//!   caching, a content type);
//! - each beside `httparse_only`, the bare `httparse` parse into header
//!   slots with no `HeaderMap` and no framing: what the reader adds to it
//!   (both copy the head into a fresh buffer first, as a read would);
//! - `chunked/16k`: a 16 KiB body in 1 KiB chunks, decoded.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::base::h1_response::{parse_head, ChunkedDecoder, Decoded};

const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\nx-auth-user: alice\r\nx-auth-email: alice@example.com\r\nx-auth-groups: admins,staff\r\ncontent-length: 0\r\n\r\n";

const TYPICAL: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Mon, 07 Dec 2026 20:00:00 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 5120\r\n\
Cache-Control: private, max-age=0, must-revalidate\r\n\
ETag: \"5f3a-1b2c3d4e\"\r\n\
Set-Cookie: grafana_session=0123456789abcdef; Path=/; HttpOnly; SameSite=Lax\r\n\
Set-Cookie: redirect_to=; Path=/; Max-Age=0\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: deny\r\n\
X-Xss-Protection: 1; mode=block\r\n\
Vary: Accept-Encoding\r\n\
Strict-Transport-Security: max-age=31536000\r\n\r\n";

fn httparse_only(raw: &[u8]) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => 0,
    }
}

fn chunked_body() -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..16 {
        wire.extend_from_slice(b"400\r\n");
        wire.extend_from_slice(&[b'x'; 1024]);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

fn reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("head");
    for (name, raw) in [("small", SMALL), ("typical", TYPICAL)] {
        g.bench_function(format!("{name}/reader"), |b| {
            b.iter(|| {
                parse_head(&mut BytesMut::from(black_box(raw)), false)
                    .ok()
                    .flatten()
                    .map(|h| h.headers.len())
            })
        });
        g.bench_function(format!("{name}/httparse_only"), |b| {
            b.iter(|| httparse_only(&BytesMut::from(black_box(raw))))
        });
    }
    g.finish();

    let wire = chunked_body();
    let mut g = c.benchmark_group("chunked");
    g.bench_function("16k", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&wire[..]));
            let mut dec = ChunkedDecoder::default();
            let mut n = 0;
            while let Ok(Decoded::Data(d)) = dec.decode(&mut buf) {
                n += d.len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, reader);
criterion_main!(benches);
