//! A lane's live blocks: the table of their records, and which of them the
//! free filter does not know (see `filter`).

use super::super::filter::{filter_add, filter_remove};
use super::super::flags::{lane_emptied, lane_filled, lane_unfiltered};
use super::super::live::{LiveRec, LiveTable};

/// The live blocks a lane holds.
pub(crate) struct Blocks {
    pub(in super::super) live: LiveTable,
    /// Live records not in the free filter.
    unfiltered: usize,
}

impl Blocks {
    pub(super) const fn new() -> Self {
        Blocks {
            live: LiveTable::new(),
            unfiltered: 0,
        }
    }

    /// Puts a record in the table and the filter; returns the record the
    /// table held at `addr` before, which is then left in the table.
    #[inline(always)]
    pub(super) fn insert(&mut self, addr: usize, rec: LiveRec) -> Option<LiveRec> {
        if let Some(stale) = self.live.insert(addr, rec) {
            self.live.insert(addr, stale);
            return Some(stale);
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
        None
    }

    /// Takes a record out of the table and the filter.
    #[inline(always)]
    pub(super) fn take(&mut self, addr: usize) -> Option<LiveRec> {
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

    /// Live records the free filter does not know.
    #[cfg(test)]
    pub(super) fn unfiltered(&self) -> usize {
        self.unfiltered
    }

    /// Puts the records of shard `shard` that are out of the free filter
    /// into it; returns whether any such record is left.
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

    /// Takes every record out of the filter and the gate's flags (the
    /// table itself is left to the caller).
    pub(super) fn leave_filter(&mut self) {
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
    }

    /// Gives the table's memory back when it is empty.
    pub(super) fn trim(&mut self) {
        if self.live.len == 0 {
            self.live = LiveTable::new();
        }
    }

    /// Gives each record its new slot (see `Sites::collect`).
    pub(super) fn renumber(&mut self, renumbered: &[u32]) {
        for shard in self.live.shards.iter_mut() {
            shard.for_each_mut(|_, rec| {
                *rec = rec.relabelled(renumbered[rec.stack() as usize], rec.unfiltered());
            });
        }
    }
}
