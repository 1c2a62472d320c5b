//! A lane: one thread's share of the recorder (its live blocks, the
//! per-stack figures of what it allocated, its totals), behind a lock of
//! its own that the owning thread takes uncontended. Another thread takes it
//! only to free or move a block the lane holds, or to read it.
//!
//! Stacks are interned twice: in the lane, by hash and frames, to a local
//! slot (no shared lock on the common path), and on a slot's first use in
//! the global store, which gives it the id snapshots use.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::filter::{filter_add, filter_remove};
use super::flags::{lane_emptied, lane_filled, lane_unfiltered};
use super::live::{AddrMap, LiveRec, LiveTable, map_bytes};
use super::peak::{self, PUBLISH_BYTES, PUBLISH_OPS};
use super::stacks::{self, STACKS, STORE_FULL_FRAME, STORE_FULL_HASH, StackTable};
use super::weight::weight;
use super::{NewBlock, TakenBlock};
use crate::sys::published::Published;

/// Per-stack accumulators, in weighted units.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SiteAcc {
    pub(super) total_bytes: u64,
    pub(super) total_blocks: u64,
    /// Sum over freed blocks of lifetime (ticks) × block weight.
    pub(super) lifetime: f64,
    pub(super) curr_bytes: u64,
    pub(super) curr_blocks: u64,
    pub(super) max_bytes: u64,
    pub(super) max_blocks: u64,
    pub(super) peak_bytes: u64,
    pub(super) peak_blocks: u64,
    pub(super) last_touch: u64,
}

impl SiteAcc {
    /// The values at the last peak the lane noticed (`peak_seq`): saved on
    /// the first change after it, or the current ones if none came since.
    pub(super) fn at_peak(&self, peak_seq: u64) -> (u64, u64) {
        if self.last_touch <= peak_seq {
            (self.curr_bytes, self.curr_blocks)
        } else {
            (self.peak_bytes, self.peak_blocks)
        }
    }
}

/// What a measuring scope's blocks in this lane are doing (see `testing`).
#[derive(Default)]
pub(super) struct ScopeRec {
    pub(super) live_blocks: u64,
    pub(super) live_bytes: u64,
    /// Allocations per slot made in the scope: (blocks, bytes).
    pub(super) allocated: AddrMap<(u64, u64)>,
}

/// One thread's share of the recorder (see the module docs).
pub(crate) struct Lane {
    pub(super) live: LiveTable,
    /// The stacks this lane has met, by slot.
    slots: StackTable,
    /// Each slot's global id, and its figures.
    pub(super) globals: Published<u32>,
    pub(super) sites: Published<SiteAcc>,
    /// Global id → slot, for blocks moved in from another lane.
    by_global: AddrMap<u32>,
    /// Scope of each live block allocated in a measuring scope.
    pub(super) scoped: AddrMap<u32>,
    pub(super) scopes: AddrMap<ScopeRec>,
    pub(super) curr_bytes: u64,
    pub(super) curr_blocks: u64,
    pub(super) total_bytes: u64,
    pub(super) total_blocks: u64,
    /// Whether any sampled block was ever recorded (figures are estimates).
    pub(super) sampled_ever: bool,
    /// Operation counter, and the operation at which the lane last noticed
    /// (or made) a new global peak: the per-stack values at that peak are
    /// kept lazily (a stack saves its current value the first time it
    /// changes after it), so no operation walks all stacks.
    pub(super) seq: u64,
    pub(super) peak_seq: u64,
    /// The peak generation the lane has noticed.
    pub(super) seen_generation: u64,
    /// The live bytes as last published, and what is left before the lane
    /// publishes again: [`PUBLISH_BYTES`] less the bytes of each block
    /// recorded or forgotten since, and less a [`PUBLISH_BYTES`] /
    /// [`PUBLISH_OPS`] share per operation.
    published: i64,
    publish_budget: i64,
    /// Live records not in the free filter (see `filter`).
    unfiltered: usize,
}

