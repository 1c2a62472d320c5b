//! The tracker's global settings, the mode and the sampling mean, as the
//! statics every thread reads on its slow path: a leaf, which the paths,
//! the recorder and `init` read, and `mode` (the public switches) writes.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::gate::update_mode;

/// What the allocator tracks.
///
/// Chosen by `LEAKSCOPE_MODE` when the first allocation happens (default
/// [`Mode::Sampled`]), or at run time with [`set_mode`](super::set_mode). A switch affects
/// allocations made from then on: blocks allocated before a switch to
/// [`Mode::Exact`] are not in the recorder, and blocks recorded before a
/// switch away from it stay recorded until they are freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Nothing: plain jemalloc.
    Off,
    /// Per-thread counters of bytes and blocks (exact), no stacks.
    Counters,
    /// Counters, plus a stack for a random sample of blocks (one every
    /// [`sample_bytes`](super::sample_bytes) bytes on average); heap figures are unbiased
    /// estimates.
    Sampled,
    /// Counters, plus a stack for every block: exact heap figures.
    Exact,
}

// The codes keep two properties the fast paths rely on: every mode that
// tracks anything is above `MODE_OFF`, and the counting modes (counters,
// sampled) are exactly those with `COUNTING_BIT` set, so the free path
// tests one bit.
pub(super) const MODE_UNINIT: u8 = 0;
pub(super) const MODE_OFF: u8 = 1;
pub(super) const MODE_COUNTERS: u8 = 2;
pub(super) const MODE_EXACT: u8 = 4;
pub(super) const MODE_SAMPLED: u8 = 6;
const COUNTING_BIT: u8 = 2;

/// Whether a mode code is one whose allocations take the fast path
/// (counted, and counted down to the next sample).
#[inline(always)]
pub(super) const fn counting(code: u8) -> bool {
    code & COUNTING_BIT != 0
}

impl Mode {
    pub(super) fn code(self) -> u8 {
        match self {
            Mode::Off => MODE_OFF,
            Mode::Counters => MODE_COUNTERS,
            Mode::Sampled => MODE_SAMPLED,
            Mode::Exact => MODE_EXACT,
        }
    }

    pub(super) fn from_code(code: u8) -> Mode {
        match code {
            MODE_OFF => Mode::Off,
            MODE_COUNTERS => Mode::Counters,
            MODE_EXACT => Mode::Exact,
            _ => Mode::Sampled,
        }
    }

    /// Parses `off`, `counters`, `sampled` or `exact` (as in `LEAKSCOPE_MODE`).
    pub fn parse(text: &str) -> Option<Mode> {
        Self::parse_bytes(text.as_bytes())
    }

    pub(super) fn parse_bytes(text: &[u8]) -> Option<Mode> {
        match text {
            b"off" => Some(Mode::Off),
            b"counters" => Some(Mode::Counters),
            b"sampled" => Some(Mode::Sampled),
            b"exact" => Some(Mode::Exact),
            _ => None,
        }
    }

    /// The mode's name as `LEAKSCOPE_MODE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Counters => "counters",
            Mode::Sampled => "sampled",
            Mode::Exact => "exact",
        }
    }
}

/// Default mean number of bytes between samples (as jemalloc and Go).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

pub(super) static MODE: AtomicU8 = AtomicU8::new(MODE_UNINIT);
pub(super) static SAMPLE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_BYTES);
/// The recorder epoch of the current sample mean.
pub(super) static SAMPLE_EPOCH: AtomicU8 = AtomicU8::new(1);

/// Stores a mode code, and whether it is off in the gate.
pub(super) fn store_mode(code: u8) {
    update_mode(|| {
        MODE.store(code, Ordering::Relaxed);
        code != MODE_OFF
    });
}

/// The mean number of bytes between samples in [`Mode::Sampled`].
pub fn sample_bytes() -> u64 {
    SAMPLE_BYTES.load(Ordering::Relaxed)
}
