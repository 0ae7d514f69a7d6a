//! Upstream apps for the reverse-proxy tests, each a real server on
//! 127.0.0.1 with an ephemeral port, run on one background tokio runtime
//! (so tests on different runtimes can share them):
//!
//! - [`stream`]`()`: `GET` answers `?bytes=N` zero bytes in 256 KiB chunks,
//!   pausing 1 ms every 16 MiB; `?stall=1` sends 1 KiB and then nothing;
//! - [`sink`]`()`: `POST` reads the whole body and answers the byte count;
//! - [`silent`]`()`: accepts connections and never answers;
//! - [`websocket`]`()`: WebSocket echo that greets first (`hello`), then echoes;
//! - [`https_echo`]`()`: TLS (certificate from a test CA, ALPN h2 and http/1.1)
//!   answering JSON with the HTTP version and the identity header it saw.

use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

pub use crate::common::ca::TestCa;

/// Chunk size of the generated bodies.
pub const CHUNK: usize = 256 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// The runtime the upstreams run on.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("upstream runtime")
    })
}

fn bind() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Serves `handler` over HTTP/1.1 and HTTP/2 (prior knowledge) on a fresh port.
fn serve_http<F, Fut, B>(handler: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (l, port) = bind();
    rt().spawn(async move {
        let l = TcpListener::from_std(l).unwrap();
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

/// Zero bytes, `remaining` of them, in [`CHUNK`]s without copying; with
/// `pause`, sleeps 1 ms every 64 chunks.
pub struct Zeros {
    remaining: u64,
    sent: u64,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    slow: bool,
}

impl Zeros {
    /// `n` bytes; `slow` adds the small pauses.
    pub fn new(n: u64, slow: bool) -> Zeros {
        Zeros {
            remaining: n,
            sent: 0,
            pause: None,
            slow,
        }
    }
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(p) = self.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        self.sent += 1;
        if self.slow && self.sent % 64 == 0 {
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.pause.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// The streaming server; returns its port.
pub fn stream() -> u16 {
    serve_http(|req: Request<Incoming>| async move {
        if query_u64(&req, "stall").is_some() {
            let (tx, body) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(&ZEROS[..1024]))))
                    .await;
                tokio::time::sleep(Duration::from_secs(600)).await;
                drop(tx);
            });
            let body = http_body_util::StreamBody::new(tokio_stream_from(body));
            return Response::new(http_body_util::Either::Right(body));
        }
        let n = query_u64(&req, "bytes").unwrap_or(0);
        Response::new(http_body_util::Either::Left(Zeros::new(n, true)))
    })
}

/// A receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The upload sink; answers `{"bytes": N}`.
pub fn sink() -> u16 {
    serve_http(|req: Request<Incoming>| async move {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        n += d.len() as u64;
                    }
                }
                Err(_) => break,
            }
        }
        Response::new(Full::new(Bytes::from(format!("{{\"bytes\":{n}}}"))))
    })
}

/// A server that accepts, reads, and never answers.
pub fn silent() -> u16 {
    let (l, port) = bind();
    rt().spawn(async move {
        let l = TcpListener::from_std(l).unwrap();
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// The WebSocket echo server: sends `hello`, then echoes every text and binary message.
pub fn websocket() -> u16 {
    let (l, port) = bind();
    rt().spawn(async move {
        let l = TcpListener::from_std(l).unwrap();
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                if ws.send(Message::text("hello")).await.is_err() {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        return;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// An HTTPS echo with `ca`'s server certificate: answers
/// `{"version": "HTTP/2.0", "user": <x-auth-user>, "host": <host or :authority>}`.
pub fn https_echo(ca: &TestCa) -> u16 {
    let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(ca.chain.clone(), ca.key.clone_key())
    .unwrap();
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
    let (l, port) = bind();
    rt().spawn(async move {
        let l = TcpListener::from_std(l).unwrap();
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let host = req
                        .uri()
                        .authority()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| h("host"));
                    let body = serde_json::json!({
                        "version": format!("{:?}", req.version()),
                        "user": h("x-auth-user"),
                        "host": host,
                    });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// Resident set size of process `pid` in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}

/// A plain HTTP/1.1 connection to the gateway on `addr` (for bodies reqwest cannot stream).
pub async fn h1(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Either<Zeros, Full<Bytes>>> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}
