//! Reading an upstream's HTTP/1.1 answer without hyper's client: the
//! response head (parsed by `httparse`, the parser hyper itself uses), how
//! its body is framed (RFC 9112 §6.3), and chunked bodies.
//!
//! This is the reading half of the HTTP/1.1 upstream client that the load
//! harness's `httparse` floor measures against hyper's (see BENCHMARKS.md,
//! "two proxy floors") and that the proxy drives through
//! [`super::h1_client`]. It decides framing the way hyper's client does,
//! which the differential tests check on a corpus of answers (chunked,
//! trailers, 1xx, `Content-Length` edge cases, bodies cut short,
//! conflicting framing), and never panics on any input (property tests).
//!
//! A framing that hyper accepts but that leaves the connection's next bytes
//! in doubt (`Transfer-Encoding` beside `Content-Length`, a body read to the
//! connection's close) marks the connection as not reusable: a response
//! misread there would be handed to the next request, another client.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

/// Header fields a response head may have (hyper's client default).
pub const MAX_HEADERS: usize = 100;

/// Bytes a response head may take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Bytes of one chunk-size line (hex digits, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Bytes of a chunked body's trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an answer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The status line or a header field is not HTTP/1.x syntax.
    #[error("the upstream's response head is malformed: {0}")]
    Malformed(httparse::Error),
    /// The head did not end within [`MAX_HEAD_BYTES`].
    #[error("the upstream's response head is larger than 64 KiB")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    #[error("the upstream's response has more than 100 header fields")]
    TooManyHeaders,
    /// A status code outside 100..=999 (hyper's bounds).
    #[error("the upstream's response has an invalid status code")]
    Status,
    /// `Content-Length` values that are not one and the same number.
    #[error("the upstream's response has an invalid or conflicting Content-Length")]
    ContentLength,
    /// A chunk-size line that is not hex digits (with extensions).
    #[error("the upstream's chunked body is malformed")]
    Chunk,
    /// The connection closed before the body's framing said it ends.
    #[error("the upstream closed the connection before the end of the body")]
    CutShort,
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status code (100 to 999).
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields, in order.
    pub headers: HeaderMap,
    /// How the body ends.
    pub framing: Framing,
    /// The connection may carry another request after this body.
    pub reusable: bool,
}

// === the head ===

/// Takes the response head off the start of `buf`, answering a request
/// whose method was `HEAD` when `head_request`. `Ok(None)`: the head is not
/// complete yet, and `buf` is left as it was.
///
/// The header values are slices of the head's bytes, not copies.
/// An interim answer (1xx other than 101) comes back as it is, framed
/// [`Framing::Empty`]; the caller reads the next head after it.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ReadError> {
    // Left uninitialised: `httparse` writes the slots it uses (as hyper's
    // reader does), which saves filling 3 KiB for every answer.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let used = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(ReadError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooManyHeaders),
        Err(e) => return Err(ReadError::Malformed(e)),
    };
    if used > MAX_HEAD_BYTES {
        return Err(ReadError::HeadTooLarge);
    }
    let code = res.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| ReadError::Status)?;
    let version = if res.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each field's name and value sit in the head, so the values
    // can be cut from it once `httparse` lets go of the buffer.
    let base = buf.as_ptr() as usize;
    let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let n = res.headers.len();
    for (slot, h) in at.iter_mut().zip(res.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        // Offsets fit: the head is at most MAX_HEAD_BYTES long.
        *slot = (
            name as u32,
            h.name.len() as u32,
            value as u32,
            h.value.len() as u32,
        );
    }
    let head = buf.split_to(used).freeze();
    let mut headers = HeaderMap::with_capacity(n);
    let mut fields = Fields::default();
    for &(name, name_len, value, value_len) in &at[..n] {
        let (name, value) = (name as usize, value as usize);
        let raw = &head[name..name + name_len as usize];
        let name = match known_name(raw) {
            Some(known) => known.clone(),
            None => HeaderName::from_bytes(raw)
                .map_err(|_| ReadError::Malformed(httparse::Error::HeaderName))?,
        };
        let value = head.slice(value..value + value_len as usize);
        fields.see(&name, &value);
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| ReadError::Malformed(httparse::Error::HeaderValue))?;
        headers.append(name, value);
    }
    let (framing, reusable) = fields.framing(status, head_request)?;
    if fields.transfer_encoding && fields.length.is_some() {
        // Transfer-Encoding wins (RFC 9112 §6.3); the length must not be
        // passed on beside a body it does not describe.
        headers.remove(header::CONTENT_LENGTH);
    }
    let reusable = reusable && fields.keep_alive(version);
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        reusable,
    }))
}

/// The names answers carry most, by length: found by a compare instead of
/// `HeaderName::from_bytes`'s parse (pre-interned, as the names of a
/// standard header are).
static KNOWN_NAMES: [&[HeaderName]; 26] = [
    &[],
    &[],
    &[],
    &[header::AGE],
    &[header::DATE, header::ETAG, header::VARY, header::LINK],
    &[header::ALLOW],
    &[header::SERVER, header::PRAGMA],
    &[header::EXPIRES],
    &[header::LOCATION],
    &[],
    &[header::SET_COOKIE, header::CONNECTION],
    &[],
    &[header::CONTENT_TYPE],
    &[
        header::CACHE_CONTROL,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
    ],
    &[header::CONTENT_LENGTH],
    &[header::X_FRAME_OPTIONS],
    &[
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::X_XSS_PROTECTION,
    ],
    &[header::TRANSFER_ENCODING],
    &[],
    &[header::CONTENT_DISPOSITION],
    &[],
    &[],
    &[header::X_CONTENT_TYPE_OPTIONS],
    &[header::CONTENT_SECURITY_POLICY],
    &[],
    &[header::STRICT_TRANSPORT_SECURITY],
];

