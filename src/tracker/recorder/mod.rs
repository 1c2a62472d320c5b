//! What the allocator records: live blocks and per-stack totals.
//!
//! The recorder is split in lanes, one per thread that records (`lanes`):
//! a thread records its blocks in its own lane, under a lock that is biased
//! towards it in exact mode (see `lanes`). Other threads rarely take it:
//! readers copy lanes without it (see `snapshot`), a thread freeing a block
//! of another's lane leaves the free there for the lane to apply (see
//! `lanes`), and only moving such a block for a `realloc`, or a lane with
//! too many frees left, takes it. Two
//! threads recording at once then share no cache line on the common path.
//! A free looks in the freeing thread's lane first, then in the others
//! (without their locks: see [`record_free`]).
//!
//! Every recorded block is one 24-byte entry (address → size, stack slot,
//! birth time, thread, sampling epoch) in its lane's table; stacks are
//! interned per lane to a slot and once globally (`stacks`), so a block
//! costs a 2-byte slot. Per stack each lane keeps what DHAT's program
//! points keep: total bytes and blocks, summed lifetimes, the current value,
//! its own maximum and the value at the global peak (`peak` says how the
//! peak is found and how exact it is); a snapshot sums the lanes.
//!
//! In sampled mode each recorded block carries the weight of the blocks it
//! stands for (`Z / (1 - e^(-Z/R))` bytes, `1 / (1 - e^(-Z/R))` blocks, where
//! a block of `Z` bytes is sampled with probability `1 - e^(-Z/R)` at a
//! mean gap of `R` bytes): every figure here is then an unbiased estimate, and
//! [`Snapshot::estimated`] says so.
//!
//! The recorder's own memory is allocated with the allocator's reentrancy
//! flag set, so it is never tracked; readers copy out into buffers they
//! reserved beforehand.
mod filter;
mod flags;
mod lane;
mod lanes;
mod live;
mod peak;
mod snapshot;
mod stacks;
mod weight;

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::Ordering;

pub(crate) use filter::{has_live, maybe_recorded, maybe_recorded_at, refilter};
pub(crate) use lanes::{
    LANES, fork_child, fork_parent, fork_prepare, index_of, longest_wait, release,
};
pub(crate) use snapshot::collect_stacks;
pub use snapshot::{
    HeapTotals, LiveBlock, OutOfMemory, SiteStats, Snapshot, StackId, StackRecord, TrackerMemory,
    locked_copies, snapshot, try_snapshot,
};
pub(crate) use snapshot::{reset, snapshot_totals, tracker_memory};
pub use stacks::{MAX_STACKS, MAX_STORED_FRAMES, STORE_FULL_FRAME};
pub(crate) use weight::epoch_for_mean;

use live::{AddrMap, LiveRec};
use stacks::STACKS;

use super::settings::{MODE, MODE_EXACT};
use crate::tracker::untracked;

/// A block to record, as the allocator describes it.
pub(crate) struct NewBlock {
    pub(crate) addr: usize,
    pub(crate) size: usize,
    pub(crate) thread: u32,
    pub(crate) epoch: u8,
    /// The `testing::measure` scope it was allocated in (0: none).
    pub(crate) scope: u32,
}

/// Whether exact mode is in force (read under a lane's lock: see `filter`).
fn exact_mode() -> bool {
    MODE.load(Ordering::Relaxed) == MODE_EXACT
}

/// Records a new block in the calling thread's lane (`owner` holds its
/// index; `may_own`: the thread is live and may take one). `hash` is the
/// hash of `frames` (see `stack::capture`). The thread is busy.
#[inline(always)]
pub(crate) fn record_alloc(
    owner: &Cell<u32>,
    may_own: bool,
    block: NewBlock,
    frames: &[usize],
    hash: u64,
    now: u32,
) {
    let mut lane = lanes::lock_own(owner, may_own);
    let filtered = block.epoch != 0 || block.scope != 0 || !exact_mode();
    lane.record_alloc(block, frames, hash, now, filtered);
    drop(lane);
    if stacks::collect_due() {
        collect_stacks(now);
    }
}

/// Runs `f` on the lane that holds `addr` until it says it did: the
/// calling thread's own lane first, then every other. Returns what `f`
/// returned there.
#[inline(always)]
fn in_holding_lane<R>(
    owner: &Cell<u32>,
    addr: usize,
    mut f: impl FnMut(&mut lane::Lane, bool) -> Option<R>,
) -> Option<R> {
    let own = lanes::index_of(owner);
    if own != 0
        && let Some(r) = f(&mut lanes::lock_index(owner.get()), false)
    {
        return Some(r);
    }
    in_other_lanes(own, addr, f)
}

