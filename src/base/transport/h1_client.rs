//! The HTTP/1.1 upstream client of reverse-proxy mode, built on the two
//! halves tested against hyper ([`super::h1_request`] writes, [`super::h1_response`]
//! reads): one exchange at a time on a connection that the request's own
//! task drives, with no dispatcher, channel or connection task between the
//! proxy and the socket.
//!
//! [`Conn::exchange`] writes the request head and streams the request body
//! while it watches for the answer's head: an upstream may answer before the
//! upload ends (a 413, say), and that answer is taken at once; the rest of
//! the upload is then dropped and the connection is not reused. Interim
//! answers (1xx) are skipped; a 101 to a request that asked for no upgrade
//! is an error.
//!
//! [`UpstreamBody`] reads the answer's body as the client takes it and gives
//! the connection back to its pool at the body's end, when the framing left
//! it in a known state ([`Head::reusable`](super::h1_response::Head)) and
//! the request went up whole. A body dropped before its end closes its
//! connection.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::body::{BodyError, RequestBody};
use super::h1_request::{self, BodyFraming};
use super::h1_response::{self, ChunkedDecoder, Decoded, Framing, ReadError};
use super::pool::{Io, Pool};

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Buffers larger than this (a request head near `max_header_bytes`, an
/// answer read in large pieces) are not kept by an idle connection.
const KEPT_WHILE_IDLE: usize = 64 * 1024;

/// An HTTP/1.1 connection to an upstream, idle or in one exchange.
pub(super) struct Conn {
    io: Io,
    /// Bytes read and not taken yet (empty between exchanges).
    buf: BytesMut,
    /// Request framing bytes waiting to be written (kept for its capacity).
    out: Vec<u8>,
}

/// Why an exchange or the body of its answer failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed (reset, broken pipe, TLS).
    #[error("sending the request failed: {0}")]
    Write(#[source] io::Error),
    /// Reading the answer failed (reset, TLS).
    #[error("reading the answer failed: {0}")]
    Read(#[source] io::Error),
    /// The upstream closed the connection before its answer's head was complete.
    #[error("the upstream closed the connection before answering")]
    Closed,
    /// The answer is not HTTP/1.1 that can be read safely.
    #[error(transparent)]
    Answer(#[from] ReadError),
    /// The upstream answered 101 to a request that asked for no upgrade.
    #[error("the upstream switched protocols unasked")]
    Switched,
    /// The client's request body failed (or idled out) on its way up.
    #[error("the request body failed: {0}")]
    Body(#[source] Box<BodyError>),
    /// The client's request body did not match its own `Content-Length`.
    #[error("the request body does not match its Content-Length")]
    BodyLength,
}

/// A failed exchange, and whether the request may go again on another
/// connection: nothing of it was written, or it was a request without a
/// body and with a safe method that got no byte of answer before the
/// upstream closed (an idle connection closed just as it was reused).
#[derive(Debug)]
pub(super) struct Failed {
    pub error: ExchangeError,
    pub replayable: bool,
}

/// An answer's head, and whether the request leaves the connection fit for
/// another one: all of it written before the answer came, and no `CONNECT`
/// (whose 2xx answer makes the connection a tunnel).
pub(super) struct Answer {
    pub head: h1_response::Head,
    pub clean: bool,
}

/// Where the request stands on its way up.
struct Upload {
    framing: BodyFraming,
    /// Body bytes still owed under `Content-Length`.
    left: u64,
    /// Written of `Conn::out`.
    out_at: usize,
    /// Body data queued after `Conn::out`.
    data: Bytes,
    /// A byte has been taken by the connection.
    wrote: bool,
    unflushed: bool,
    /// A chunk has been written, whose CRLF is still owed.
    in_chunk: bool,
    /// Everything has been queued (the body ended or there is none).
    body_done: bool,
    /// Safe to send again when no byte of answer came.
    replayable: bool,
    /// A byte of answer has been read.
    answered: bool,
    /// The request is a `CONNECT`.
    connect: bool,
}

impl Upload {
    /// Every byte of the request written and flushed; `out_len` is the
    /// length of `Conn::out`, whose last bytes (a chunked body's end) may
    /// still wait after the body itself has ended.
    fn done(&self, out_len: usize) -> bool {
        self.body_done && self.out_at == out_len && self.data.is_empty() && !self.unflushed
    }

    fn failed(&self, error: ExchangeError) -> Failed {
        let gone_before_answer = !self.answered
            && match &error {
                ExchangeError::Closed => true,
                ExchangeError::Write(e) | ExchangeError::Read(e) => matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                ),
                _ => false,
            };
        let replayable = match &error {
            ExchangeError::Write(_) if !self.wrote => true,
            _ => self.replayable && gone_before_answer,
        };
        Failed { error, replayable }
    }
}

// === impl Conn ===

impl Conn {
    pub(super) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
        }
    }

    /// Lets go of buffers grown past [`KEPT_WHILE_IDLE`] before the
    /// connection waits in its pool.
    fn trim(&mut self) {
        if self.out.capacity() > KEPT_WHILE_IDLE {
            self.out = Vec::with_capacity(1024);
        }
        if self.buf.is_empty() && self.buf.capacity() > KEPT_WHILE_IDLE {
            self.buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// The connection's byte stream, for hyper to take over (upgrades).
    pub(super) fn into_io(self) -> Io {
        self.io
    }

    /// Still open and silent, ready for a request: polled once (without a
    /// waker of its own), which notices an upstream that closed it while it
    /// waited or sent bytes nobody asked for.
    pub(super) fn ready_now(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_read(&mut cx), Poll::Pending)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Sends `req` (its URI in origin form) with the header `lines` after
    /// its own fields (see [`h1_request::write_head_with`]) and waits for
    /// the answer's head.
    pub(super) async fn exchange(
        &mut self,
        req: &mut Request<RequestBody>,
        lines: &[u8],
    ) -> Result<Answer, Failed> {
        let body = req.body();
        let framing = if body.is_end_stream() {
            if req.headers().contains_key(header::CONTENT_LENGTH) {
                BodyFraming::Length(0)
            } else {
                BodyFraming::Empty
            }
        } else {
            match body.size_hint().exact() {
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::Chunked,
            }
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        self.out.clear();
        h1_request::write_head_with(
            &mut self.out,
            req.method(),
            target,
            req.headers(),
            lines,
            framing,
        );
        let method = req.method();
        let mut up = Upload {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            out_at: 0,
            data: Bytes::new(),
            wrote: false,
            unflushed: false,
            in_chunk: false,
            body_done: matches!(framing, BodyFraming::Empty | BodyFraming::Length(0)),
            replayable: matches!(framing, BodyFraming::Empty | BodyFraming::Length(0))
                && (method == Method::GET
                    || method == Method::HEAD
                    || method == Method::OPTIONS
                    || method == Method::TRACE),
            answered: false,
            connect: method == Method::CONNECT,
        };
        let head_request = method == Method::HEAD;
        let body = req.body_mut();
        poll_fn(|cx| self.poll_exchange(cx, body, &mut up, head_request)).await
    }

    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut RequestBody,
        up: &mut Upload,
        head_request: bool,
    ) -> Poll<Result<Answer, Failed>> {
        if let Err(e) = self.poll_upload(cx, body, up) {
            return Poll::Ready(Err(e));
        }
        loop {
            match h1_response::parse_head(&mut self.buf, head_request) {
                Ok(Some(head)) if head.is_interim() => {
                    up.answered = true;
                    continue;
                }
                Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Poll::Ready(Err(up.failed(ExchangeError::Switched)));
                }
                Ok(Some(head)) => {
                    let clean = up.done(self.out.len()) && !up.connect;
                    return Poll::Ready(Ok(Answer { head, clean }));
                }
                Ok(None) => up.answered |= !self.buf.is_empty(),
                Err(e) => return Poll::Ready(Err(up.failed(e.into()))),
            }
            match self.poll_read(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(up.failed(ExchangeError::Closed))),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(up.failed(ExchangeError::Read(e)))),
            }
        }
    }

    /// Writes as much of the request as the connection takes now, taking
    /// the next body frame each time what was queued has gone out.
    fn poll_upload(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut RequestBody,
        up: &mut Upload,
    ) -> Result<(), Failed> {
        loop {
            while up.out_at < self.out.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.out[up.out_at..]) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Ok(0)) => return Err(up.failed(write_zero())),
                    Poll::Ready(Ok(n)) => {
                        up.out_at += n;
                        up.wrote = true;
                        up.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Err(up.failed(ExchangeError::Write(e))),
                }
            }
            while !up.data.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &up.data) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Ok(0)) => return Err(up.failed(write_zero())),
                    Poll::Ready(Ok(n)) => up.data.advance(n),
                    Poll::Ready(Err(e)) => return Err(up.failed(ExchangeError::Write(e))),
                }
            }
            if up.unflushed {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Ok(())) => up.unflushed = false,
                    Poll::Ready(Err(e)) => return Err(up.failed(ExchangeError::Write(e))),
                }
            }
            if up.body_done {
                return Ok(());
            }
            self.out.clear();
            up.out_at = 0;
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(frame) => frame,
            };
            match frame {
                None => {
                    up.body_done = true;
                    match up.framing {
                        BodyFraming::Chunked => {
                            if up.in_chunk {
                                self.out.extend_from_slice(b"\r\n");
                            }
                            h1_request::write_last_chunk(&mut self.out);
                        }
                        _ if up.left != 0 => return Err(up.failed(ExchangeError::BodyLength)),
                        _ => {}
                    }
                }
                Some(Err(e)) => return Err(up.failed(ExchangeError::Body(Box::new(e)))),
                // Trailers are not sent on.
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    match up.framing {
                        BodyFraming::Chunked => {
                            if up.in_chunk {
                                self.out.extend_from_slice(b"\r\n");
                            }
                            h1_request::write_chunk_size(&mut self.out, data.len());
                            up.in_chunk = true;
                        }
                        _ => {
                            let n = data.len() as u64;
                            if n > up.left {
                                return Err(up.failed(ExchangeError::BodyLength));
                            }
                            up.left -= n;
                        }
                    }
                    up.data = data;
                }
            }
        }
    }
}

