//! The one read API of the tracker: a consistent copy of what the recorder
//! knows ([`snapshot`]), its totals alone, its own memory, and reset.

use std::time::Duration;

use super::filter::{FILTER, filter_remove, set_live};
use super::live::{LIVE_SHARDS, LiveRec, map_bytes};
use super::weight::{BLOCK_UNIT, SAMPLE_MEANS, units_to_blocks, weight};
use super::{RECORDER, Recorder, SiteAcc, StackEntry};
use crate::sys::clock::{TICK, now_tick, ticks};
use crate::tracker::untracked;

/// Identifies an interned stack in a [`Snapshot`] (an index into
/// [`Snapshot::stacks`]).
pub type StackId = u32;

/// Totals per interned stack, in bytes and blocks (estimates in sampled
/// mode). The fields follow DHAT's program points.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SiteStats {
    /// Bytes allocated here since tracking began (`tb`).
    pub total_bytes: u64,
    /// Blocks allocated here since tracking began (`tbk`; a `realloc` counts
    /// as one more block, as in DHAT).
    pub total_blocks: u64,
    /// Sum of the lifetimes of the blocks freed so far (`tl`, without the
    /// live ones).
    pub freed_lifetime: Duration,
    /// Live bytes now (`eb`).
    pub live_bytes: u64,
    /// Live blocks now (`ebk`).
    pub live_blocks: u64,
    /// This stack's own maximum of live bytes (`mb`).
    pub max_bytes: u64,
    /// Live blocks when that maximum was reached (`mbk`).
    pub max_blocks: u64,
    /// Live bytes at the time of the global peak (`gb`).
    pub at_peak_bytes: u64,
    /// Live blocks at the time of the global peak (`gbk`).
    pub at_peak_blocks: u64,
}

/// One interned stack: its return addresses (innermost first, leakscope's own
/// frames included; `symbols` trims them) and its totals.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StackRecord {
    /// Return addresses, innermost first.
    pub frames: Vec<usize>,
    /// What was allocated from this stack.
    pub stats: SiteStats,
}

/// One live block.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct LiveBlock {
    /// The block's address.
    pub addr: usize,
    /// Its size in bytes (as requested).
    pub size: u64,
    /// The stack that allocated it.
    pub stack: StackId,
    /// When it was allocated (or last reallocated), since the recorder started.
    pub born: Duration,
    /// Index of the allocating thread (in order of first allocation, from 0).
    pub thread: u16,
    /// The bytes this block stands for (its size in exact mode).
    pub est_bytes: u64,
    /// The number of blocks it stands for (1 in exact mode).
    pub est_blocks: f64,
}

/// Totals of the whole recorded heap (estimates in sampled mode).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HeapTotals {
    /// Live bytes now.
    pub live_bytes: u64,
    /// Live blocks now.
    pub live_blocks: u64,
    /// The global peak of live bytes (`tg`).
    pub peak_bytes: u64,
    /// Live blocks at that peak.
    pub peak_blocks: u64,
    /// When the peak was reached, since the recorder started.
    pub peak_at: Duration,
    /// Bytes allocated since tracking began.
    pub total_bytes: u64,
    /// Blocks allocated since tracking began.
    pub total_blocks: u64,
}

/// A consistent copy of everything the recorder knows at one moment.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// When the snapshot was taken, since the recorder started.
    pub taken_at: Duration,
    /// True when any figure is an estimate from sampled blocks.
    pub estimated: bool,
    /// The live blocks, in no particular order.
    pub blocks: Vec<LiveBlock>,
    /// Every stack seen so far, indexed by [`StackId`].
    pub stacks: Vec<StackRecord>,
    /// Totals of the recorded heap.
    pub heap: HeapTotals,
}

/// Copies the recorder's state. The lock is held only for plain copies into
/// buffers reserved beforehand, so allocating threads wait for a memcpy, not
/// for this function's formatting work.
///
/// Live blocks are copied one shard (1/256 of the table) per lock hold, so
/// while other threads allocate, [`Snapshot::blocks`] is a union of shard
/// copies taken a moment apart rather than one instant; the per-stack totals
/// and [`Snapshot::heap`] are one instant, taken first.
pub fn snapshot() -> Snapshot {
    // Scratch buffers are tracker memory: reserved and dropped untracked, so
    // a snapshot never shows up in the heap it measures. Only the result
    // handed to the caller is the caller's own allocation.
    let mut raw = RawCopy::default();
    let total = RECORDER.lock().live.len;
    untracked(|| raw.reserve_blocks(total + total / 16 + 1024));
    for shard in 0..LIVE_SHARDS {
        loop {
            let r = RECORDER.lock();
            let table = &r.live.shards[shard];
            let n = table.len();
            if n <= raw.blocks.capacity() - raw.blocks.len() {
                raw.blocks.extend(table.iter().map(|(k, v)| (*k, *v)));
                break;
            }
            drop(r);
            untracked(|| raw.reserve_blocks(n + n / 8 + 16));
        }
    }
    // Stacks after blocks: stack ids only grow, so every copied block's
    // stack is in the copy.
    loop {
        let (stacks, frames) = {
            let r = RECORDER.lock();
            (r.stacks.len(), r.frames.len())
        };
        untracked(|| raw.reserve_stacks(stacks, frames));
        if raw.copy_stacks(&RECORDER.lock()) {
            break;
        }
    }
    let now = now_tick();
    let snap = raw.to_snapshot(now);
    untracked(|| drop(raw));
    snap
}

