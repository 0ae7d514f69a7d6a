//! Writing a request to an upstream over HTTP/1.1 without hyper: the
//! request head and the chunks of a body of unknown length.
//!
//! The writing half of the HTTP/1.1 upstream client whose reading half is
//! [`super::h1_response`]; [`super::h1_client`] drives both for the
//! proxy. The body's framing is the writer's to decide: any
//! `Content-Length` or `Transfer-Encoding` in the fields given is left out
//! and the framing field written from the body itself, so a client's field
//! can never announce another length than the one sent (the way a request
//! is smuggled past a proxy). The tests
//! send the same requests through hyper's client and through this writer
//! to a hyper server and compare what it received.

use std::io::Write as _;

use http::header::{self, HeaderMap, HeaderName};
use http::Method;

/// How the request's body goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// A body of unknown length, in chunks ([`write_chunk`], [`write_last_chunk`]).
    Chunked,
}

/// Appends the request head to `out`: the request line with `target` (the
/// path and query, or `*`), every field of `headers` but the framing ones
/// (several `Cookie` fields as one), then the framing field for `body`.
///
/// [`BodyFraming::Empty`] writes no framing field, as hyper's client does
/// for an empty body; a request whose client sent `Content-Length: 0` goes
/// up as `Length(0)`.
pub fn write_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: BodyFraming,
) {
    write_head_with(out, method, target, headers, b"", body);
}

/// [`write_head`] with `lines`, ready-made header lines (`name: value`
/// CRLF, names and values already valid), written after the fields of
/// `headers`. Their names must not be among those of `headers`, nor be a
/// framing field.
pub fn write_head_with(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    lines: &[u8],
    body: BodyFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The values of one name come one after another: a second `Cookie`
    // joins the first's line (RFC 9113 §8.2.3: an HTTP/2 client's cookies
    // come as separate fields and go on as one over HTTP/1.1).
    let mut last_was_cookie = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            last_was_cookie = false;
            continue;
        }
        if name == header::COOKIE && last_was_cookie {
            out.truncate(out.len() - 2);
            out.extend_from_slice(b"; ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            write_field(out, name, value.as_bytes());
        }
        last_was_cookie = name == header::COOKIE;
    }
    out.extend_from_slice(lines);
    match body {
        BodyFraming::Length(n) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one header line, `name: value` CRLF (`value` already valid as a
/// field value).
pub fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked body (nothing for empty data: an empty
/// chunk would end the body).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes (not 0: that is the
/// last chunk), for a caller that writes the data from its own buffer and
/// then the CRLF that closes the chunk.
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// Appends the end of a chunked body (no trailers).
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests;
