//! Switching what the allocator records, and the sampling mean, at run
//! time (the settings themselves are in `settings`).

use std::sync::atomic::Ordering;

use super::init::ensure_init;
use super::recorder;
use super::settings::{MODE, MODE_SAMPLED, Mode, SAMPLE_BYTES, SAMPLE_EPOCH, store_mode};
use super::thread::{STATE_LIVE, THREAD, next_gap};

/// The mode in force.
pub fn mode() -> Mode {
    ensure_init(MODE_SAMPLED);
    Mode::from_code(MODE.load(Ordering::Relaxed))
}

/// Switches the mode for allocations made from now on (see [`Mode`]): at
/// once on the calling thread, and on every other thread at its next
/// countdown event (after it allocates about [`sample_bytes`](super::sample_bytes) more bytes, or
/// at its next allocation in exact mode).
pub fn set_mode(mode: Mode) {
    ensure_init(MODE_SAMPLED);
    store_mode(mode.code());
    if mode != Mode::Exact {
        // Exact mode's records stay out of the free filter: put them in.
        super::thread::untracked(recorder::refilter);
    }
    let _ = THREAD.try_with(|t| t.refresh_fast());
}

/// Sets the mean number of bytes between samples (at least 1): at once on
/// the calling thread, at their next sample on others. Blocks sampled before
/// keep the weight of the mean they were sampled with, so estimates stay
/// unbiased.
pub fn set_sample_bytes(bytes: u64) {
    let bytes = bytes.max(1);
    let epoch = recorder::epoch_for_mean(bytes);
    SAMPLE_BYTES.store(bytes, Ordering::Relaxed);
    SAMPLE_EPOCH.store(epoch, Ordering::Relaxed);
    // The calling thread's pending gap was drawn with the old mean: draw
    // it again, so the new mean applies to it at once.
    let _ = THREAD.try_with(|t| {
        if t.state.get() == STATE_LIVE {
            t.set_gap(next_gap(t, bytes));
        }
    });
}
