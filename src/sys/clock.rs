//! The clocks: the monotonic clock in nanoseconds, and the recorder's coarse
//! tick (ages and lifetimes). Both are read through the vDSO, so reading
//! them makes no syscall and allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Length of one recorder tick (the clock used for ages and lifetimes).
pub(crate) const TICK: Duration = Duration::from_millis(4);

static START_NS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds on `clock` (`CLOCK_MONOTONIC` for precise waits,
/// `CLOCK_MONOTONIC_COARSE` for a few-millisecond clock that costs less).
#[inline]
pub(crate) fn monotonic_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clocks used
    // here are served by the vDSO (no syscall).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The coarse monotonic clock in nanoseconds (a few ms resolution).
#[inline]
pub(crate) fn coarse_ns() -> u64 {
    monotonic_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Starts the tick clock (idempotent).
pub(crate) fn start_ticks() {
    if START_NS.load(Ordering::Relaxed) == 0 {
        let now = coarse_ns().max(1);
        let _ = START_NS.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Ticks since the clock started (wraps after ~198 days).
#[inline]
pub(crate) fn now_tick() -> u32 {
    let ns = coarse_ns();
    (ns.saturating_sub(START_NS.load(Ordering::Relaxed)) / TICK.as_nanos() as u64) as u32
}

/// Time since the tick clock started (at the process's first allocation,
/// so about the process's age).
pub(crate) fn since_start() -> Duration {
    let start = START_NS.load(Ordering::Relaxed);
    if start == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(coarse_ns().saturating_sub(start))
}

/// A tick count as a duration.
#[inline]
pub(crate) fn ticks(t: u32) -> Duration {
    TICK * t
}
