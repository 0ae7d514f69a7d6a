//! WebSocket (HTTP/1.1 `Upgrade`) pass-through, after the request was
//! allowed: the upgrade request goes to the upstream over an HTTP/1.1-only
//! connection; when the upstream answers 101, both connections are taken
//! over from hyper and joined with `copy_bidirectional` in a task of their
//! own, which lives until either side closes or no byte has moved either
//! way for `proxy.idle_timeout` (then both connections are closed). Reloading
//! the config does not touch open tunnels. Any other answer is relayed as an
//! ordinary response.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::RequestBody;
use super::pool::Use;
use super::upstream::Upstream;
use super::{headers, send, upstream_failed, upstream_response};
use crate::base::clock;
use crate::base::http_util::Body;

/// Forwards an upgrade request; on 101 joins the two connections. `id` is
/// the request's, for the log line of a failure.
pub async fn forward(
    upstream: &Arc<Upstream>,
    req: Request<RequestBody>,
    on_client: OnUpgrade,
    id: &HeaderValue,
) -> Response<Body> {
    let sent = send(
        &upstream.upgrade_pool,
        upstream,
        req,
        &[],
        None,
        Use::Upgrade,
    )
    .await;
    let mut res = match sent {
        Ok(sent) => sent,
        Err(e) => return upstream_failed(upstream, &e, id),
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return upstream_response(upstream, res);
    }
    let on_upstream = hyper::upgrade::on(&mut res);
    let label = upstream.label.clone();
    let idle = upstream.idle_timeout;
    tokio::spawn(async move {
        let (client, server) = match tokio::join!(on_client, on_upstream) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(upstream = %label, error = %e, "upgrade did not complete");
                return;
            }
        };
        crate::base::metrics::global().open_tunnels.inc();
        let _open = OpenTunnel;
        let last = Arc::new(AtomicU64::new(clock::mono_ms()));
        // Every byte of the tunnel passes the client side, one way or the other.
        let mut client = Active {
            inner: TokioIo::new(client),
            last: last.clone(),
        };
        let mut server = TokioIo::new(server);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        tokio::select! {
            r = copy => match r {
                Ok((up, down)) => {
                    tracing::debug!(upstream = %label, bytes.up = up, bytes.down = down, "tunnel closed")
                }
                Err(e) => tracing::debug!(upstream = %label, error = %e, "tunnel ended with an error"),
            },
            () = idle_for(&last, idle) => {
                tracing::debug!(upstream = %label, idle_secs = idle.as_secs(), "tunnel closed: idle for proxy.idle_timeout");
            }
        }
    });
    let (mut parts, _) = res.into_parts();
    headers::scrub_response(&mut parts.headers, true);
    Response::from_parts(parts, Either::Left(Full::default()))
}

/// Resolves once `last` is `idle` in the past.
async fn idle_for(last: &AtomicU64, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let quiet = clock::mono_ms().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
    }
}

/// An IO stream that records when it last moved bytes.
struct Active<S> {
    inner: S,
    last: Arc<AtomicU64>,
}

impl<S> Active<S> {
    fn moved(&self, n: usize) {
        if n > 0 {
            self.last.store(clock::mono_ms(), Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts an open tunnel in `portcullis_open_tunnels` until dropped.
struct OpenTunnel;

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        crate::base::metrics::global().open_tunnels.dec();
    }
}