/// [`in_holding_lane`] past the thread's own lane (every lane, the shared
/// lane 0 first, for a thread with none: its blocks are in lane 0).
#[cold]
#[inline(never)]
fn in_other_lanes<R>(
    own: usize,
    addr: usize,
    mut f: impl FnMut(&mut lane::Lane, bool) -> Option<R>,
) -> Option<R> {
    // Lanes that surely do not hold the block are passed without their
    // locks (a free filter's false alarm would otherwise take every one).
    let reading = crate::sys::published::ReadSection::enter();
    let found = (0..lanes::made())
        .filter(|&i| own == 0 || i != own)
        .filter(|&i| holds_racy(lanes::lane(i), addr) != Some(false))
        .find_map(|i| f(&mut lanes::lane(i).lock(), true));
    drop(reading);
    found
}

/// Forgets a freed block; returns whether it was recorded (waiting for
/// any lane it may be in: for frees that must know). The thread is busy.
/// Allocates nothing.
pub(crate) fn record_free_known(owner: &Cell<u32>, addr: usize, now: u32) -> bool {
    in_holding_lane(owner, addr, |lane, remote| {
        lane.remove(addr, now, remote).then_some(())
    })
    .is_some()
}

/// Forgets a freed block. The thread is busy. Allocates nothing.
///
/// A block of another thread's lane is looked for there without the
/// lane's lock, and its free is left for the lane (see `lanes`): a thread
/// freeing another's block never waits for that lane, nor makes its owner
/// wait. Views count a free left as done (see `snapshot`).
#[inline(always)]
pub(crate) fn record_free(owner: &Cell<u32>, addr: usize, now: u32) {
    let own = lanes::index_of(owner);
    if own != 0 && lanes::lock_index(owner.get()).remove(addr, now, false) {
        return;
    }
    free_in_other_lanes(own, addr, now);
}

