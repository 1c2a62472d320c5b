//! What the allocator records: live blocks and per-stack totals.
//!
//! Every recorded block is one 24-byte entry (address → size, stack id,
//! birth time, thread, sampling epoch) in a hash map; stacks are interned so
//! that a block costs a 4-byte id. Per stack the recorder keeps what DHAT's
//! program points keep: total bytes and blocks, summed lifetimes, the
//! current value, its own maximum and the value at the global peak. The value
//! at the global peak is kept lazily (a stack saves its current value the
//! first time it changes after a new peak), so no operation walks all stacks.
//!
//! In sampled mode each recorded block carries the weight of the blocks it
//! stands for (`Z / (1 - e^(-Z/R))` bytes, `1 / (1 - e^(-Z/R))` blocks, where
//! a block of `Z` bytes is sampled with probability `1 - e^(-Z/R)` at a
//! mean gap of `R` bytes): every figure here is then an unbiased estimate, and
//! [`Snapshot::estimated`] says so.
//!
//! The recorder's own memory is allocated with the allocator's reentrancy
//! flag set, so it is never tracked; readers copy out under the lock into
//! buffers they reserved beforehand, so nothing allocates while it is held.
mod filter;
mod live;
mod snapshot;
mod weight;

pub(crate) use filter::{has_live, maybe_recorded, maybe_recorded_at};
pub use snapshot::{
    HeapTotals, LiveBlock, SiteStats, Snapshot, StackId, StackRecord, TrackerMemory, reset,
    snapshot, snapshot_totals, tracker_memory,
};
pub(crate) use weight::epoch_for_mean;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use filter::{filter_add, filter_remove, set_live};
use live::{AddrMap, LiveRec, LiveTable};
use weight::{units_to_blocks, weight};

use crate::sys::lock::RawLocked;
use crate::tracker::untracked;

/// A block to record, as the allocator describes it.
pub(crate) struct NewBlock {
    pub(crate) addr: usize,
    pub(crate) size: usize,
    pub(crate) thread: u16,
    pub(crate) epoch: u8,
    /// The `testing::measure` scope it was allocated in (0: none).
    pub(crate) scope: u32,
}

/// What a measuring scope's blocks are doing (see `testing`).
#[derive(Default)]
struct ScopeRec {
    live_blocks: u64,
    live_bytes: u64,
    /// Allocations per stack made in the scope: (blocks, bytes).
    allocated: AddrMap<(u64, u64)>,
}

/// Per-stack accumulators, in weighted units.
#[derive(Clone, Copy, Debug, Default)]
struct SiteAcc {
    total_bytes: u64,
    total_blocks: u64,
    /// Sum over freed blocks of lifetime (ticks) × block weight.
    lifetime: f64,
    curr_bytes: u64,
    curr_blocks: u64,
    max_bytes: u64,
    max_blocks: u64,
    peak_bytes: u64,
    peak_blocks: u64,
    last_touch: u64,
}

struct StackEntry {
    start: u32,
    len: u32,
    hash: u64,
    next_same_hash: u32,
}

const NO_STACK: u32 = u32::MAX;

pub(crate) struct Recorder {
    frames: Vec<usize>,
    stacks: Vec<StackEntry>,
    sites: Vec<SiteAcc>,
    stack_index: AddrMap<u32>,
    live: LiveTable,
    /// Scope of each live block allocated in a measuring scope.
    scoped: AddrMap<u32>,
    scopes: AddrMap<ScopeRec>,
    curr_bytes: u64,
    curr_blocks: u64,
    max_bytes: u64,
    max_blocks: u64,
    max_tick: u32,
    total_bytes: u64,
    total_blocks: u64,
    sampled_live: u64,
    /// Whether any sampled block was ever recorded (figures are estimates).
    sampled_ever: bool,
    /// Operation counter and the operation at which the global peak was last
    /// reached (see the module docs).
    seq: u64,
    peak_seq: u64,
}

pub(crate) static RECORDER: RawLocked<Recorder> = RawLocked::new(Recorder::new());

impl Recorder {
    const fn new() -> Self {
        Recorder {
            frames: Vec::new(),
            stacks: Vec::new(),
            sites: Vec::new(),
            stack_index: HashMap::with_hasher(BuildHasherDefault::new()),
            live: LiveTable::new(),
            scoped: HashMap::with_hasher(BuildHasherDefault::new()),
            scopes: HashMap::with_hasher(BuildHasherDefault::new()),
            curr_bytes: 0,
            curr_blocks: 0,
            max_bytes: 0,
            max_blocks: 0,
            max_tick: 0,
            total_bytes: 0,
            total_blocks: 0,
            sampled_live: 0,
            sampled_ever: false,
            seq: 0,
            peak_seq: 0,
        }
    }

