//! An open-loop load generator with a fixed request schedule, for latency at
//! a given rate (wrk keeps a fixed number of requests in flight instead, which
//! hides queueing: coordinated omission).
//!
//! Request `i` is due at `start + i / rate` and goes out on keep-alive
//! connection `i % connections`. A pacer thread releases requests at their
//! due times with `std::thread::sleep` (high-resolution timers) rather than
//! tokio's 1 ms timer wheel, so arrivals are spread out instead of leaving in
//! bursts on each millisecond tick. It sleeps at least [`MIN_SLEEP`] at a
//! time and then releases every request that has come due: at high rates
//! that is a handful at once, and the pacer's wake-ups stay well below one
//! per request (each costs CPU on the two cores the servers share).
//!
//! Latency runs from the moment the request was handed to its idle
//! connection, or from its due time when the connection was still busy with
//! the previous request then (that wait is the server's doing and is
//! counted); the pacer's own wake-up slack is never counted.
//!
//! The client side is deliberately thin, as wrk's is: the request bytes are
//! encoded once, each request is one `write`, and the answer is read until its
//! head and `content-length` body are complete; only the status line and that
//! header are looked at. The generator's CPU per request is about what the
//! kernel charges for the two system calls, so it takes as little as it can
//! from the cores the server under test runs on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The pacer never sleeps for less than this (it releases what came due meanwhile).
const MIN_SLEEP: Duration = Duration::from_micros(50);

/// Latency samples and failures of one run (or of several, merged).
#[derive(Clone, Default)]
pub struct Outcome {
    /// Nanoseconds per completed request, sorted.
    pub latencies_ns: Vec<u64>,
    /// Requests that failed (connection or protocol errors, non-200 answers).
    pub errors: u64,
    /// Requests whose connection was still busy at their due time.
    pub queued: u64,
}

impl Outcome {
    /// Adds `other`'s samples and counts to these.
    pub fn merge(&mut self, other: Outcome) {
        self.latencies_ns.extend(other.latencies_ns);
        self.latencies_ns.sort_unstable();
        self.errors += other.errors;
        self.queued += other.queued;
    }

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

/// The encoded request: `GET path` with `headers`, and `Host: addr` unless
/// `headers` name the host (the reverse proxies route by it).
fn encode(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// How far `buf` holds a complete answer: `Some((status, total length))`
/// once the head is complete (the body length from `content-length`, 0 when
/// absent), `None` while the head is still arriving.
fn answer_len(buf: &[u8]) -> Option<Result<(u16, usize), ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ());
    let parsed = head.and_then(|head| {
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(())?;
        let mut body = 0;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    body = v.trim().parse::<usize>().map_err(|_| ())?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(()); // not expected from the servers measured here
                }
            }
        }
        Ok((status, end + body))
    });
    Some(parsed)
}

/// One request on `stream`: write it, read the whole answer. True for a 200.
async fn exchange(stream: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> bool {
    if stream.write_all(req).await.is_err() {
        return false;
    }
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = answer_len(buf) {
            let Ok((status, total)) = r else { return false };
            while buf.len() < total {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            // Keep-alive, one request at a time: nothing may follow the answer.
            return status == 200 && buf.len() == total;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
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
    let req: std::sync::Arc<[u8]> = encode(addr, path, headers).into();
    let start = Instant::now() + Duration::from_millis(50);
    // Hard stop well after the schedule ends, whatever the server does.
    let deadline = start + duration + Duration::from_secs(10);
    let mut queues = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for w in 0..connections {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        queues.push(tx);
        let req = req.clone();
        let mine = (w..total).step_by(connections).len();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            let mut queued = 0u64;
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return (lat, mine as u64, 0);
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
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
                let ok = exchange(&mut stream, &req, &mut buf).await;
                free_since = Instant::now();
                if !ok {
                    break; // the connection is in an unknown state: stop using it
                }
                lat.push(free_since.duration_since(sent).as_nanos() as u64);
            }
            let errors = (mine - lat.len()) as u64;
            (lat, errors, queued)
        }));
    }
    let pacer = std::thread::spawn(move || {
        let mut i = 0;
        while i < total {
            let now = Instant::now();
            if now > deadline {
                break;
            }
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if now < due {
                std::thread::sleep((due - now).max(MIN_SLEEP));
                continue;
            }
            // Everything due by now goes out.
            while i < total && start + Duration::from_secs_f64(i as f64 / rate) <= now {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if queues[i % connections].send(due).is_err() {
                    return;
                }
                i += 1;
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