/// `raw` as one of [`KNOWN_NAMES`], in any letter case.
fn known_name(raw: &[u8]) -> Option<&'static HeaderName> {
    KNOWN_NAMES
        .get(raw.len())?
        .iter()
        .find(|n| n.as_str().as_bytes().eq_ignore_ascii_case(raw))
}

impl Head {
    /// A 1xx answer other than 101: another head follows.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }
}

/// What the framing and reuse decisions need, gathered in the pass that
/// builds the header map (no lookups in it afterwards).
#[derive(Default)]
struct Fields {
    /// A `Transfer-Encoding` field was seen.
    transfer_encoding: bool,
    /// The last coding of the last `Transfer-Encoding` field is `chunked`.
    chunked_last: bool,
    /// The `Content-Length` values so far: `Some(Ok(n))` while every one
    /// (comma lists included) is the same number, `Some(Err(()))` once one
    /// is not digits or differs.
    length: Option<Result<u64, ()>>,
    /// `Connection` named `close`, `keep-alive`.
    close: bool,
    keep_alive: bool,
}

impl Fields {
    fn see(&mut self, name: &HeaderName, value: &[u8]) {
        let tokens = || value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.chunked_last = tokens()
                .next_back()
                .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            for part in tokens() {
                self.length = Some(match (self.length, digits(part)) {
                    (None, Some(n)) => Ok(n),
                    (Some(Ok(f)), Some(n)) if f == n => Ok(n),
                    _ => Err(()),
                });
            }
        } else if name == header::CONNECTION {
            for t in tokens() {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// The body's framing (RFC 9112 §6.3), and whether it leaves the
    /// connection in a known state.
    fn framing(
        &self,
        status: StatusCode,
        head_request: bool,
    ) -> Result<(Framing, bool), ReadError> {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now carries another protocol.
            return Ok((Framing::Empty, false));
        }
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Empty, true));
        }
        if self.transfer_encoding {
            // Transfer-Encoding overrides Content-Length; a response with both
            // may be an attempt to desynchronise, so its connection is not kept.
            return Ok(if self.chunked_last {
                (Framing::Chunked, self.length.is_none())
            } else {
                (Framing::UntilClose, false)
            });
        }
        match self.length {
            Some(Ok(n)) => Ok((Framing::Length(n), true)),
            Some(Err(())) => Err(ReadError::ContentLength),
            None => Ok((Framing::UntilClose, false)),
        }
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only
    /// when told `keep-alive`.
    fn keep_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        }
    }
}

/// A decimal number of at most 19 digits, nothing else.
pub(crate) fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

// === chunked bodies ===

/// A chunked body read as its bytes arrive.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: Chunk,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section, this many bytes of it read.
    Trailers(usize),
    Done,
}

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// More input is needed.
    NeedMore,
    /// The body has ended; what follows in the buffer is the next answer's.
    Done,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`: body bytes as they come,
    /// chunk framing and trailers consumed and dropped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ReadError> {
        loop {
            match self.state {
                Chunk::Done => return Ok(Decoded::Done),
                Chunk::Size => {
                    let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&buf[..end - 1])?;
                    buf.advance(end + 1);
                    self.state = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunk::DataEnd => {
                    let Some(end) = line_end(buf, 2)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    // Only CRLF may follow the data.
                    if end != 1 {
                        return Err(ReadError::Chunk);
                    }
                    buf.advance(end + 1);
                    self.state = Chunk::Size;
                }
                Chunk::Trailers(read) => {
                    let Some(end) = line_end(buf, MAX_TRAILERS - read)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let blank = end == 1;
                    buf.advance(end + 1);
                    self.state = if blank {
                        Chunk::Done
                    } else {
                        Chunk::Trailers(read + end + 1)
                    };
                }
            }
        }
    }
}

/// The index of the LF ending the first line of `buf`, which must come
/// after a CR (chunked framing takes no bare LF, as hyper); `None` when it
/// has not arrived; an error when the line is longer than `max`.
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, ReadError> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i < max && i > 0 && buf[i - 1] == b'\r' => Ok(Some(i)),
        Some(_) => Err(ReadError::Chunk),
        None if buf.len() >= max => Err(ReadError::Chunk),
        None => Ok(None),
    }
}

/// The size of a chunk-size line (without its CRLF): hex digits, optional
/// whitespace, optional `;` extensions.
fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex_len == 0 || hex_len > 16 {
        return Err(ReadError::Chunk);
    }
    // Only spaces and tabs (RFC 9112's BWS) may come before `;`: a bare CR
    // or a form feed there is refused, as hyper refuses it.
    let mut rest = &line[hex_len..];
    while let [b' ' | b'\t', tail @ ..] = rest {
        rest = tail;
    }
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(ReadError::Chunk);
    }
    if rest.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(ReadError::Chunk);
    }
    let size = line[..hex_len].iter().fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(v)
    });
    Ok(size)
}

#[cfg(test)]
mod tests;