impl Lane {
    pub(super) const fn new() -> Self {
        Lane {
            live: LiveTable::new(),
            slots: StackTable::new(),
            globals: Published::new(),
            sites: Published::new(),
            by_global: HashMap::with_hasher(BuildHasherDefault::new()),
            scoped: HashMap::with_hasher(BuildHasherDefault::new()),
            scopes: HashMap::with_hasher(BuildHasherDefault::new()),
            curr_bytes: 0,
            curr_blocks: 0,
            total_bytes: 0,
            total_blocks: 0,
            sampled_ever: false,
            seq: 0,
            peak_seq: 0,
            seen_generation: 0,
            published: 0,
            publish_budget: PUBLISH_BYTES,
            unfiltered: 0,
        }
    }

    /// The slot of `frames`, interning them here (and globally, the first
    /// time) if they are new to this lane.
    #[inline(always)]
    fn intern(&mut self, frames: &[usize], hash: u64, now: u32) -> u32 {
        if let Some(slot) = self.slots.find(frames, hash) {
            return slot;
        }
        self.intern_new(frames, hash, now)
    }

    /// [`Lane::intern`] of a stack this lane has not met.
    #[inline(never)]
    fn intern_new(&mut self, frames: &[usize], hash: u64, now: u32) -> u32 {
        let interned = STACKS.lock().intern_bounded(frames, hash, now);
        match interned {
            Ok(global) => self.add_slot(global, frames, hash),
            // The store is full: the block counts in its stand-in stack.
            Err(full) => match self.by_global.get(&(full as u64)) {
                Some(&slot) => slot,
                None => self.add_slot(full, &[STORE_FULL_FRAME], STORE_FULL_HASH),
            },
        }
    }

    /// Drops the stacks no live block of this lane was allocated from (and
    /// no open measuring scope counts), interning the others in `store`,
    /// the global store being rebuilt: their slots and global ids are
    /// renumbered, and every live record follows. The figures of a dropped
    /// stack (what was allocated and freed from it) are gone with it; the
    /// lane's totals keep them.
    pub(super) fn collect(&mut self, store: &mut StackTable) {
        let mut keep: Vec<bool> = self
            .sites
            .as_slice()
            .iter()
            .map(|s| s.curr_blocks > 0)
            .collect();
        for scope in self.scopes.values() {
            for &slot in scope.allocated.keys() {
                keep[slot as usize] = true;
            }
        }
        let mut renumbered = vec![u32::MAX; keep.len()];
        let mut slots = StackTable::new();
        let mut globals = Published::new();
        let mut sites = Published::new();
        let mut by_global: AddrMap<u32> = HashMap::with_hasher(BuildHasherDefault::new());
        for (old, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let frames = self.slots.frames_of(old as u32);
            let hash = self.slots.hash_of(old as u32);
            let global = store.intern(frames, hash);
            let slot = slots.push(frames, hash);
            globals.push(global);
            sites.push(self.sites.as_slice()[old]);
            by_global.insert(global as u64, slot);
            renumbered[old] = slot;
        }
        for shard in self.live.shards.iter_mut() {
            shard.for_each_mut(|_, rec| {
                *rec = rec.relabelled(renumbered[rec.stack() as usize], rec.unfiltered());
            });
        }
        for scope in self.scopes.values_mut() {
            scope.allocated = scope
                .allocated
                .drain()
                .map(|(slot, v)| (renumbered[slot as usize] as u64, v))
                .collect();
        }
        self.slots = slots;
        self.globals = globals;
        self.sites = sites;
        self.by_global = by_global;
    }

    /// Adds a slot for stack `global`, which this lane has no slot for.
    fn add_slot(&mut self, global: u32, frames: &[usize], hash: u64) -> u32 {
        let slot = self.slots.push(frames, hash);
        self.globals.push(global);
        self.sites.push(SiteAcc::default());
        self.by_global.insert(global as u64, slot);
        slot
    }

    /// The slot of global stack `global` (a block moved in from another
    /// lane), copying its frames from the global table if it is new here.
    fn slot_of_global(&mut self, global: u32) -> u32 {
        if let Some(&slot) = self.by_global.get(&(global as u64)) {
            return slot;
        }
        let stacks = STACKS.lock();
        let slot = self.add_slot(global, stacks.frames_of(global), stacks.hash_of(global));
        drop(stacks);
        slot
    }