/// The recorder's state copied under the lock, converted after it.
#[derive(Default)]
struct RawCopy {
    blocks: Vec<(u64, LiveRec)>,
    sites: Vec<SiteAcc>,
    spans: Vec<(u32, u32)>,
    frames: Vec<usize>,
    heap: HeapTotals,
    peak_seq: u64,
    estimated: bool,
}

impl RawCopy {
    /// Reserves room for `additional` more blocks and touches it, so that
    /// the page faults of a fresh buffer happen here, not under the lock.
    fn reserve_blocks(&mut self, additional: usize) {
        self.blocks.reserve(additional);
        let spare = self.blocks.spare_capacity_mut();
        // SAFETY: writing zero bytes into uninitialised spare capacity; the
        // length is unchanged, so nothing reads them as values.
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0, spare.len()) };
    }

    fn reserve_stacks(&mut self, stacks: usize, frames: usize) {
        self.sites.reserve(stacks + 64);
        self.spans.reserve(stacks + 64);
        self.frames.reserve(frames + 64 * 32);
    }

    /// Copies the stacks and totals without allocating; false when a buffer
    /// is too small (the recorder grew since `reserve_stacks`).
    fn copy_stacks(&mut self, r: &Recorder) -> bool {
        if r.stacks.len() > self.sites.capacity() || r.frames.len() > self.frames.capacity() {
            return false;
        }
        self.sites.extend(r.sites.iter().copied());
        self.spans.extend(r.stacks.iter().map(|e| (e.start, e.len)));
        self.frames.extend_from_slice(&r.frames);
        self.heap = r.totals();
        self.peak_seq = r.peak_seq;
        self.estimated = r.sampled_ever;
        true
    }

    fn to_snapshot(&self, now: u32) -> Snapshot {
        let stacks = self
            .spans
            .iter()
            .zip(&self.sites)
            .map(|(&(start, len), s)| {
                let (pb, pk) = if s.last_touch <= self.peak_seq {
                    (s.curr_bytes, s.curr_blocks)
                } else {
                    (s.peak_bytes, s.peak_blocks)
                };
                StackRecord {
                    frames: self.frames[start as usize..(start + len) as usize].to_vec(),
                    stats: SiteStats {
                        total_bytes: s.total_bytes,
                        total_blocks: units_to_blocks(s.total_blocks),
                        freed_lifetime: TICK.mul_f64(s.lifetime / BLOCK_UNIT as f64),
                        live_bytes: s.curr_bytes,
                        live_blocks: units_to_blocks(s.curr_blocks),
                        max_bytes: s.max_bytes,
                        max_blocks: units_to_blocks(s.max_blocks),
                        at_peak_bytes: pb,
                        at_peak_blocks: units_to_blocks(pk),
                    },
                }
            })
            .collect();
        let blocks = self
            .blocks
            .iter()
            // Only a reset() between the two copies leaves a block whose
            // stack is not in the copy.
            .filter(|(_, rec)| (rec.stack as usize) < self.spans.len())
            .map(|&(addr, rec)| {
                let (b, k) = weight(rec.size(), rec.epoch());
                LiveBlock {
                    addr: addr as usize,
                    size: rec.size(),
                    stack: rec.stack,
                    born: ticks(rec.born),
                    thread: rec.thread(),
                    est_bytes: b,
                    est_blocks: k as f64 / BLOCK_UNIT as f64,
                }
            })
            .collect();
        Snapshot {
            taken_at: ticks(now),
            estimated: self.estimated,
            blocks,
            stacks,
            heap: self.heap,
        }
    }
}

/// Drops every record (live blocks, stacks, totals): tracking starts afresh.
/// Blocks allocated before stay allocated; they are simply no longer known.
pub fn reset() {
    untracked(|| {
        let mut r = RECORDER.lock();
        let old = std::mem::replace(&mut *r, Recorder::new());
        for addr in old.live.keys() {
            filter_remove(addr as usize);
        }
        set_live(false);
        drop(r);
        drop(old);
    });
}

/// The recorder's heap totals alone (cheap: no copy of blocks or stacks).
pub fn snapshot_totals() -> HeapTotals {
    RECORDER.lock().totals()
}

/// Memory the tracker itself holds, by part (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackerMemory {
    /// Fixed tables (the free filter and the sampling epochs).
    pub fixed: u64,
    /// The live-block table.
    pub live_table: u64,
    /// Interned stacks and their totals.
    pub stacks: u64,
    /// Live blocks recorded.
    pub live_blocks: u64,
}

impl TrackerMemory {
    /// Memory per live block, not counting the fixed part.
    pub fn per_live_block(&self) -> f64 {
        if self.live_blocks == 0 {
            return 0.0;
        }
        (self.live_table + self.stacks) as f64 / self.live_blocks as f64
    }
}

/// What the tracker's own data structures take now.
pub fn tracker_memory() -> TrackerMemory {
    let r = RECORDER.lock();
    TrackerMemory {
        fixed: (std::mem::size_of_val(&FILTER) + std::mem::size_of_val(&SAMPLE_MEANS)) as u64,
        live_table: r.live.bytes(),
        stacks: (r.frames.capacity() * std::mem::size_of::<usize>()
            + r.stacks.capacity() * std::mem::size_of::<StackEntry>()
            + r.sites.capacity() * std::mem::size_of::<SiteAcc>()) as u64
            + map_bytes(&r.stack_index),
        live_blocks: r.live.len as u64,
    }
}
