//! Bodies streamed through the proxy, frame by frame, never collected: the
//! client's request body going up and the upstream's response body coming
//! back. Whoever sends a body on (hyper's server towards the client, the
//! upstream client going up) polls its next frame only once the previous
//! one is written, so backpressure carries through end to end.
//!
//! The request body also reports its progress ([`Progress`]) so that the
//! response-head timeout starts once the upload is complete, not when the
//! request head went out: a 1 GiB upload may take longer than the timeout.
//!
//! [`IdleBody`] adds `proxy.idle_timeout`: a body that moves no frame for
//! that long ends with an error, which cuts the stream (reset on HTTP/2,
//! closed connection on HTTP/1.1). The timer is armed only when the
//! inner body is not ready, so a body that is already complete costs nothing.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::h1_client::{ExchangeError, UpstreamBody};

/// The request body sent upstream.
pub type RequestBody = IdleBody<ClientBody>;
/// The response body streamed back to the client.
pub type ResponseBody = IdleBody<PooledBody>;

/// A body with an idle timeout between frames.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Which side, for the log line: `request` or `response`.
    side: &'static str,
    /// Upstream URL, for the log line.
    upstream: Arc<str>,
    /// Reported to the sender (request bodies with content only).
    progress: Option<Arc<Progress>>,
}

/// How far a request body has gone up: frames taken, and a notification at its end.
#[derive(Debug, Default)]
pub struct Progress {
    /// Frames the upstream connection has taken.
    pub frames: AtomicU64,
    /// Notified once the body has ended (or failed).
    pub done: tokio::sync::Notify,
}

/// Why a proxied body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The other side stopped sending for longer than `proxy.idle_timeout`.
    #[error("body idle for longer than proxy.idle_timeout")]
    Idle,
    /// The connection failed mid-body.
    #[error("body stream failed")]
    Stream(#[from] hyper::Error),
    /// The upstream's HTTP/1.1 answer failed mid-body.
    #[error("upstream body failed")]
    Upstream(#[from] ExchangeError),
}

// === impl IdleBody ===

impl<B> IdleBody<B> {
    /// Wraps `inner`; `side` and `upstream` name it in the log when it idles out.
    pub fn new(inner: B, idle: Duration, side: &'static str, upstream: Arc<str>) -> Self {
        IdleBody {
            inner,
            idle,
            timer: None,
            armed: false,
            side,
            upstream,
            progress: None,
        }
    }

    /// Reports progress to `p` as frames are taken.
    pub fn with_progress(mut self, p: Arc<Progress>) -> Self {
        self.progress = Some(p);
        self
    }

    fn finished(&self) {
        if let Some(p) = &self.progress {
            p.done.notify_one();
        }
    }
}

impl<B> fmt::Debug for IdleBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleBody")
            .field("side", &self.side)
            .finish()
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                match (&frame, &this.progress) {
                    (Some(Ok(_)), Some(p)) => {
                        p.frames.fetch_add(1, Ordering::Relaxed);
                    }
                    (_, Some(_)) => this.finished(),
                    _ => {}
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                if timer.as_mut().poll(cx).is_ready() {
                    tracing::warn!(upstream = %this.upstream, side = this.side, idle_secs = this.idle.as_secs(), "proxied body moved no bytes within proxy.idle_timeout; cutting the stream");
                    this.finished();
                    return Poll::Ready(Some(Err(BodyError::Idle)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.finished();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client's request body: none, for a request read by the server's own
/// HTTP/1.1 reader (which takes only requests without a body), or hyper's.
#[derive(Debug)]
pub enum ClientBody {
    /// No body.
    Empty,
    /// Read by hyper's server.
    Hyper(Incoming),
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> Self {
        ClientBody::Hyper(b)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// An upstream's answer body: read by the proxy's own HTTP/1.1 client (see
/// [`UpstreamBody`]), or by hyper's over HTTP/2 and for upgrade requests.
pub enum PooledBody {
    H1(UpstreamBody),
    Hyper(Incoming),
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            PooledBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            PooledBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PooledBody::H1(b) => b.is_end_stream(),
            PooledBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PooledBody::H1(b) => b.size_hint(),
            PooledBody::Hyper(b) => b.size_hint(),
        }
    }
}