    /// At the start of every operation: a peak claimed since the lane's
    /// last operation happened before this one.
    #[inline(always)]
    fn notice_peak(&mut self) {
        let generation = peak::generation();
        if generation != self.seen_generation {
            self.seen_generation = generation;
            self.peak_seq = self.seq;
        }
    }

    /// Saves a site's value at the global peak before its first change after
    /// that peak.
    #[inline(always)]
    fn touch(&mut self, slot: u32) -> &mut SiteAcc {
        let peak_seq = self.peak_seq;
        let seq = self.seq;
        let s = &mut self.sites.as_mut_slice()[slot as usize];
        if s.last_touch <= peak_seq {
            s.peak_bytes = s.curr_bytes;
            s.peak_blocks = s.curr_blocks;
        }
        s.last_touch = seq;
        s
    }

    /// After an operation on a block of `bytes`: publishes the lane's live
    /// bytes when due (at once when `now`: the caller is not the lane's
    /// owner, whose figures would otherwise wait for the owner's next
    /// operation).
    #[inline(always)]
    fn after_op(&mut self, bytes: u64, now: bool) {
        self.publish_budget -= bytes as i64 + PUBLISH_BYTES / PUBLISH_OPS as i64;
        if now || self.publish_budget < 0 {
            self.publish();
        }
    }

    fn publish(&mut self) -> i64 {
        let delta = self.curr_bytes as i64 - self.published;
        self.published = self.curr_bytes as i64;
        self.publish_budget = PUBLISH_BYTES;
        peak::publish(delta)
    }

    /// Gives the memory of an empty live table back (a lane whose thread
    /// exits: the next owner may need far less).
    pub(super) fn trim(&mut self) {
        if self.live.len == 0 {
            self.live = LiveTable::new();
        }
    }

    /// Publishes what has not been (a lane whose thread exits, or read by a
    /// snapshot), and notices a peak claimed since its last operation.
    pub(super) fn settle(&mut self) {
        self.notice_peak();
        if self.curr_bytes as i64 != self.published {
            self.publish();
        }
    }

    /// After a block grew `slot`'s live figures: its own maximum, and the
    /// global peak.
    #[inline(always)]
    fn after_growth(&mut self, slot: u32, now: u32) {
        let s = &mut self.sites.as_mut_slice()[slot as usize];
        if s.curr_bytes >= s.max_bytes {
            s.max_bytes = s.curr_bytes;
            s.max_blocks = s.curr_blocks;
        }
        if peak::may_peak(self.published, self.curr_bytes as i64) {
            let total = self.publish();
            if let Some(generation) = peak::claim(total, now) {
                self.seen_generation = generation;
                self.peak_seq = self.seq;
            }
        }
    }

    /// Records a new block; `hash` is the hash of `frames` (see
    /// `stack::capture`). `filtered`: whether the free filter must know it.
    #[inline(always)]
    pub(super) fn record_alloc(
        &mut self,
        block: NewBlock,
        frames: &[usize],
        hash: u64,
        now: u32,
        filtered: bool,
    ) {
        self.notice_peak();
        let NewBlock {
            addr,
            size,
            thread,
            epoch,
            scope,
        } = block;
        let slot = self.intern(frames, hash, now);
        let rec = LiveRec::new(size, thread, epoch, slot, now, !filtered);
        self.insert(addr, rec, now);
        if scope != 0 {
            self.scope_gained(addr, scope, slot, rec.size(), true);
        }
        let (bytes, blocks) = weight(rec.size(), epoch);
        self.join(slot, bytes, blocks, true);
        self.sampled_ever |= epoch != 0;
        self.after_growth(slot, now);
        self.after_op(bytes, false);
    }

    /// Puts a record in the table and the filter.
    #[inline(always)]
    fn insert(&mut self, addr: usize, rec: LiveRec, now: u32) {
        if let Some(stale) = self.live.insert(addr, rec) {
            // A block this lane never saw freed (tracking was switched off
            // while it lived): it is gone now that its address is handed
            // out again.
            self.live.insert(addr, stale);
            self.remove(addr, now, false);
            self.live.insert(addr, rec);
        }
        // The gate's live flag first: the unfiltered flag is set only while
        // it is (see `filter::maybe_recorded_at`).
        if self.live.len == 1 {
            lane_filled();
        }
        if rec.unfiltered() {
            if self.unfiltered == 0 {
                lane_unfiltered(true);
            }
            self.unfiltered += 1;
        } else {
            filter_add(addr);
        }
    }

