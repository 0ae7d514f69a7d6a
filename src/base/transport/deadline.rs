//! The response-head deadline of proxied requests, on one timer per client
//! connection.
//!
//! `tokio::time::timeout` builds a timer for every request: it registers
//! in the runtime's timer wheel under a lock when first polled and leaves
//! it under the lock again when dropped, though the upstream nearly always
//! answers long before the deadline. A [`HeadTimer`] keeps one timer per
//! client connection instead, lent to each request that has to wait for
//! its upstream and given back when that request has its answer: moving a
//! registered timer to a later deadline is one atomic exchange in tokio (the
//! wheel moves it when the earlier deadline comes), so a request on a
//! keep-alive connection waits for its upstream without touching the wheel.
//!
//! The timer is lent to one request at a time. HTTP/2 requests of the same
//! connection run side by side: one that finds the timer lent out gets a
//! timer of its own, as `tokio::time::timeout` would give it. A request whose
//! answer is ready at its first poll never borrows the timer.
//!
//! A timer given back fires once at its deadline if no later request moved
//! it, and wakes the connection's task for nothing; that is one wake-up per
//! idle connection, against two timer-wheel locks per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The deadline passed before the future was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// One client connection's timer, lent to its requests in turn.
#[derive(Default)]
pub struct HeadTimer {
    idle: Mutex<Option<Pin<Box<Sleep>>>>,
}

pin_project_lite::pin_project! {
    /// `fut` with a deadline (see [`HeadTimer::timeout`]).
    pub struct Timed<'a, F> {
        #[pin]
        fut: F,
        deadline: Instant,
        lease: Lease<'a>,
    }
}

/// The timer a [`Timed`] borrowed, if it has one yet; given back on drop.
struct Lease<'a> {
    home: &'a HeadTimer,
    sleep: Option<Pin<Box<Sleep>>>,
}

// === impl HeadTimer ===

impl HeadTimer {
    /// A connection's timer (made when a request first needs it).
    pub fn new() -> HeadTimer {
        HeadTimer::default()
    }

    /// `fut`, or [`Elapsed`] if it is not ready within `limit` from now.
    pub fn timeout<F: Future>(&self, limit: Duration, fut: F) -> Timed<'_, F> {
        Timed {
            fut,
            deadline: Instant::now() + limit,
            lease: Lease {
                home: self,
                sleep: None,
            },
        }
    }

    /// The connection's timer set to `deadline`: the idle one when it is
    /// not lent out, else a new one.
    fn borrow(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        match idle {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `sleep` for the next request, unless another was given back first.
    fn give_back(&self, sleep: Pin<Box<Sleep>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.is_none() {
            *idle = Some(sleep);
        }
    }

    /// True when a timer waits to be lent (for tests).
    #[cfg(test)]
    fn holds_one(&self) -> bool {
        self.idle.lock().unwrap().is_some()
    }
}

// === impl Timed ===

impl<F: Future> Future for Timed<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            // Given back now, not when the caller drops this: the answer's
            // body may keep this future's owner alive for a long time.
            this.lease.release();
            return Poll::Ready(Ok(v));
        }
        let deadline = *this.deadline;
        let home = this.lease.home;
        let sleep = this
            .lease
            .sleep
            .get_or_insert_with(|| home.borrow(deadline));
        ready!(sleep.as_mut().poll(cx));
        this.lease.release();
        Poll::Ready(Err(Elapsed))
    }
}

// === impl Lease ===

impl Lease<'_> {
    fn release(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.home.give_back(sleep);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_futures_never_borrow_the_timer() {
        let timer = HeadTimer::new();
        let r = timer.timeout(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(r, Ok(7));
        assert!(!timer.holds_one(), "no timer was made");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_future_times_out_at_its_deadline() {
        let timer = HeadTimer::new();
        let started = Instant::now();
        let r = timer
            .timeout(Duration::from_secs(3), std::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(timer.holds_one(), "the timer was given back");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_is_reused_with_a_later_or_an_earlier_deadline() {
        let timer = HeadTimer::new();
        let slow = |d| tokio::time::sleep(Duration::from_millis(d));
        // Ready after a wait: the timer is made, then given back.
        let r = timer.timeout(Duration::from_secs(5), slow(100)).await;
        assert_eq!(r, Ok(()));
        assert!(timer.holds_one());
        // Reused with a later deadline: the old one (5 s) must not fire it.
        let started = Instant::now();
        let r = timer
            .timeout(Duration::from_secs(30), std::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Reused with an earlier deadline than its last one.
        let r = timer.timeout(Duration::from_secs(60), slow(10)).await;
        assert_eq!(r, Ok(()));
        let started = Instant::now();
        let r = timer
            .timeout(Duration::from_secs(2), std::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_whose_deadline_passed_while_idle_still_times_the_next_request() {
        let timer = HeadTimer::new();
        let r = timer
            .timeout(
                Duration::from_millis(50),
                tokio::time::sleep(Duration::from_millis(10)),
            )
            .await;
        assert_eq!(r, Ok(()));
        // The idle timer's deadline passes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let r = timer
            .timeout(Duration::from_secs(4), std::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        let r = timer
            .timeout(
                Duration::from_secs(4),
                tokio::time::sleep(Duration::from_secs(3)),
            )
            .await;
        assert_eq!(r, Ok(()), "a request answered before its deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_side_by_side_each_keep_their_own_deadline() {
        let timer = HeadTimer::new();
        let started = Instant::now();
        let a = timer.timeout(Duration::from_secs(2), std::future::pending::<()>());
        let b = timer.timeout(
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_secs(4)),
        );
        let c = timer.timeout(Duration::from_secs(1), std::future::pending::<()>());
        let (a, b, c) = tokio::join!(
            async {
                let r = a.await;
                (r, started.elapsed())
            },
            async {
                let r = b.await;
                (r, started.elapsed())
            },
            async {
                let r = c.await;
                (r, started.elapsed())
            },
        );
        assert_eq!(a, (Err(Elapsed), Duration::from_secs(2)));
        assert_eq!(b, (Ok(()), Duration::from_secs(4)));
        assert_eq!(c, (Err(Elapsed), Duration::from_secs(1)));
        assert!(timer.holds_one());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_gives_the_timer_back() {
        let timer = HeadTimer::new();
        let mut fut = Box::pin(timer.timeout(Duration::from_secs(9), std::future::pending::<()>()));
        // One poll borrows it.
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert!(!timer.holds_one(), "lent out");
        drop(fut);
        assert!(timer.holds_one(), "given back");
    }
}