    fn intern(&mut self, frames: &[usize], hash: u64) -> u32 {
        let mut id = self.stack_index.get(&hash).copied().unwrap_or(NO_STACK);
        let head = id;
        while id != NO_STACK {
            let e = &self.stacks[id as usize];
            if e.hash == hash
                && &self.frames[e.start as usize..(e.start + e.len) as usize] == frames
            {
                return id;
            }
            id = e.next_same_hash;
        }
        let id = self.stacks.len() as u32;
        self.stacks.push(StackEntry {
            start: self.frames.len() as u32,
            len: frames.len() as u32,
            hash,
            next_same_hash: head,
        });
        self.frames.extend_from_slice(frames);
        self.sites.push(SiteAcc::default());
        self.stack_index.insert(hash, id);
        id
    }

    /// Saves a site's value at the global peak before its first change after
    /// that peak.
    fn touch(&mut self, stack: u32) -> &mut SiteAcc {
        let peak_seq = self.peak_seq;
        let seq = self.seq;
        let s = &mut self.sites[stack as usize];
        if s.last_touch <= peak_seq {
            s.peak_bytes = s.curr_bytes;
            s.peak_blocks = s.curr_blocks;
        }
        s.last_touch = seq;
        s
    }

    fn after_growth(&mut self, stack: u32, now: u32) {
        let s = &mut self.sites[stack as usize];
        if s.curr_bytes >= s.max_bytes {
            s.max_bytes = s.curr_bytes;
            s.max_blocks = s.curr_blocks;
        }
        if self.curr_bytes >= self.max_bytes {
            self.max_bytes = self.curr_bytes;
            self.max_blocks = self.curr_blocks;
            self.max_tick = now;
            self.peak_seq = self.seq;
        }
    }

    /// Records a new block; `hash` is the hash of `frames` (see
    /// `stack::capture`).
    pub(crate) fn record_alloc(&mut self, block: NewBlock, frames: &[usize], hash: u64, now: u32) {
        let NewBlock {
            addr,
            size,
            thread,
            epoch,
            scope,
        } = block;
        let stack = self.intern(frames, hash);
        if scope != 0 {
            self.scope_gained(addr, scope, stack, size as u64, true);
        }
        let rec = LiveRec::new(size, thread, epoch, stack, now);
        if let Some(stale) = self.live.insert(addr, rec) {
            // A block we never saw freed (tracking was switched off while it
            // lived): it is gone now that its address is handed out again.
            self.live.insert(addr, stale);
            self.record_free(addr, now);
            self.live.insert(addr, rec);
        }
        let (bytes, blocks) = weight(rec.size(), epoch);
        self.seq += 1;
        let s = self.touch(stack);
        s.total_bytes += bytes;
        s.total_blocks += blocks;
        s.curr_bytes += bytes;
        s.curr_blocks += blocks;
        self.total_bytes += bytes;
        self.total_blocks += blocks;
        self.curr_bytes += bytes;
        self.curr_blocks += blocks;
        if epoch != 0 {
            self.sampled_live += 1;
            self.sampled_ever = true;
        }
        filter_add(addr);
        set_live(true);
        self.after_growth(stack, now);
    }

    /// A block of `scope` became live (allocated, or put back after a
    /// realloc); `counted` adds it to the scope's allocations per stack.
    fn scope_gained(&mut self, addr: usize, scope: u32, stack: u32, size: u64, counted: bool) {
        let Some(s) = self.scopes.get_mut(&(scope as u64)) else {
            return;
        };
        s.live_blocks += 1;
        s.live_bytes += size;
        if counted {
            let e = s.allocated.entry(stack as u64).or_default();
            e.0 += 1;
            e.1 += size;
        }
        self.scoped.insert(addr as u64, scope);
    }

    /// A block left the live set: if it belonged to a scope, the scope
    /// loses it. Returns its scope (0: none).
    fn scope_lost(&mut self, addr: usize, size: u64) -> u32 {
        if self.scoped.is_empty() {
            return 0;
        }
        let Some(scope) = self.scoped.remove(&(addr as u64)) else {
            return 0;
        };
        if let Some(s) = self.scopes.get_mut(&(scope as u64)) {
            s.live_blocks -= 1;
            s.live_bytes -= size;
        }
        scope
    }

    /// Forgets a freed block; returns whether it was recorded.
    pub(crate) fn record_free(&mut self, addr: usize, now: u32) -> bool {
        let Some(rec) = self.live.remove(addr) else {
            return false;
        };
        self.scope_lost(addr, rec.size());
        filter_remove(addr);
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let life = now.wrapping_sub(rec.born) as f64 * blocks as f64;
        let s = self.touch(rec.stack);
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        s.lifetime += life;
        self.curr_bytes -= bytes;
        self.curr_blocks -= blocks;
        if rec.epoch() != 0 {
            self.sampled_live -= 1;
        }
        if self.live.len == 0 {
            set_live(false);
        }
        true
    }

