//! Thread-per-core serving (`server.thread_per_core`, on by default): one
//! worker thread per core, each running a single-threaded tokio runtime
//! (its own event loop and timers, no work stealing). The accept loop
//! stays on the shared runtime and hands each accepted connection to the
//! next worker in turn; from then on the connection, its requests, its
//! watchdog and the upstream connections its requests open (see
//! `pool::set_lane`) are polled by that one thread. Against the shared
//! work-stealing runtime this saves the hand-offs between cores (a woken
//! task notifying an idle worker, which wakes, finds nothing to steal and
//! parks again): see BENCHMARKS.md for the measurements.
//!
//! The workers are started once per process, on the first connection, and
//! live as long as it does; every listener with the mode on shares them.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::conn::connection;
use super::Shared;

/// A connection accepted by the shared runtime, for a worker to serve.
pub(super) struct Job {
    pub shared: Arc<Shared>,
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub stop: watch::Receiver<bool>,
    pub permit: OwnedSemaphorePermit,
    pub client: Option<IpAddr>,
}

struct Workers {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

static WORKERS: OnceLock<Option<Workers>> = OnceLock::new();

/// Hands `job` to the next worker; gives it back when no worker runs (the
/// threads could not be started), for the caller to serve itself.
pub(super) fn hand(job: Job) -> Result<(), Job> {
    let Some(workers) = WORKERS.get_or_init(start) else {
        return Err(job);
    };
    let i = workers.next.fetch_add(1, Ordering::Relaxed) % workers.queues.len();
    workers.queues[i].send(job).map_err(|e| e.0)
}

/// Starts one worker per core; `None` (logged) when a thread or its
/// runtime cannot be started.
fn start() -> Option<Workers> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut queues = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        // The runtime is built on its own thread (a runtime must not be
        // dropped inside another's task, as it would be here if the thread
        // failed to start); the thread says whether it got one.
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(format!("portcullis-worker-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker's runtime; serving on the shared runtime");
                        let _ = ready_tx.send(false);
                        return;
                    }
                };
                let _ = ready_tx.send(true);
                crate::base::transport::pool::set_lane(i);
                rt.block_on(run(rx));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a worker thread; serving on the shared runtime");
            return None;
        }
        if ready_rx.recv() != Ok(true) {
            return None;
        }
        queues.push(tx);
    }
    tracing::debug!(workers = n, "thread-per-core workers started");
    Some(Workers {
        queues,
        next: AtomicUsize::new(0),
    })
}

/// A worker's loop: serves each connection it is handed on this thread.
async fn run(mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        tokio::spawn(serve(job));
    }
}

/// Serves a handed connection on the worker's own event loop.
pub(super) async fn serve(job: Job) {
    let Job {
        shared,
        stream,
        peer,
        stop,
        permit,
        client,
    } = job;
    match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => connection(shared, stream, peer, stop, permit, client).await,
        Err(e) => {
            tracing::debug!(client.addr = %peer, error = %e, "connection lost in hand-off");
            if let Some(key) = client {
                shared.clients.release(key);
            }
        }
    }
}
