//! A lane's stacks and what was allocated from each: stacks are interned
//! twice, in the lane, by hash and frames, to a local slot (no shared lock
//! on the common path), and on a slot's first use in the global store,
//! which gives it the id snapshots use.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::super::live::{AddrMap, map_bytes};
use super::super::stacks::{STACKS, STORE_FULL_FRAME, STORE_FULL_HASH, StackTable};
use super::PeakClock;
use crate::sys::published::Published;

/// Per-stack accumulators, in weighted units.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SiteAcc {
    pub(in super::super) total_bytes: u64,
    pub(in super::super) total_blocks: u64,
    /// Sum over freed blocks of lifetime (ticks) × block weight.
    pub(in super::super) lifetime: f64,
    pub(in super::super) curr_bytes: u64,
    pub(in super::super) curr_blocks: u64,
    pub(in super::super) max_bytes: u64,
    pub(in super::super) max_blocks: u64,
    pub(in super::super) peak_bytes: u64,
    pub(in super::super) peak_blocks: u64,
    pub(in super::super) last_touch: u64,
}

impl SiteAcc {
    /// The values at the last peak the lane noticed (`peak_seq`): saved on
    /// the first change after it, or the current ones if none came since.
    pub(in super::super) fn at_peak(&self, peak_seq: u64) -> (u64, u64) {
        if self.last_touch <= peak_seq {
            (self.curr_bytes, self.curr_blocks)
        } else {
            (self.peak_bytes, self.peak_blocks)
        }
    }
}

/// The stacks a lane has met, by slot, with their global ids and figures.
pub(crate) struct Sites {
    slots: StackTable,
    /// Each slot's global id.
    pub(in super::super) globals: Published<u32>,
    /// Each slot's figures.
    pub(in super::super) figures: Published<SiteAcc>,
    /// Global id → slot, for blocks moved in from another lane.
    by_global: AddrMap<u32>,
}

impl Sites {
    pub(super) const fn new() -> Self {
        Sites {
            slots: StackTable::new(),
            globals: Published::new(),
            figures: Published::new(),
            by_global: HashMap::with_hasher(BuildHasherDefault::new()),
        }
    }

    /// The slot of `frames`, interning them here (and globally, the first
    /// time) if they are new to this lane.
    #[inline(always)]
    pub(super) fn intern(&mut self, frames: &[usize], hash: u64, now: u32) -> u32 {
        if let Some(slot) = self.slots.find(frames, hash) {
            return slot;
        }
        self.intern_new(frames, hash, now)
    }

    /// [`Sites::intern`] of a stack this lane has not met.
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

    /// Adds a slot for stack `global`, which this lane has no slot for.
    fn add_slot(&mut self, global: u32, frames: &[usize], hash: u64) -> u32 {
        let slot = self.slots.push(frames, hash);
        self.globals.push(global);
        self.figures.push(SiteAcc::default());
        self.by_global.insert(global as u64, slot);
        slot
    }

    /// The slot of global stack `global` (a block moved in from another
    /// lane), copying its frames from the global table if it is new here.
    pub(super) fn slot_of_global(&mut self, global: u32) -> u32 {
        if let Some(&slot) = self.by_global.get(&(global as u64)) {
            return slot;
        }
        let stacks = STACKS.lock();
        let slot = self.add_slot(global, stacks.frames_of(global), stacks.hash_of(global));
        drop(stacks);
        slot
    }

    /// The global id of `slot`.
    #[inline(always)]
    pub(super) fn global(&self, slot: u32) -> u32 {
        self.globals.as_slice()[slot as usize]
    }

    /// A slot's figures, for a change at the lane's current operation: the
    /// values at the global peak are saved before the first change after
    /// that peak.
    #[inline(always)]
    pub(super) fn touch(&mut self, slot: u32, clock: &PeakClock) -> &mut SiteAcc {
        let s = &mut self.figures.as_mut_slice()[slot as usize];
        if s.last_touch <= clock.peak_seq {
            s.peak_bytes = s.curr_bytes;
            s.peak_blocks = s.curr_blocks;
        }
        s.last_touch = clock.seq;
        s
    }

    /// A slot's figures, unchanged in what the peak keeps.
    #[inline(always)]
    pub(super) fn figures_mut(&mut self, slot: u32) -> &mut SiteAcc {
        &mut self.figures.as_mut_slice()[slot as usize]
    }

    /// Which slots some live block was allocated from.
    pub(super) fn in_use(&self) -> Vec<bool> {
        self.figures
            .as_slice()
            .iter()
            .map(|s| s.curr_blocks > 0)
            .collect()
    }

    /// Keeps only the slots `keep` marks, interning their stacks in
    /// `store`, the global store being rebuilt; returns each old slot's
    /// new number (`u32::MAX` for a dropped one). The figures of a dropped
    /// stack go with it.
    pub(super) fn collect(&mut self, keep: &[bool], store: &mut StackTable) -> Vec<u32> {
        let mut renumbered = vec![u32::MAX; keep.len()];
        let mut kept = Sites::new();
        for (old, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let frames = self.slots.frames_of(old as u32);
            let hash = self.slots.hash_of(old as u32);
            let global = store.intern(frames, hash);
            let slot = kept.slots.push(frames, hash);
            kept.globals.push(global);
            kept.figures.push(self.figures.as_slice()[old]);
            kept.by_global.insert(global as u64, slot);
            renumbered[old] = slot;
        }
        *self = kept;
        renumbered
    }

    /// Bytes the stacks and their figures hold.
    pub(super) fn bytes(&self) -> u64 {
        self.slots.bytes()
            + self.globals.bytes()
            + self.figures.bytes()
            + map_bytes(&self.by_global)
    }
}
