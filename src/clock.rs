//! A coarse clock for the per-request path.
//!
//! Reading the system clock costs a `clock_gettime` each time; the idle
//! tracking of every connection read and write, and the session expiry check
//! of every request, only need to be right to a few tens of milliseconds. A
//! background thread started by the server stamps two atomics every
//! [`TICK`]; readers load them. Until the thread runs (unit tests, library
//! use without a server), readers fall back to the precise clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the coarse clock advances.
pub const TICK: Duration = Duration::from_millis(20);

static START: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since [`START`] plus one (0 = not ticking yet).
static MONO_MS: AtomicU64 = AtomicU64::new(0);
/// Unix time in seconds (0 = not ticking yet).
static UNIX_SECS: AtomicU64 = AtomicU64::new(0);
static TICKER: Once = Once::new();

fn precise_mono_ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn precise_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn stamp() {
    MONO_MS.store(precise_mono_ms() + 1, Ordering::Relaxed);
    UNIX_SECS.store(precise_unix_secs(), Ordering::Relaxed);
}

/// Starts the ticking thread (once per process; later calls do nothing).
pub fn start() {
    TICKER.call_once(|| {
        stamp();
        let spawned = std::thread::Builder::new()
            .name("portcullis-clock".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                stamp();
            });
        if let Err(e) = spawned {
            // Readers keep using the precise clock.
            MONO_MS.store(0, Ordering::Relaxed);
            UNIX_SECS.store(0, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot start the coarse clock thread; using the system clock");
        }
    });
}

/// Milliseconds on a monotonic clock, to within [`TICK`].
pub fn mono_ms() -> u64 {
    match MONO_MS.load(Ordering::Relaxed) {
        0 => precise_mono_ms(),
        t => t - 1,
    }
}

/// Unix time in seconds, to within [`TICK`].
pub fn unix_secs() -> u64 {
    match UNIX_SECS.load(Ordering::Relaxed) {
        0 => precise_unix_secs(),
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_follows_the_precise_one() {
        start();
        let a = mono_ms();
        std::thread::sleep(TICK * 5);
        let b = mono_ms();
        assert!(b > a, "monotonic clock advanced ({a} -> {b})");
        assert!(b - a >= TICK.as_millis() as u64 * 3, "{a} -> {b}");
        let unix = precise_unix_secs();
        assert!(unix_secs().abs_diff(unix) <= 1);
        assert!(precise_mono_ms() + 1 >= mono_ms());
    }
}