    /// Takes a record out of the table and the filter.
    #[inline(always)]
    fn take(&mut self, addr: usize) -> Option<LiveRec> {
        let rec = self.live.remove(addr)?;
        if rec.unfiltered() {
            self.unfiltered -= 1;
            if self.unfiltered == 0 {
                lane_unfiltered(false);
            }
        } else {
            filter_remove(addr);
        }
        if self.live.len == 0 {
            lane_emptied();
        }
        Some(rec)
    }

    /// Forgets a freed block; returns whether this lane held it. `remote`:
    /// the caller is not the lane's owner.
    #[inline(always)]
    pub(super) fn remove(&mut self, addr: usize, now: u32, remote: bool) -> bool {
        self.notice_peak();
        let Some((rec, _, bytes, blocks)) = self.leave(addr) else {
            return false;
        };
        self.sites.as_mut_slice()[rec.stack() as usize].lifetime +=
            now.wrapping_sub(rec.born) as f64 * blocks as f64;
        self.after_op(bytes, remote);
        true
    }

    /// Takes a block out of the table, the filter, its scope and the live
    /// figures (its own stack's and the lane's): what freeing it and
    /// moving it for a realloc share. Returns its record, its scope and its
    /// weight (bytes, blocks).
    #[inline(always)]
    fn leave(&mut self, addr: usize) -> Option<(LiveRec, u32, u64, u64)> {
        let rec = self.take(addr)?;
        let scope = self.scope_lost(addr, rec.size());
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let s = self.touch(rec.stack());
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        self.curr_bytes -= bytes;
        self.curr_blocks -= blocks;
        Some((rec, scope, bytes, blocks))
    }

    /// Adds a block of weight (`bytes`, `blocks`) to the live figures of
    /// `slot` and the lane, and to the totals when `counted` (an allocation,
    /// not a block put back): what recording a block and putting one back
    /// after a realloc share.
    #[inline(always)]
    fn join(&mut self, slot: u32, bytes: u64, blocks: u64, counted: bool) {
        self.seq += 1;
        let s = self.touch(slot);
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
    }

    /// Takes a recorded block out for a `realloc`: its weight leaves the
    /// live figures (nothing is counted as freed) until
    /// [`Lane::finish_realloc`] puts it back, in this lane or another.
    pub(super) fn take_for_realloc(&mut self, addr: usize, remote: bool) -> Option<TakenBlock> {
        self.notice_peak();
        let (rec, scope, bytes, _) = self.leave(addr)?;
        let global = self.globals.as_slice()[rec.stack() as usize];
        self.after_op(bytes, remote);
        Some(TakenBlock {
            rec,
            global,
            scope,
            resets: stacks::resets(),
        })
    }

