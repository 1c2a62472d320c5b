//! A lock-free filter over recorded addresses: the free path asks it whether
//! a block may be recorded before it takes the recorder's lock.

use std::sync::atomic::{AtomicU8, Ordering};

use super::super::gate::{GATE_LIVE, gate, set_flag};

pub(super) const FILTER_BITS: u32 = 18;
/// A counting filter over recorded addresses, read without the lock by the
/// free path: a zero means "certainly not recorded". Counters saturate at 255
/// and then stay (always "maybe").
pub(super) static FILTER: [AtomicU8; 1 << FILTER_BITS] =
    [const { AtomicU8::new(0) }; 1 << FILTER_BITS];

/// The filter slot of an address: one byte per 16 bytes of address space,
/// repeating every 4 MiB. Not hashed on purpose: blocks freed close together
/// in time tend to lie close together in memory, so their slots share cache
/// lines and the check on the free path rarely misses the cache.
#[inline(always)]
pub(super) fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &FILTER[(addr >> 4) & ((1 << FILTER_BITS) - 1)]
}

/// Whether the recorder holds at least one live block (the gate's live
/// flag): lets frees skip the filter when nothing is recorded.
#[inline(always)]
pub(crate) fn has_live() -> bool {
    gate() & GATE_LIVE != 0
}

/// Sets or clears the gate's live flag (under the recorder's lock).
#[inline]
pub(super) fn set_live(live: bool) {
    set_flag(GATE_LIVE, live);
}

/// Whether `addr` may be a recorded block (no false negatives).
#[inline(always)]
pub(crate) fn maybe_recorded(addr: usize) -> bool {
    maybe_recorded_at(gate(), addr)
}

/// [`maybe_recorded`] with the gate's flags already read.
#[inline(always)]
pub(crate) fn maybe_recorded_at(gate: u8, addr: usize) -> bool {
    gate & GATE_LIVE != 0 && filter_slot(addr).load(Ordering::Relaxed) != 0
}

#[inline]
pub(super) fn filter_add(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v != u8::MAX {
        s.store(v + 1, Ordering::Relaxed);
    }
}

#[inline]
pub(super) fn filter_remove(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v != u8::MAX && v != 0 {
        s.store(v - 1, Ordering::Relaxed);
    }
}
