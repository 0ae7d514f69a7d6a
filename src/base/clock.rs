//! A coarse clock for the per-request path.
//!
//! The idle tracking of every connection read and write, and the session
//! expiry check of every request, only need to be right to a few
//! milliseconds. On Linux they read the kernel's coarse clocks
//! (`CLOCK_MONOTONIC_COARSE`, `CLOCK_REALTIME_COARSE`): served from the vDSO
//! without reading the hardware counter, a few nanoseconds each, advanced by
//! the kernel's own tick (1–4 ms), so no thread of ours has to wake up to
//! keep a clock (an idle gateway stays idle). Elsewhere the precise clocks
//! stand in.

#[cfg(not(target_os = "linux"))]
use std::sync::OnceLock;
#[cfg(not(target_os = "linux"))]
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on a monotonic clock (from an arbitrary start), to within a
/// few milliseconds.
#[cfg(target_os = "linux")]
pub fn mono_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Unix time in seconds, to within a few milliseconds.
#[cfg(target_os = "linux")]
pub fn unix_secs() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(t.tv_sec).unwrap_or(0)
}

/// Milliseconds on a monotonic clock (from the first reading).
#[cfg(not(target_os = "linux"))]
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Unix time in seconds.
#[cfg(not(target_os = "linux"))]
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix time in seconds, exact (for timestamps that are stored or compared
/// with other machines' clocks: session creation and expiry, token times).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    #[test]
    fn coarse_clocks_follow_the_precise_ones() {
        // Each coarse reading is bracketed by precise ones, so a preemption
        // between them widens the window instead of failing the test.
        let before_a = Instant::now();
        let a = mono_ms();
        let after_a = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        let before_b = Instant::now();
        let b = mono_ms();
        let after_b = Instant::now();
        let ms = |d: Duration| d.as_millis() as u64;
        let (least, most) = (
            ms(before_b.duration_since(after_a)),
            ms(after_b.duration_since(before_a)),
        );
        // Both readings may be a kernel tick (at most 10 ms) behind, and
        // each is truncated to the millisecond.
        assert!(
            b >= a && b - a + 20 >= least && b - a <= most + 20,
            "{a} -> {b}, between {least} and {most} ms"
        );
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(unix_secs().abs_diff(unix) <= 1);
    }
}
