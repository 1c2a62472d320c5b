//! A lane: one thread's share of the recorder, behind a lock of its own
//! that the owning thread takes uncontended. Another thread takes it only
//! to free or move a block the lane holds, or to read it.
//!
//! A lane is made of named parts, each with one concern:
//! - [`Blocks`]: its live blocks' records, and which the free filter knows;
//! - [`Sites`]: the stacks it met and what was allocated from each;
//! - [`Scopes`]: its share of the measuring scopes;
//! - [`Totals`]: its live and allocated figures;
//! - [`PeakClock`]: its operations counted against the global peak;
//! - [`Publisher`]: when it adds its live bytes to the global figure.
//!
//! `Lane` itself only sequences them: recording, freeing and moving a
//! block touch each part in a fixed order.

mod blocks;
mod scopes;
mod sites;

use super::live::LiveRec;
use super::peak::{self, PUBLISH_BYTES, PUBLISH_OPS};
use super::stacks::{self, StackTable};
use super::weight::weight;
use super::{NewBlock, TakenBlock};

pub(crate) use blocks::Blocks;
pub(crate) use scopes::Scopes;
pub(crate) use sites::{SiteAcc, Sites};

/// A lane's live and allocated figures, in weighted units.
#[derive(Default)]
pub(crate) struct Totals {
    pub(super) curr_bytes: u64,
    pub(super) curr_blocks: u64,
    pub(super) total_bytes: u64,
    pub(super) total_blocks: u64,
    /// Whether any sampled block was ever recorded (figures are estimates).
    pub(super) sampled_ever: bool,
}

/// A lane's operation counter, and the operation at which the lane last
/// noticed (or made) a new global peak: the per-stack values at that peak
/// are kept lazily (a stack saves its current value the first time it
/// changes after it), so no operation walks all stacks.
#[derive(Default)]
pub(crate) struct PeakClock {
    pub(super) seq: u64,
    pub(super) peak_seq: u64,
    /// The peak generation the lane has noticed.
    pub(super) seen_generation: u64,
}

impl PeakClock {
    /// At the start of every operation: a peak claimed since the lane's
    /// last operation happened before this one.
    #[inline(always)]
    fn notice(&mut self) {
        let generation = peak::generation();
        if generation != self.seen_generation {
            self.seen_generation = generation;
            self.peak_seq = self.seq;
        }
    }

    /// The lane made peak `generation` at its current operation.
    fn made_peak(&mut self, generation: u64) {
        self.seen_generation = generation;
        self.peak_seq = self.seq;
    }
}

/// When a lane adds its live bytes to the global figure: the bytes as last
/// published, and what is left before it publishes again ([`PUBLISH_BYTES`]
/// less the bytes of each block recorded or forgotten since, and less a
/// [`PUBLISH_BYTES`] / [`PUBLISH_OPS`] share per operation).
pub(crate) struct Publisher {
    published: i64,
    budget: i64,
}

impl Publisher {
    const fn new() -> Self {
        Publisher {
            published: 0,
            budget: PUBLISH_BYTES,
        }
    }

    /// Publishes `curr_bytes`; returns the global live bytes.
    fn publish(&mut self, curr_bytes: u64) -> i64 {
        let delta = curr_bytes as i64 - self.published;
        self.published = curr_bytes as i64;
        self.budget = PUBLISH_BYTES;
        peak::publish(delta)
    }
}

/// One thread's share of the recorder (see the module docs).
pub(crate) struct Lane {
    pub(super) blocks: Blocks,
    pub(super) sites: Sites,
    pub(super) scopes: Scopes,
    pub(super) totals: Totals,
    pub(super) clock: PeakClock,
    publisher: Publisher,
}

impl Lane {
    pub(super) const fn new() -> Self {
        Lane {
            blocks: Blocks::new(),
            sites: Sites::new(),
            scopes: Scopes::new(),
            totals: Totals {
                curr_bytes: 0,
                curr_blocks: 0,
                total_bytes: 0,
                total_blocks: 0,
                sampled_ever: false,
            },
            clock: PeakClock {
                seq: 0,
                peak_seq: 0,
                seen_generation: 0,
            },
            publisher: Publisher::new(),
        }
    }