fn write_zero() -> ExchangeError {
    ExchangeError::Write(io::ErrorKind::WriteZero.into())
}

// === the answer's body ===

/// An answer's body, read from its connection as the client takes it; the
/// connection goes back to `pool` at its end when it can be reused.
pub struct UpstreamBody {
    /// `None` once given back, or gone with an error.
    conn: Option<(Arc<Pool>, Conn)>,
    left: Left,
    /// The connection may carry another request after this body.
    reusable: bool,
}

enum Left {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    End,
}

impl UpstreamBody {
    pub(super) fn new(pool: Arc<Pool>, conn: Conn, framing: Framing, reusable: bool) -> Self {
        let left = match framing {
            Framing::Empty | Framing::Length(0) => Left::End,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Left::UntilClose,
        };
        let mut body = UpstreamBody {
            conn: Some((pool, conn)),
            left,
            reusable,
        };
        if matches!(body.left, Left::End) {
            body.give_back();
        }
        body
    }

    /// The body has ended: its connection goes back to the pool, if it can.
    fn give_back(&mut self) {
        self.left = Left::End;
        if let Some((pool, mut conn)) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                conn.trim();
                pool.put(conn);
            }
        }
    }

    fn fail(&mut self, e: ExchangeError) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        self.conn = None;
        self.left = Left::End;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = self.get_mut();
        loop {
            let Some((_, conn)) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let (data, ended) = match &mut this.left {
                Left::End => (None, true),
                Left::Length(n) if !conn.buf.is_empty() => {
                    let take = usize::try_from(*n)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *n -= take as u64;
                    (Some(conn.buf.split_to(take).freeze()), *n == 0)
                }
                Left::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => (Some(data), false),
                    Ok(Decoded::Done) => (None, true),
                    Ok(Decoded::NeedMore) => (None, false),
                    Err(e) => return this.fail(e.into()),
                },
                Left::UntilClose if !conn.buf.is_empty() => {
                    (Some(conn.buf.split().freeze()), false)
                }
                Left::Length(_) | Left::UntilClose => (None, false),
            };
            if ended {
                // Given back before the last bytes go to the client: the
                // next request may take the connection at once.
                this.give_back();
                return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
            }
            if let Some(data) = data {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match conn.poll_read(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(this.left, Left::UntilClose) => {
                    this.conn = None;
                    this.left = Left::End;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(ReadError::CutShort.into()),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(ExchangeError::Read(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::End)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::End => SizeHint::with_exact(0),
            Left::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// The answer to an exchange, as a response whose body reads the rest.
pub(super) fn response(pool: Arc<Pool>, conn: Conn, answer: Answer) -> Response<UpstreamBody> {
    let h1_response::Head {
        status,
        version,
        headers,
        framing,
        reusable,
    } = answer.head;
    let body = UpstreamBody::new(pool, conn, framing, reusable && answer.clean);
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.version_mut() = version;
    *res.headers_mut() = headers;
    res
}

#[cfg(test)]
mod tests;