/// Whether lane `cell` holds a live record of `addr` (one whose free is not
/// left for it), read without its lock: `None` while its owner is in the
/// middle of a change.
fn holds_racy(cell: &lanes::LaneCell, addr: usize) -> Option<bool> {
    let (_, lane) = cell.unlocked();
    let shard = live::LiveTable::shard_of(addr);
    let probe = || {
        for _ in 0..4 {
            // SAFETY: lanes are never freed; the caller is in a read
            // section.
            match unsafe {
                live::Shard::get_racy(
                    std::ptr::addr_of!((*lane).blocks.live.shards[shard]),
                    addr as u64,
                )
            } {
                Ok(found) => return Some(found.is_some()),
                Err(live::Retry::Torn) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    // A free applied meanwhile forgets the record before it frees its slot:
    // found, then not left, then still found, the record is live.
    Some(probe()? && !cell.free_left(addr) && probe()?)
}

/// [`record_free`] past the thread's own lane.
///
/// The lane that holds the block gets the free. A lane whose owner stays in
/// the middle of a change while it is probed (it may have lost its CPU) is
/// unsure; only when no lane surely holds the block is the free left for
/// every unsure lane (a free of a block a lane does not hold is applied as
/// nothing), so that a busy lane's slots do not fill with other lanes'
/// frees.
#[cold]
#[inline(never)]
fn free_in_other_lanes(own: usize, addr: usize, now: u32) {
    let reading = crate::sys::published::ReadSection::enter();
    let mut unsure = [0u64; lanes::MAX_LANES / 64];
    let mut held_by = None;
    for i in (0..lanes::made()).filter(|&i| own == 0 || i != own) {
        match holds_patiently(lanes::lane(i), addr) {
            Some(true) => {
                held_by = Some(i);
                break;
            }
            Some(false) => {}
            None => unsure[i / 64] |= 1 << (i % 64),
        }
    }
    match held_by {
        Some(i) => leave_free(lanes::lane(i), addr, now),
        None => {
            for i in (0..lanes::made()).filter(|&i| unsure[i / 64] & (1 << (i % 64)) != 0) {
                leave_free(lanes::lane(i), addr, now);
            }
        }
    }
    drop(reading);
}

/// [`holds_racy`], probed again for a moment while the lane's owner is in
/// the middle of a change (which takes well under a microsecond unless the
/// owner has lost its CPU).
fn holds_patiently(cell: &lanes::LaneCell, addr: usize) -> Option<bool> {
    for _ in 0..BUSY_PROBES {
        if let Some(held) = holds_racy(cell, addr) {
            return Some(held);
        }
        std::hint::spin_loop();
    }
    None
}

/// How many times a lane whose owner is mid-change is probed.
const BUSY_PROBES: u32 = 32;

/// Leaves the free of `addr` for lane `cell`, or, with no room left, takes
/// the lane and applies it there.
fn leave_free(cell: &'static lanes::LaneCell, addr: usize, now: u32) {
    if cell.leave_free(addr, now) {
        cell.apply_left_if_crowded();
    } else {
        cell.lock().remove(addr, now, true);
    }
}

/// Takes a recorded block out for a `realloc`: its weight leaves the live
/// figures (nothing is counted as freed) until [`finish_realloc`] puts it
/// back. The allocator calls jemalloc's realloc between the two without
/// holding a lock, so a large copy never stalls other threads.
pub(crate) fn take_for_realloc(owner: &Cell<u32>, addr: usize) -> Option<TakenBlock> {
    in_holding_lane(owner, addr, |lane, remote| {
        lane.take_for_realloc(addr, remote)
    })
}

/// Puts a block taken by [`take_for_realloc`] back, in the calling
/// thread's lane: at `new` with `new_size` after a successful realloc, or
/// unchanged at `old` when it failed (`new` null). `thread_scope` is the
/// reallocating thread's measuring scope. `draw` is uniform in (0, 1]: a
/// sampled block that shrank keeps its record only when it is at most the
/// chance [`weight::keep_on_shrink`] gives, so that it stays in the sample
/// with the probability its new size has (a block that shrinks to a few
/// bytes would otherwise weigh a whole sampling gap). A block that loses
/// its record leaves the figures as if it had never been sampled.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_realloc(
    owner: &Cell<u32>,
    may_own: bool,
    taken: TakenBlock,
    old: usize,
    new: usize,
    new_size: usize,
    now: u32,
    thread_scope: u32,
    draw: f64,
) {
    if new != 0
        && draw > weight::keep_on_shrink(taken.rec.size(), new_size as u64, taken.rec.epoch())
    {
        return;
    }
    let mut lane = lanes::lock_own(owner, may_own);
    let filtered = !taken.rec.unfiltered() || !exact_mode();
    lane.finish_realloc(taken, old, new, new_size, now, thread_scope, filtered);
}

/// A recorded block between [`take_for_realloc`] and [`finish_realloc`]:
/// its record, its stack's global id and its measuring scope (0: none). A
/// reset between the two makes it unknown, as the reset made every other
/// block.
pub(crate) struct TakenBlock {
    rec: LiveRec,
    global: u32,
    scope: u32,
    /// The stacks' reset count when it was taken.
    resets: u64,
}

/// Starts keeping the figures of measuring scope `scope`.
pub(crate) fn open_scope(scope: u32) {
    lanes::for_each(|lane| lane.open_scope(scope));
}

/// Forgets scope `scope` and which blocks were its.
pub(crate) fn close_scope(scope: u32) {
    lanes::for_each(|lane| lane.close_scope(scope));
}

/// A measuring scope's figures now: its live blocks, and per stack what it
/// allocated and what of it is still live.
pub(crate) struct ScopeReport {
    pub(crate) live_blocks: u64,
    pub(crate) live_bytes: u64,
    /// (frames, allocated blocks, allocated bytes)
    pub(crate) allocated: Vec<(Vec<usize>, u64, u64)>,
    /// (frames, live blocks, live bytes)
    pub(crate) live: Vec<(Vec<usize>, u64, u64)>,
}

/// Reads a scope's figures (`with_sites`: also per stack), summed over
/// the lanes. The figures are gathered with tracking off, then copied into
/// the caller's memory.
pub(crate) fn scope_report(scope: u32, with_sites: bool) -> Option<ScopeReport> {
    let raw = untracked(|| {
        let mut open = false;
        let (mut live_blocks, mut live_bytes) = (0, 0);
        // Per global stack id: (allocated blocks, bytes), (live blocks, bytes).
        let mut allocated: AddrMap<(u64, u64)> = HashMap::with_hasher(BuildHasherDefault::new());
        let mut live: AddrMap<(u64, u64)> = HashMap::with_hasher(BuildHasherDefault::new());
        lanes::for_each(|lane| {
            let Some(s) = lane.scopes.open.get(&(scope as u64)) else {
                return;
            };
            open = true;
            live_blocks += s.live_blocks;
            live_bytes += s.live_bytes;
            if !with_sites {
                return;
            }
            let global = |slot: u64| lane.sites.globals.as_slice()[slot as usize] as u64;
            for (slot, &(n, b)) in s.allocated.iter() {
                let e = allocated.entry(global(*slot)).or_default();
                e.0 += n;
                e.1 += b;
            }
            for (addr, sc) in lane.scopes.scoped.iter() {
                if *sc == scope
                    && let Some(rec) = lane.blocks.live.get(*addr as usize)
                {
                    let e = live.entry(global(rec.stack() as u64)).or_default();
                    e.0 += 1;
                    e.1 += rec.size();
                }
            }
        });
        if !open {
            return None;
        }
        let stacks = STACKS.lock();
        let with_frames = |m: AddrMap<(u64, u64)>| -> Vec<(Vec<usize>, u64, u64)> {
            m.into_iter()
                .map(|(g, (n, b))| (stacks.frames_of(g as u32).to_vec(), n, b))
                .collect()
        };
        Some((
            live_blocks,
            live_bytes,
            with_frames(allocated),
            with_frames(live),
        ))
    })?;
    // Copied into the caller's (tracked) memory; the untracked originals are
    // dropped untracked.
    let report = ScopeReport {
        live_blocks: raw.0,
        live_bytes: raw.1,
        allocated: raw.2.iter().map(|(f, n, b)| (f.to_vec(), *n, *b)).collect(),
        live: raw.3.iter().map(|(f, n, b)| (f.to_vec(), *n, *b)).collect(),
    };
    untracked(|| drop(raw));
    Some(report)
}