    /// Drops the stacks no live block of this lane was allocated from (and
    /// no open measuring scope counts), interning the others in `store`,
    /// the global store being rebuilt: their slots and global ids are
    /// renumbered, and every live record follows. The figures of a dropped
    /// stack (what was allocated and freed from it) are gone with it; the
    /// lane's totals keep them.
    pub(super) fn collect(&mut self, store: &mut StackTable) {
        let mut keep = self.sites.in_use();
        self.scopes.mark_counted(&mut keep);
        let renumbered = self.sites.collect(&keep, store);
        self.blocks.renumber(&renumbered);
        self.scopes.renumber(&renumbered);
    }

    /// After an operation on a block of `bytes`: publishes the lane's live
    /// bytes when due (at once when `now`: the caller is not the lane's
    /// owner, whose figures would otherwise wait for the owner's next
    /// operation).
    #[inline(always)]
    fn after_op(&mut self, bytes: u64, now: bool) {
        self.publisher.budget -= bytes as i64 + PUBLISH_BYTES / PUBLISH_OPS as i64;
        if now || self.publisher.budget < 0 {
            self.publisher.publish(self.totals.curr_bytes);
        }
    }

    /// Gives the memory of an empty live table back (a lane whose thread
    /// exits: the next owner may need far less).
    pub(super) fn trim(&mut self) {
        self.blocks.trim();
    }

    /// Publishes what has not been (a lane whose thread exits, or read by a
    /// snapshot), and notices a peak claimed since its last operation.
    pub(super) fn settle(&mut self) {
        self.clock.notice();
        if self.totals.curr_bytes as i64 != self.publisher.published {
            self.publisher.publish(self.totals.curr_bytes);
        }
    }

