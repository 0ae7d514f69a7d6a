//! An open-loop load generator with a fixed request schedule, for latency at
//! a given rate (wrk keeps a fixed number of requests in flight instead, which
//! hides queueing: coordinated omission).
//!
//! Request `i` is due at `start + i / rate` and goes out on keep-alive
//! connection `i % connections`. A pacer thread releases each request at its
//! due time with `std::thread::sleep` (high-resolution timers, about 50 µs of
//! timer slack) rather than tokio's 1 ms timer wheel, so arrivals are spread
//! out instead of leaving in bursts on each millisecond tick. Latency runs
//! from the moment the request was handed to its idle connection, or from its
//! due time when the connection was still busy with the previous request then
//! (that wait is the server's doing and is counted); the pacer's own wake-up
//! slack is never counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Latency samples and failures of one run.
pub struct Outcome {
    /// Nanoseconds per completed request, sorted.
    pub latencies_ns: Vec<u64>,
    /// Requests that failed (connection or protocol errors, non-200 answers).
    pub errors: u64,
    /// Requests whose connection was still busy at their due time.
    pub queued: u64,
}

impl Outcome {
    /// The `q`-quantile (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies_ns.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.latencies_ns[i] as f64 / 1000.0
    }
}

/// Sends `rate` requests per second for `duration` to `addr` over
/// `connections` keep-alive connections; each request is `GET path` with `headers`.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    rate: f64,
    duration: Duration,
    connections: usize,
) -> Outcome {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let mut parsed: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("valid header name");
            let value = HeaderValue::from_str(v).expect("valid header value");
            (name, value)
        })
        .collect();
    parsed.push((
        http::header::HOST,
        HeaderValue::from_str(&addr.to_string()).expect("host"),
    ));
    let start = Instant::now() + Duration::from_millis(50);
    // Hard stop well after the schedule ends, whatever the server does.
    let deadline = start + duration + Duration::from_secs(10);
    let mut queues = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for w in 0..connections {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        queues.push(tx);
        let parsed = parsed.clone();
        let path = path.to_owned();
        let mine = (w..total).step_by(connections).len();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            let mut queued = 0u64;
            let Ok(stream) = TcpStream::connect(addr).await else {
                return (lat, mine as u64, 0);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) = http1::handshake(TokioIo::new(stream)).await else {
                return (lat, mine as u64, 0);
            };
            tokio::spawn(conn);
            let mut free_since = Instant::now();
            while let Some(due) = rx.recv().await {
                if Instant::now() > deadline {
                    break;
                }
                // Busy past the due time: the wait counts. Idle: count from now,
                // not from the due time the pacer may have overslept.
                let sent = if free_since > due {
                    queued += 1;
                    due
                } else {
                    Instant::now()
                };
                let mut req = Request::get(path.as_str())
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                for (k, v) in &parsed {
                    req.headers_mut().insert(k.clone(), v.clone());
                }
                let ok = match sender.send_request(req).await {
                    Ok(res) => {
                        let status = res.status();
                        res.into_body().collect().await.is_ok() && status == 200
                    }
                    Err(_) => false,
                };
                free_since = Instant::now();
                if ok {
                    lat.push(free_since.duration_since(sent).as_nanos() as u64);
                } else if sender.ready().await.is_err() {
                    break;
                }
            }
            let errors = (mine - lat.len()) as u64;
            (lat, errors, queued)
        }));
    }
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if now > deadline {
                break;
            }
            if now < due {
                std::thread::sleep(due - now);
            }
            if queues[i % connections].send(due).is_err() {
                break;
            }
        }
    });
    let mut out = Outcome {
        latencies_ns: Vec::with_capacity(total),
        errors: 0,
        queued: 0,
    };
    for t in tasks {
        if let Ok((lat, e, q)) = t.await {
            out.latencies_ns.extend(lat);
            out.errors += e;
            out.queued += q;
        }
    }
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    out.latencies_ns.sort_unstable();
    out
}
