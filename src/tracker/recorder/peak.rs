//! The global peak of live bytes, found without a shared write per
//! operation.
//!
//! Each lane knows its own live bytes exactly and adds the change to the
//! shared sum from time to time (every [`PUBLISH_OPS`] operations, or once
//! blocks of [`PUBLISH_BYTES`] have come and gone, whichever is first). A
//! lane that grows estimates the whole heap as the other lanes' published
//! figures plus its own exact one; when that reaches the peak so far, it
//! publishes, claims a new peak and bumps the peak's generation. Every lane notices a new
//! generation at its next operation and keeps its per-stack values as they
//! were then (see `lane`).
//!
//! With one thread recording, the estimate is the heap itself and the peak
//! is exact. With several, each other lane's figure is at most
//! [`PUBLISH_OPS`] operations or [`PUBLISH_BYTES`] behind when a peak is
//! claimed, and the per-stack values at the peak are each lane's at its
//! first operation after it.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// A lane publishes after this many operations at the most.
pub(super) const PUBLISH_OPS: u32 = 64;
/// A lane publishes once blocks of this many bytes have been recorded or
/// forgotten since it last did.
pub(super) const PUBLISH_BYTES: i64 = 64 << 10;

/// What every lane reads on its growing operations: written only when a
/// lane publishes or claims a peak, so it stays in every core's cache.
#[repr(align(128))]
pub(super) struct PeakLine {
    /// The sum of the lanes' published live bytes.
    published: AtomicI64,
    /// The highest sum a lane has claimed as a peak.
    peak_bytes: AtomicI64,
    /// How many peaks have been claimed.
    generation: AtomicU64,
    /// The tick of the last claim.
    tick: AtomicU32,
}

static PEAK: PeakLine = PeakLine {
    published: AtomicI64::new(0),
    peak_bytes: AtomicI64::new(0),
    generation: AtomicU64::new(0),
    tick: AtomicU32::new(0),
};

/// The peak's generation: changes whenever a peak is claimed.
#[inline]
pub(super) fn generation() -> u64 {
    PEAK.generation.load(Ordering::Acquire)
}

/// Whether a lane whose own published figure is `own_published` and whose
/// live bytes are `own_live` may be at a new peak.
#[inline]
pub(super) fn may_peak(own_published: i64, own_live: i64) -> bool {
    let r = Ordering::Relaxed;
    PEAK.published.load(r) - own_published + own_live >= PEAK.peak_bytes.load(r)
}

/// Adds a lane's change since it last published; returns the new sum.
#[inline]
pub(super) fn publish(delta: i64) -> i64 {
    PEAK.published.fetch_add(delta, Ordering::Relaxed) + delta
}

/// Claims `total` (a sum just published) as the peak if no higher one was
/// claimed: returns the new generation, or `None`.
pub(super) fn claim(total: i64, now: u32) -> Option<u64> {
    if PEAK.peak_bytes.fetch_max(total, Ordering::Relaxed) > total {
        return None;
    }
    PEAK.tick.store(now, Ordering::Relaxed);
    Some(PEAK.generation.fetch_add(1, Ordering::Release) + 1)
}

/// The tick of the last claimed peak.
pub(super) fn tick() -> u32 {
    PEAK.tick.load(Ordering::Relaxed)
}

/// Forgets every figure (with the lanes' own, under their locks).
pub(super) fn reset() {
    PEAK.published.store(0, Ordering::Relaxed);
    PEAK.peak_bytes.store(0, Ordering::Relaxed);
    PEAK.tick.store(0, Ordering::Relaxed);
}