    /// After a block grew `slot`'s live figures: its own maximum, and the
    /// global peak.
    #[inline(always)]
    fn after_growth(&mut self, slot: u32, now: u32) {
        let s = self.sites.figures_mut(slot);
        if s.curr_bytes >= s.max_bytes {
            s.max_bytes = s.curr_bytes;
            s.max_blocks = s.curr_blocks;
        }
        if peak::may_peak(self.publisher.published, self.totals.curr_bytes as i64) {
            let total = self.publisher.publish(self.totals.curr_bytes);
            if let Some(generation) = peak::claim(total, now) {
                self.clock.made_peak(generation);
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
        self.clock.notice();
        let NewBlock {
            addr,
            size,
            thread,
            epoch,
            scope,
        } = block;
        let slot = self.sites.intern(frames, hash, now);
        let rec = LiveRec::new(size, thread, epoch, slot, now, !filtered);
        self.insert(addr, rec, now);
        if scope != 0 {
            self.scopes.gained(addr, scope, slot, rec.size(), true);
        }
        let (bytes, blocks) = weight(rec.size(), epoch);
        self.join(slot, bytes, blocks, true);
        self.totals.sampled_ever |= epoch != 0;
        self.after_growth(slot, now);
        self.after_op(bytes, false);
    }

    /// Puts a record in the table and the filter.
    #[inline(always)]
    fn insert(&mut self, addr: usize, rec: LiveRec, now: u32) {
        if self.blocks.insert(addr, rec).is_some() {
            // A block this lane never saw freed (tracking was switched off
            // while it lived): it is gone now that its address is handed
            // out again.
            self.remove(addr, now, false);
            self.blocks.insert(addr, rec);
        }
    }

    /// Forgets a freed block; returns whether this lane held it. `remote`:
    /// the caller is not the lane's owner.
    #[inline(always)]
    pub(super) fn remove(&mut self, addr: usize, now: u32, remote: bool) -> bool {
        self.clock.notice();
        let Some((rec, _, bytes, blocks)) = self.leave(addr) else {
            return false;
        };
        self.sites.figures_mut(rec.stack()).lifetime +=
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
        let rec = self.blocks.take(addr)?;
        let scope = self.scopes.lost(addr, rec.size());
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.clock.seq += 1;
        let s = self.sites.touch(rec.stack(), &self.clock);
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        self.totals.curr_bytes -= bytes;
        self.totals.curr_blocks -= blocks;
        Some((rec, scope, bytes, blocks))
    }

    /// Adds a block of weight (`bytes`, `blocks`) to the live figures of
    /// `slot` and the lane, and to the totals when `counted` (an allocation,
    /// not a block put back): what recording a block and putting one back
    /// after a realloc share.
    #[inline(always)]
    fn join(&mut self, slot: u32, bytes: u64, blocks: u64, counted: bool) {
        self.clock.seq += 1;
        let s = self.sites.touch(slot, &self.clock);
        if counted {
            s.total_bytes += bytes;
            s.total_blocks += blocks;
        }
        s.curr_bytes += bytes;
        s.curr_blocks += blocks;
        let t = &mut self.totals;
        if counted {
            t.total_bytes += bytes;
            t.total_blocks += blocks;
        }
        t.curr_bytes += bytes;
        t.curr_blocks += blocks;
    }

    /// Takes a recorded block out for a `realloc`: its weight leaves the
    /// live figures (nothing is counted as freed) until
    /// [`Lane::finish_realloc`] puts it back, in this lane or another.
    pub(super) fn take_for_realloc(&mut self, addr: usize, remote: bool) -> Option<TakenBlock> {
        self.clock.notice();
        let (rec, scope, bytes, _) = self.leave(addr)?;
        let global = self.sites.global(rec.stack());
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
        self.clock.notice();
        let TakenBlock {
            rec,
            global,
            scope,
            resets,
        } = taken;
        if resets != stacks::resets() {
            return;
        }
        let slot = self.sites.slot_of_global(global);
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
            self.scopes.gained(addr, scope, slot, rec.size(), counted);
        }
        self.after_growth(slot, now);
        self.after_op(bytes, false);
    }

    /// Starts scope `scope` afresh (whatever its blocks did before it was
    /// opened, such as `testing`'s probe, is forgotten).
    pub(super) fn open_scope(&mut self, scope: u32) {
        self.scopes.open(scope);
    }

    /// Forgets scope `scope` and which blocks were its.
    pub(super) fn close_scope(&mut self, scope: u32) {
        self.scopes.close(scope);
    }

    /// Puts the live records of shard `shard` that this lane keeps out of
    /// the free filter into it; returns whether any such record is left.
    pub(super) fn filter_shard(&mut self, shard: usize) -> bool {
        self.blocks.filter_shard(shard)
    }

    /// Empties the lane: every record leaves the filter.
    pub(super) fn clear(&mut self) -> Lane {
        self.blocks.leave_filter();
        let mut fresh = Lane::new();
        fresh.clock.seen_generation = self.clock.seen_generation;
        std::mem::replace(self, fresh)
    }

    /// Bytes the lane's tables hold: (live table, stacks and figures).
    pub(super) fn bytes(&self) -> (u64, u64) {
        (self.blocks.live.bytes(), self.sites.bytes())
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
            lane.blocks.unfiltered(),
            5000,
            "exact records stay out of the filter"
        );
        let count = |a: usize| filter_slot(a).load(Ordering::Relaxed);
        assert!(addrs.iter().all(|&a| count(a) == 0));
        let mut shards = 0;
        while shards < LIVE_SHARDS && lane.filter_shard(shards) {
            shards += 1;
        }
        assert_eq!(lane.blocks.unfiltered(), 0);
        assert!(addrs.iter().all(|&a| count(a) == 1), "each in once");
        for &addr in &addrs {
            assert!(lane.remove(addr, 1, false));
        }
        assert!(addrs.iter().all(|&a| count(a) == 0), "and out again");
        assert_eq!(
            (
                lane.blocks.live.len,
                lane.totals.curr_bytes,
                lane.totals.total_bytes
            ),
            (0, 0, 5000 * 32)
        );
    }
}