    fn totals(&self) -> HeapTotals {
        HeapTotals {
            live_bytes: self.curr_bytes,
            live_blocks: units_to_blocks(self.curr_blocks),
            peak_bytes: self.max_bytes,
            peak_blocks: units_to_blocks(self.max_blocks),
            peak_at: crate::sys::clock::ticks(self.max_tick),
            total_bytes: self.total_bytes,
            total_blocks: units_to_blocks(self.total_blocks),
        }
    }

    /// Takes a recorded block out for a `realloc`: its weight leaves the
    /// live figures (nothing is counted as freed) until
    /// [`Recorder::finish_realloc`] puts it back. The allocator calls
    /// jemalloc's realloc between the two without holding the lock, so a
    /// large copy never stalls other threads.
    pub(crate) fn take_for_realloc(&mut self, addr: usize) -> Option<TakenBlock> {
        let rec = self.live.remove(addr)?;
        let scope = self.scope_lost(addr, rec.size());
        filter_remove(addr);
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let s = self.touch(rec.stack);
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        self.curr_bytes -= bytes;
        self.curr_blocks -= blocks;
        Some(TakenBlock(rec, scope))
    }

    /// Puts a block taken by [`Recorder::take_for_realloc`] back: at `new`
    /// with `new_size` after a successful realloc (it keeps its stack, counts
    /// as one more block allocated, as in DHAT, and its birth restarts), or
    /// unchanged at `old` when the realloc failed (`new` null).
    /// `thread_scope` is the reallocating thread's measuring scope: a
    /// realloc in the block's own scope counts as one of its allocations.
    pub(crate) fn finish_realloc(
        &mut self,
        taken: TakenBlock,
        old: usize,
        new: usize,
        new_size: usize,
        now: u32,
        thread_scope: u32,
    ) {
        let TakenBlock(rec, scope) = taken;
        let (addr, rec, counted) = if new == 0 {
            (old, rec, false)
        } else {
            (
                new,
                LiveRec::new(new_size, rec.thread(), rec.epoch(), rec.stack, now),
                true,
            )
        };
        if self.live.contains(addr) {
            self.record_free(addr, now);
        }
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let s = self.touch(rec.stack);
        if counted {
            s.total_bytes += bytes;
            s.total_blocks += blocks;
        }
        s.curr_bytes += bytes;
        s.curr_blocks += blocks;
        if counted {
            self.total_bytes += bytes;
            self.total_blocks += blocks;
        }
        self.curr_bytes += bytes;
        self.curr_blocks += blocks;
        self.live.insert(addr, rec);
        if scope != 0 {
            let counted = counted && scope == thread_scope;
            self.scope_gained(addr, scope, rec.stack, rec.size(), counted);
        }
        filter_add(addr);
        set_live(true);
        self.after_growth(rec.stack, now);
    }

    /// Starts keeping the figures of measuring scope `scope`.
    pub(crate) fn open_scope(&mut self, scope: u32) {
        self.scopes.insert(scope as u64, ScopeRec::default());
    }

    /// Forgets scope `scope` and which blocks were its.
    pub(crate) fn close_scope(&mut self, scope: u32) {
        if self.scopes.remove(&(scope as u64)).is_some() {
            self.scoped.retain(|_, s| *s != scope);
        }
    }
}

/// A recorded block between [`Recorder::take_for_realloc`] and
/// [`Recorder::finish_realloc`], with its measuring scope (0: none).
pub(crate) struct TakenBlock(LiveRec, u32);

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

/// Reads a scope's figures (`with_sites`: also per stack). The frames are
/// copied out with tracking off, then into the caller's memory.
pub(crate) fn scope_report(scope: u32, with_sites: bool) -> Option<ScopeReport> {
    let raw = untracked(|| {
        let r = RECORDER.lock();
        let s = r.scopes.get(&(scope as u64))?;
        let frames_of = |stack: u32| {
            let e = &r.stacks[stack as usize];
            r.frames[e.start as usize..(e.start + e.len) as usize].to_vec()
        };
        let mut allocated = Vec::new();
        let mut live: Vec<(Vec<usize>, u64, u64)> = Vec::new();
        if with_sites {
            allocated = s
                .allocated
                .iter()
                .map(|(stack, &(n, b))| (frames_of(*stack as u32), n, b))
                .collect();
            let mut by_stack: AddrMap<(u64, u64)> = HashMap::with_hasher(BuildHasherDefault::new());
            for (addr, sc) in r.scoped.iter() {
                if *sc == scope
                    && let Some(rec) = r.live.shards[LiveTable::shard_of(*addr as usize)].get(addr)
                {
                    let e = by_stack.entry(rec.stack as u64).or_default();
                    e.0 += 1;
                    e.1 += rec.size();
                }
            }
            live = by_stack
                .into_iter()
                .map(|(stack, (n, b))| (frames_of(stack as u32), n, b))
                .collect();
        }
        Some((s.live_blocks, s.live_bytes, allocated, live))
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