    /// Puts a block taken by [`Lane::take_for_realloc`] back: at `new` with
    /// `new_size` after a successful realloc (it keeps its stack, counts as
    /// one more block allocated, as in DHAT, and its birth restarts), or
    /// unchanged at `old` when the realloc failed (`new` null).
    /// `thread_scope` is the reallocating thread's measuring scope: a
    /// realloc in the block's own scope counts as one of its allocations.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_realloc(
        &mut self,
        taken: TakenBlock,
        old: usize,
        new: usize,
        new_size: usize,
        now: u32,
        thread_scope: u32,
        filtered: bool,
    ) {
        self.notice_peak();
        let TakenBlock {
            rec,
            global,
            scope,
            resets,
        } = taken;
        if resets != stacks::resets() {
            return;
        }
        let slot = self.slot_of_global(global);
        let (addr, rec, counted) = if new == 0 {
            (old, rec, false)
        } else {
            (new, rec.moved(new_size, now), true)
        };
        let rec = rec.relabelled(slot, !filtered);
        self.insert(addr, rec, now);
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.join(slot, bytes, blocks, counted);
        if scope != 0 {
            let counted = counted && scope == thread_scope;
            self.scope_gained(addr, scope, slot, rec.size(), counted);
        }
        self.after_growth(slot, now);
        self.after_op(bytes, false);
    }

    /// A block of `scope` became live (allocated, or put back after a
    /// realloc); `counted` adds it to the scope's allocations per stack.
    fn scope_gained(&mut self, addr: usize, scope: u32, slot: u32, size: u64, counted: bool) {
        let s = self.scopes.entry(scope as u64).or_default();
        s.live_blocks += 1;
        s.live_bytes += size;
        if counted {
            let e = s.allocated.entry(slot as u64).or_default();
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

    /// Starts scope `scope` afresh (whatever its blocks did before it was
    /// opened, such as `testing`'s probe, is forgotten).
    pub(super) fn open_scope(&mut self, scope: u32) {
        self.close_scope(scope);
        self.scopes.insert(scope as u64, ScopeRec::default());
    }

    /// Forgets scope `scope` and which blocks were its.
    pub(super) fn close_scope(&mut self, scope: u32) {
        if self.scopes.remove(&(scope as u64)).is_some() {
            self.scoped.retain(|_, s| *s != scope);
        }
    }

    /// Puts the live records of shard `shard` that this lane keeps out of
    /// the free filter into it; returns whether any such record is left.
    pub(super) fn filter_shard(&mut self, shard: usize) -> bool {
        if self.unfiltered == 0 {
            return false;
        }
        let unfiltered = &mut self.unfiltered;
        self.live.shards[shard].for_each_mut(|addr, rec| {
            if rec.unfiltered() {
                filter_add(addr as usize);
                *rec = rec.relabelled(rec.stack(), false);
                *unfiltered -= 1;
            }
        });
        if self.unfiltered == 0 {
            lane_unfiltered(false);
        }
        self.unfiltered != 0
    }

    /// Empties the lane: every record leaves the filter.
    pub(super) fn clear(&mut self) -> Lane {
        for shard in self.live.shards.iter() {
            for (addr, rec) in shard.iter() {
                if !rec.unfiltered() {
                    filter_remove(addr as usize);
                }
            }
        }
        if self.unfiltered != 0 {
            lane_unfiltered(false);
        }
        if self.live.len != 0 {
            lane_emptied();
        }
        let fresh = Lane {
            seen_generation: self.seen_generation,
            ..Lane::new()
        };
        std::mem::replace(self, fresh)
    }

    /// Bytes the lane's tables hold: (live table, stacks and figures).
    pub(super) fn bytes(&self) -> (u64, u64) {
        let stacks = self.slots.bytes()
            + self.globals.bytes()
            + self.sites.bytes()
            + map_bytes(&self.by_global);
        (self.live.bytes(), stacks)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::tracker::recorder::filter::filter_slot;
    use crate::tracker::recorder::live::LIVE_SHARDS;

    #[test]
    fn refiltering_shard_by_shard_puts_every_exact_record_in_the_filter_once() {
        // A lane of its own (this binary's allocator is not leakscope's, so
        // nothing else records), addresses whose filter slots are distinct.
        let mut lane = Lane::new();
        let addrs: Vec<usize> = (0..5000).map(|i| 0x7a00_0000_0000 + i * 48).collect();
        let block = |addr| NewBlock {
            addr,
            size: 32,
            thread: 0,
            epoch: 0,
            scope: 0,
        };
        for &addr in &addrs {
            lane.record_alloc(block(addr), &[1, 2, 3], 0x5eed, 0, false);
        }
        assert_eq!(
            lane.unfiltered, 5000,
            "exact records stay out of the filter"
        );
        let count = |a: usize| filter_slot(a).load(Ordering::Relaxed);
        assert!(addrs.iter().all(|&a| count(a) == 0));
        let mut shards = 0;
        while shards < LIVE_SHARDS && lane.filter_shard(shards) {
            shards += 1;
        }
        assert_eq!(lane.unfiltered, 0);
        assert!(addrs.iter().all(|&a| count(a) == 1), "each in once");
        for &addr in &addrs {
            assert!(lane.remove(addr, 1, false));
        }
        assert!(addrs.iter().all(|&a| count(a) == 0), "and out again");
        assert_eq!(
            (lane.live.len, lane.curr_bytes, lane.total_bytes),
            (0, 0, 5000 * 32)
        );
    }
}
