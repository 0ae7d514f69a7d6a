//! The server's side of HTTP/1.1 without hyper, for the requests that make
//! up nearly all of a gateway's traffic: reading a request head that has no
//! body ([`parse`], which leaves anything else whole for hyper's server) and
//! writing an answer's head as hyper's server writes it ([`encode_head`]).
//! `server::conn::h1` drives both on a connection; its tests compare them
//! with hyper's server.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use super::body::ClientBody;
use super::h1_request::write_field;
use super::h1_response::digits;

/// Header fields per request head; more and hyper takes the request.
const MAX_HEADERS: usize = 100;

/// The longest request target taken (hyper's own limit).
const MAX_TARGET: usize = (u16::MAX - 1) as usize;

/// What [`parse`] made of the bytes read so far.
// Not boxed: it lives for one return.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A request this reader takes; its head has been taken from the buffer.
    Request {
        /// The request, without a body.
        req: Request<ClientBody>,
        /// The client asked to close the connection after the answer.
        close: bool,
    },
    /// A request for hyper's server (see the module docs); nothing taken.
    HandOver,
}

/// Reads the request head at the start of `buf` (see [`Parsed`]). Heads
/// longer than `max_head` bytes are handed over (hyper answers them 431).
pub fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    // Left uninitialised: `httparse` writes the slots it uses.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let used = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::HandOver,
    };
    if req.version != Some(1) {
        return Parsed::HandOver;
    }
    let method = match req.method.map(|m| Method::from_bytes(m.as_bytes())) {
        Some(Ok(m)) if m != Method::CONNECT => m,
        _ => return Parsed::HandOver,
    };
    let base = buf.as_ptr() as usize;
    let target = match req.path {
        Some(p) if p.starts_with('/') && p.len() <= MAX_TARGET => {
            (p.as_ptr() as usize - base, p.len())
        }
        _ => return Parsed::HandOver,
    };
    // Where each field sits in the head, to cut the values from it once
    // `httparse` lets go of the buffer; and the fields that decide the path.
    let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let n = req.headers.len();
    let mut close = false;
    for (slot, h) in at.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        if [
            &b"content-length"[..],
            b"transfer-encoding",
            b"upgrade",
            b"expect",
        ]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
        {
            return Parsed::HandOver;
        }
        if name.eq_ignore_ascii_case(b"connection") && has_close(h.value) {
            close = true;
        }
        // Offsets fit: the head is at most `max_head` bytes, checked
        // against u32 by the caller's limit (a few hundred KiB at most).
        *slot = (
            (name.as_ptr() as usize - base) as u32,
            name.len() as u32,
            (h.value.as_ptr() as usize - base) as u32,
            h.value.len() as u32,
        );
    }
    let head = buf.split_to(used).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        // Put back: hyper reads the request again and answers it 400.
        return unsplit(buf, head);
    };
    let mut headers = HeaderMap::with_capacity(n);
    for &(name, name_len, value, value_len) in &at[..n] {
        let (name, value) = (name as usize, value as usize);
        let raw = &head[name..name + name_len as usize];
        let Ok(name) = HeaderName::from_bytes(raw) else {
            return unsplit(buf, head);
        };
        let Ok(value) =
            HeaderValue::from_maybe_shared(head.slice(value..value + value_len as usize))
        else {
            return unsplit(buf, head);
        };
        headers.append(name, value);
    }
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Parsed::Request { req, close }
}

/// Puts `head` back in front of `buf` and hands the request over.
#[cold]
fn unsplit(buf: &mut BytesMut, head: Bytes) -> Parsed {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
    Parsed::HandOver
}

/// `value` (a `Connection` field) names `close`.
pub fn has_close(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// How an answer's body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes go out (the body, if any, is dropped unread).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunks of unknown total length.
    Chunked,
}

/// Why an answer could not be written as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A `content-length` field that does not parse, on a body of unknown length.
    Length,
}

/// Appends the answer's head to `out` as hyper's server writes it: the
/// status line, the fields in order with lower-case names, the framing
/// field, `connection: close` when `close` (unless the answer says so
/// already), and `date` unless the answer has one. `body_len` is the body's
/// length when known (`Some(0)` for an empty body). Returns the body's
/// framing and whether the answer itself asks to close.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body_len: Option<u64>,
    head_request: bool,
    close: bool,
) -> Result<(Framing, bool), EncodeError> {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §8.6: no length on 1xx, 204 and 304; no body on those nor on HEAD.
    let may_have_length = !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    let may_have_body = may_have_length && !head_request;
    let mut framing = None;
    let mut wrote_date = false;
    let mut asks_close = false;
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH => {
                if !may_have_length || framing.is_some() {
                    continue;
                }
                match body_len {
                    // A HEAD answer keeps the length its GET would have.
                    Some(0) if head_request => {}
                    // The body's own length, whatever the field said.
                    Some(len) => {
                        if len == 0 {
                            continue;
                        }
                        framing = Some(Framing::Length(len));
                        write_length(out, len);
                        continue;
                    }
                    None => {
                        let len = digits(value.as_bytes()).ok_or(EncodeError::Length)?;
                        framing = Some(Framing::Length(len));
                    }
                }
            }
            // Decided from the body below.
            header::TRANSFER_ENCODING => continue,
            header::CONNECTION => {
                asks_close |= has_close(value.as_bytes());
            }
            header::DATE => wrote_date = true,
            _ => {}
        }
        write_field(out, name, value.as_bytes());
    }
    if close && !asks_close {
        // hyper adds `close` to the answer's own `Connection` values; a
        // second field line says the same (RFC 9110 §5.3).
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = match (framing, body_len) {
        (Some(f), _) => f,
        (None, Some(0)) => {
            // hyper writes no implicit zero length on a HEAD answer.
            if may_have_body {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        (None, Some(len)) => {
            if may_have_length {
                write_length(out, len);
            }
            Framing::Length(len)
        }
        (None, None) if may_have_body => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        (None, None) => Framing::None,
    };
    let framing = if may_have_body {
        framing
    } else {
        Framing::None
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok((framing, asks_close))
}

fn write_length(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the present time as an HTTP date, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((0, [0; 29])) };
    }
    let now = crate::base::clock::unix_secs();
    let (at, mut text) = DATE.get();
    if at != now {
        let formatted =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(now));
        text.copy_from_slice(&formatted.as_bytes()[..29]);
        DATE.set((now, text));
    }
    out.extend_from_slice(&text);
}
