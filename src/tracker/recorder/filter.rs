//! A lock-free filter over recorded addresses: a free asks it whether a
//! block may be recorded before it looks in the lanes.
//!
//! Lanes update it under their own locks, so two lanes may update one slot
//! at once: every update is an atomic read-modify-write. In exact mode
//! (outside measuring scopes) every block is recorded, and a free in exact
//! mode looks in the lanes anyway, so those records stay out of the filter
//! (a read-modify-write per operation would cost more than the filter saves)
//! and the gate's unfiltered flag says that some record is not in it: while
//! it is set, every free is taken as maybe recorded. Leaving exact mode puts
//! them in ([`refilter`]), which clears the flag.

use std::sync::atomic::{AtomicU8, Ordering};

use super::super::gate::{GATE_LIVE, GATE_UNFILTERED, gate};
use super::lanes;
use super::live::LIVE_SHARDS;

pub(super) const FILTER_BITS: u32 = 18;
/// A counting filter over recorded addresses, read without any lock by the
/// free path: a zero means "certainly not recorded" (unless the gate's
/// unfiltered flag is set). Counters saturate at 255 and then stay (always
/// "maybe").
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

/// Whether `addr` may be a recorded block (no false negatives).
#[inline(always)]
pub(crate) fn maybe_recorded(addr: usize) -> bool {
    maybe_recorded_at(gate(), addr)
}

/// [`maybe_recorded`] with the gate's flags already read. The unfiltered
/// flag is set only while the live flag is (an unfiltered record is a live
/// one; a lane sets the unfiltered flag just before the live one and clears
/// it just before, while the record is still its own), so one test answers
/// while nothing is recorded.
#[inline(always)]
pub(crate) fn maybe_recorded_at(gate: u8, addr: usize) -> bool {
    gate & GATE_LIVE != 0
        && (filter_slot(addr).load(Ordering::Relaxed) | (gate & GATE_UNFILTERED)) != 0
}

#[inline]
pub(super) fn filter_add(addr: usize) {
    let _ = filter_slot(addr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        (v != u8::MAX).then_some(v + 1)
    });
}

#[inline]
pub(super) fn filter_remove(addr: usize) {
    let _ = filter_slot(addr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        (v != u8::MAX && v != 0).then_some(v - 1)
    });
}

/// Puts every record kept out of the filter into it, lane by lane and
/// shard by shard (one shard, 1/256 of a lane, per lock hold, so that an
/// allocating thread never waits long), after a switch away from exact
/// mode. Lanes read the mode under their locks: a record made before a
/// shard's turn is put in, and one made after it goes in the filter from the
/// start.
pub(crate) fn refilter() {
    for i in 0..lanes::made() {
        let lane = lanes::lane(i);
        for shard in 0..LIVE_SHARDS {
            if !lane.lock().filter_shard(shard) {
                break;
            }
        }
    }
}
