//! The one read API of the tracker: a consistent copy of what the recorder
//! knows ([`snapshot`]), its totals alone, its own memory, and reset.

use std::time::Duration;

use super::filter::FILTER;
use super::lane::Lane;
use super::lane::SiteAcc;
use super::lanes::{self, LANES, LaneCell};
use super::live::{LIVE_SHARDS, LiveRec, Retry, Shard};
use super::peak;
use super::stacks::{STACKS, StackTable, count_reset, resets};
use super::weight::{BLOCK_UNIT, SAMPLE_MEANS, units_to_blocks, weight};
use crate::sys::clock::{TICK, now_tick, ticks};
use crate::sys::published::{Published, ReadSection, Version, read_racy};
use crate::tracker::untracked;
use std::ptr::addr_of;

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
    /// This stack's own maximum of live bytes (`mb`). Each thread's
    /// share is kept apart, so when several threads allocate from one
    /// stack this is the sum of their own maxima: an upper bound.
    pub max_bytes: u64,
    /// Live blocks when that maximum was reached (`mbk`).
    pub max_blocks: u64,
    /// Live bytes at the time of the global peak (`gb`): exact when one
    /// thread allocates; with several, each thread's share as of its first
    /// allocation or free after the peak (see [`HeapTotals::peak_bytes`]).
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
    pub thread: u32,
    /// The bytes this block stands for (its size in exact mode).
    pub est_bytes: u64,
    /// The number of blocks it stands for (1 in exact mode).
    pub est_blocks: f64,
    /// Whether it was recorded as a sample (in sampled mode), not as one of
    /// every block: the heap graph does not know what refers to it.
    pub sampled: bool,
}

/// Totals of the whole recorded heap (estimates in sampled mode).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HeapTotals {
    /// Live bytes now.
    pub live_bytes: u64,
    /// Live blocks now.
    pub live_blocks: u64,
    /// The global peak of live bytes (the sum of the stacks'
    /// [`SiteStats::at_peak_bytes`]). Exact when one thread allocates. With
    /// several, each thread keeps its own figures and adds them to a shared
    /// sum every 64 operations or 64 KiB (a shared write on every
    /// operation would cost more than the rest of exact mode together), so
    /// a peak is found from the other threads' figures at most that far
    /// behind, and each thread's share of it is taken at its next operation.
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

/// Copies the recorder's state, taking none of its locks: an allocating
/// thread never waits for a view, even when the view's thread loses its
/// CPU in the middle of a copy (a loaded machine).
///
/// Each lane is copied in turn, its live blocks one shard (1/256 of its
/// table) at a time, then its per-stack figures a few dozen stacks at a
/// time. Each part is copied while its writer may be changing it, and kept
/// only if the writer's version count says no change overlapped the copy;
/// else it is copied again (a writer in the middle of a change is waited
/// for, never interrupted). Arrays a writer replaces while a copy reads
/// them are freed once no copy is under way. While other threads allocate,
/// [`Snapshot::blocks`] is a union of shard copies taken a moment apart
/// rather than one instant, and the per-stack figures likewise; the heap's
/// live totals are the sums of the per-stack ones. A part that writers
/// tear copy after copy (a huge shard its thread changes all the time) is
/// copied under its lock instead; [`locked_copies`] counts those.
///
/// # Panics
///
/// When leakscope cannot allocate the copy (the process is at its memory
/// limit); [`try_snapshot`] says so instead.
pub fn snapshot() -> Snapshot {
    try_snapshot().unwrap_or_else(|e| panic!("{e}"))
}

/// The recorder's state could not be copied: the allocation the copy
/// needed failed (the process is at its memory limit). Nothing was
/// changed; the program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "leakscope could not allocate {bytes} bytes to copy the recorder's state (the process is \
     at its memory limit); nothing was changed"
)]
pub struct OutOfMemory {
    /// The size of the allocation that failed, in bytes.
    pub bytes: usize,
}

/// Reserves room for `additional` more elements of `v`, or says how many
/// bytes could not be had.
fn try_reserve<T>(v: &mut Vec<T>, additional: usize) -> Result<(), OutOfMemory> {
    v.try_reserve(additional).map_err(|_| OutOfMemory {
        bytes: (v.len() + additional).saturating_mul(size_of::<T>()),
    })
}

/// [`snapshot`], or [`OutOfMemory`] when leakscope cannot allocate the
/// copy: every buffer of the copy is reserved with `try_reserve`, so a
/// process at its memory limit gets an error, not an abort.
pub fn try_snapshot() -> Result<Snapshot, OutOfMemory> {
    // A view asked from outside takes no more once leakscope's own memory
    // is past the views' budget.
    crate::tracker::admit_view();
    // Scratch buffers are tracker memory: reserved and dropped untracked, so
    // a snapshot never shows up in the heap it measures. Only the result
    // handed to the caller is the caller's own allocation.
    let mut raw = RawCopy::default();
    let reading = ReadSection::enter();
    let copied = raw.copy_all();
    untracked(|| drop(reading));
    let snap = copied.and_then(|()| raw.to_snapshot(now_tick()));
    untracked(|| drop(raw));
    snap
}

impl RawCopy {
    /// Copies every lane and the stacks, inside a read section (the caller
    /// holds one).
    fn copy_all(&mut self) -> Result<(), OutOfMemory> {
        let raw = self;
        // A reset or a collection of the stacks renumbers them: a copy made
        // across one is made again (collections run at most once a second).
        for attempt in 0.. {
            let generation = resets();
            for i in 0..lanes::made() {
                raw.copy_lane(i)?;
            }
            // Stacks last: global ids only grow, so every copied slot's stack is
            // in the copy.
            raw.copy_stacks()?;
            if resets() == generation || attempt == 3 {
                break;
            }
            raw.clear();
        }
        Ok(())
    }

    /// Copies the global stacks: without their lock, or under it when
    /// copies kept being torn.
    fn copy_stacks(&mut self) -> Result<(), OutOfMemory> {
        let mut patience = Patience::new();
        loop {
            // SAFETY: STACKS is a static; the caller is in a read section.
            match unsafe {
                StackTable::copy_racy(STACKS.unlocked(), &mut self.spans, &mut self.frames)
            } {
                Ok(()) => return Ok(()),
                Err((stacks, frames)) => untracked(|| self.reserve_stacks(stacks, frames))?,
            }
            if !patience.again(true) {
                break;
            }
        }
        count_locked_copy();
        loop {
            let (stacks, frames) = {
                let s = STACKS.lock();
                (s.len(), s.frame_count())
            };
            untracked(|| self.reserve_stacks(stacks, frames))?;
            if self.copy_stacks_locked(&STACKS.lock()) {
                return Ok(());
            }
        }
    }
}

/// How many times in a row a copy is tried without a lock before the
/// reader yields its CPU (to a writer that lost its own mid-change, say).
const OPTIMISTIC_TRIES: u32 = 64;

/// How many copies of one part without its lock a reader lets writers tear
/// before it copies the part under the lock (a huge table that its thread
/// changes all the time). A writer seen in the middle of a change tears
/// nothing: the reader waits for it to finish (taking the lock would only
/// make it wait the same, and then the writer wait for the reader).
const TORN_LIMIT: u32 = 256;

/// Paces a reader's tries at copying one part without its lock (see
/// [`TORN_LIMIT`]).
struct Patience {
    tries: u32,
    torn: u32,
}

impl Patience {
    fn new() -> Self {
        Patience { tries: 0, torn: 0 }
    }

    /// After a failed try (`torn`: a change overlapped the copy; else a
    /// writer was in the middle of one): whether to try again, after a
    /// pause. False once writers tore [`TORN_LIMIT`] copies.
    fn again(&mut self, torn: bool) -> bool {
        self.tries += 1;
        self.torn += torn as u32;
        if self.torn >= TORN_LIMIT {
            return false;
        }
        if self.tries.is_multiple_of(OPTIMISTIC_TRIES) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        true
    }
}

/// Sites copied per check of the lane's version: a chunk copies in well
/// under a microsecond, so a lane changed every few hundred nanoseconds
/// still lets most through.
const SITES_PER_CHUNK: usize = 32;

/// Copies made under a lock because copies without it kept being torn.
static LOCKED_COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_locked_copy() {
    LOCKED_COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many copies snapshots made under a lock, an allocating thread then
/// perhaps waiting for them, because copies without it kept being torn.
pub fn locked_copies() -> u64 {
    LOCKED_COPIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// A lane's figures besides its per-stack ones, as a reader copies them
/// (its live figures are its sites' sums).
#[derive(Clone, Copy, Default)]
struct LaneFigures {
    total_bytes: u64,
    total_blocks: u64,
    sampled_ever: bool,
    /// The operation to compare sites' last touches with (see
    /// `SiteAcc::at_peak`).
    peak_seq: u64,
}

/// Copies lane `lane`'s figures without its lock: `None` when writers
/// kept tearing the copy.
///
/// # Safety
/// `lane` points to a lane (lanes are never freed).
unsafe fn copy_figures_racy(version: &Version, lane: *const Lane) -> Option<LaneFigures> {
    read_whole(version, || {
        // SAFETY: the caller's promise; plain values read racily, used
        // only once the version says they are whole.
        unsafe {
            let seq = read_racy(addr_of!((*lane).clock.seq));
            let peak_seq = read_racy(addr_of!((*lane).clock.peak_seq));
            let seen = read_racy(addr_of!((*lane).clock.seen_generation));
            Some(LaneFigures {
                total_bytes: read_racy(addr_of!((*lane).totals.total_bytes)),
                total_blocks: read_racy(addr_of!((*lane).totals.total_blocks)),
                sampled_ever: read_racy(addr_of!((*lane).totals.sampled_ever).cast::<u8>()) != 0,
                // A peak claimed since the lane's last operation is one its
                // sites' current values are at (what `settle` would note).
                peak_seq: if seen == peak::generation() {
                    peak_seq
                } else {
                    seq
                },
            })
        }
    })
}

/// Runs `read` (a racy read of what `version` guards; `None`: it could not
/// finish) until one no writer overlapped, pacing the tries (see
/// [`Patience`]): its result, or `None` when writers kept tearing them.
fn read_whole<R>(version: &Version, mut read: impl FnMut() -> Option<R>) -> Option<R> {
    let mut patience = Patience::new();
    loop {
        let torn = match version.begin_read() {
            None => false,
            Some(v) => {
                let r = read();
                if version.unchanged_since(v) && r.is_some() {
                    return r;
                }
                true
            }
        };
        if !patience.again(torn) {
            return None;
        }
    }
}

/// One lane's per-stack figures as copied: the slot's global id, its
/// accumulators and its values at the peak.
#[derive(Clone, Copy)]
struct SiteCopy {
    global: u32,
    acc: SiteAcc,
    at_peak: (u64, u64),
}

/// The recorder's state copied under the locks, converted after them.
#[derive(Default)]
struct RawCopy {
    /// Live blocks, lane after lane.
    blocks: Vec<(u64, LiveRec)>,
    /// Where each lane's blocks and sites start: (lane's first block, its
    /// first site).
    lane_starts: Vec<(usize, usize)>,
    sites: Vec<SiteCopy>,
    spans: Vec<(u32, u32)>,
    frames: Vec<usize>,
    heap: HeapTotals,
    estimated: bool,
}

impl RawCopy {
    /// Empties the copy, keeping its buffers.
    fn clear(&mut self) {
        self.blocks.clear();
        self.lane_starts.clear();
        self.sites.clear();
        self.heap = HeapTotals::default();
        self.estimated = false;
    }

    /// Reserves room for `additional` more blocks and touches it, so that
    /// the page faults of a fresh buffer happen here, not under the lock.
    fn reserve_blocks(&mut self, additional: usize) -> Result<(), OutOfMemory> {
        try_reserve(&mut self.blocks, additional)?;
        let spare = self.blocks.spare_capacity_mut();
        // SAFETY: writing zero bytes into uninitialised spare capacity; the
        // length is unchanged, so nothing reads them as values.
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0, spare.len()) };
        Ok(())
    }

    /// Copies lane `i`: its blocks shard by shard, then its figures,
    /// without its lock (inside the caller's read section); a part whose
    /// copies writers kept tearing is copied under the lock.
    fn copy_lane(&mut self, i: usize) -> Result<(), OutOfMemory> {
        let cell = lanes::lane(i);
        let (_, lane) = cell.unlocked();
        untracked(|| try_reserve(&mut self.lane_starts, 1))?;
        self.lane_starts.push((self.blocks.len(), 0));
        // SAFETY: lanes are never freed; a racy length is only a hint.
        let total = unsafe { read_racy(addr_of!((*lane).blocks.live.len)) };
        untracked(|| self.reserve_blocks(total + total / 16 + 1024))?;
        for shard in 0..LIVE_SHARDS {
            // SAFETY: as above.
            let p = unsafe { addr_of!((*lane).blocks.live.shards[shard]) };
            let mut patience = Patience::new();
            loop {
                // SAFETY: as above; the caller is in a read section.
                match unsafe { Shard::copy_racy(p, &mut self.blocks) } {
                    Ok(()) => break,
                    Err(Retry::Room(n)) => untracked(|| self.reserve_blocks(n))?,
                    Err(Retry::Busy) if patience.again(false) => {}
                    Err(Retry::Torn) if patience.again(true) => {}
                    Err(_) => {
                        self.copy_shard_locked(cell, shard)?;
                        break;
                    }
                }
            }
        }
        // Slots after blocks: a lane's slots only grow, so every copied
        // block's slot is in the copy (but across a reset).
        let (first_block, first_site) = (
            self.lane_starts.last().expect("pushed above").0,
            self.sites.len(),
        );
        self.lane_starts.last_mut().expect("pushed above").1 = first_site;
        self.copy_figures(cell)?;
        self.leave_out_freed(cell, first_block, first_site);
        Ok(())
    }

    /// Leaves out of the lane just copied the blocks whose frees other
    /// threads left for it (see `lanes`): freed, though the lane has not
    /// forgotten them yet.
    fn leave_out_freed(&mut self, cell: &LaneCell, first_block: usize, first_site: usize) {
        let mut left = [0usize; lanes::PENDING_SLOTS];
        let mut n = 0;
        cell.for_each_free_left(|addr| {
            if n < left.len() {
                left[n] = addr;
                n += 1;
            }
        });
        if n == 0 {
            return;
        }
        let left = &left[..n];
        let mut i = first_block;
        while i < self.blocks.len() {
            let (addr, rec) = self.blocks[i];
            if !left.contains(&(addr as usize)) {
                i += 1;
                continue;
            }
            let (bytes, units) = weight(rec.size(), rec.epoch());
            if let Some(s) = self.sites.get_mut(first_site + rec.stack() as usize) {
                s.acc.curr_bytes = s.acc.curr_bytes.saturating_sub(bytes);
                s.acc.curr_blocks = s.acc.curr_blocks.saturating_sub(units);
                self.heap.live_bytes = self.heap.live_bytes.saturating_sub(bytes);
                self.heap.live_blocks = self.heap.live_blocks.saturating_sub(units);
            }
            // This lane's blocks are the last ones copied.
            self.blocks.swap_remove(i);
        }
    }

    /// Copies a lane's per-stack figures and totals, without its lock when
    /// writers let a copy through (inside the caller's read section).
    fn copy_figures(&mut self, cell: &'static LaneCell) -> Result<(), OutOfMemory> {
        let (version, lane) = cell.unlocked();
        let first_site = self.sites.len();
        // SAFETY: lanes are never freed.
        let figures = unsafe { copy_figures_racy(version, lane) };
        let Some(figures) = figures else {
            return self.copy_sites_locked(cell);
        };
        // The sites, a chunk per check of the version; the globals they map
        // to never change once pushed.
        // SAFETY: as above.
        let n = unsafe { (*addr_of!((*lane).sites.figures)).len() };
        untracked(|| try_reserve(&mut self.sites, n + 64))?;
        let mut globals = Vec::new();
        untracked(|| try_reserve(&mut globals, n + 64))?;
        // SAFETY: as above.
        let copied = unsafe { Published::copy_racy(addr_of!((*lane).sites.globals), &mut globals) };
        let n = copied.unwrap_or(0).min(n);
        let mut chunk = Vec::new();
        untracked(|| try_reserve(&mut chunk, SITES_PER_CHUNK))?;
        let mut from = 0;
        while from < n {
            let want = SITES_PER_CHUNK.min(n - from);
            let done = read_whole(version, || {
                chunk.clear();
                // SAFETY: as above.
                let got = unsafe {
                    Published::copy_range_racy(
                        addr_of!((*lane).sites.figures),
                        from,
                        want,
                        &mut chunk,
                    )
                };
                (got == Ok(want)).then_some(())
            });
            if done.is_none() {
                untracked(|| drop((chunk, globals)));
                self.sites.truncate(first_site);
                return self.copy_sites_locked(cell);
            }
            self.sites.extend(
                chunk
                    .iter()
                    .zip(&globals[from..])
                    .map(|(acc, &global)| SiteCopy {
                        global,
                        acc: *acc,
                        at_peak: acc.at_peak(figures.peak_seq),
                    }),
            );
            from += want;
        }
        untracked(|| drop((chunk, globals)));
        self.add_figures(&figures, first_site);
        Ok(())
    }

    /// Adds a lane's figures to the heap's: its totals, and as its live
    /// figures the sum of its sites' from `first_site` on (copied a chunk
    /// at a time, they may be a moment apart from the lane's own; the heap's
    /// live figures then still sum the per-stack ones).
    fn add_figures(&mut self, f: &LaneFigures, first_site: usize) {
        let h = &mut self.heap;
        for s in &self.sites[first_site..] {
            h.live_bytes += s.acc.curr_bytes;
            h.live_blocks += s.acc.curr_blocks;
        }
        h.total_bytes += f.total_bytes;
        h.total_blocks += f.total_blocks;
        self.estimated |= f.sampled_ever;
    }

    /// Copies a shard of a lane under the lane's lock.
    #[cold]
    fn copy_shard_locked(
        &mut self,
        cell: &'static LaneCell,
        shard: usize,
    ) -> Result<(), OutOfMemory> {
        count_locked_copy();
        loop {
            let lane = cell.lock();
            let table = &lane.blocks.live.shards[shard];
            let n = table.len();
            if n <= self.blocks.capacity() - self.blocks.len() {
                self.blocks.extend(table.iter().map(|(k, v)| (k, *v)));
                return Ok(());
            }
            drop(lane);
            untracked(|| self.reserve_blocks(n + n / 8 + 16))?;
        }
    }

    /// Copies a lane's per-stack figures and totals under its lock.
    #[cold]
    fn copy_sites_locked(&mut self, cell: &'static LaneCell) -> Result<(), OutOfMemory> {
        count_locked_copy();
        let first_site = self.sites.len();
        loop {
            let n = cell.lock().sites.figures.len();
            untracked(|| try_reserve(&mut self.sites, n + 64))?;
            let mut lane = cell.lock();
            if lane.sites.figures.len() > self.sites.capacity() - self.sites.len() {
                continue;
            }
            lane.settle();
            let peak_seq = lane.clock.peak_seq;
            self.sites.extend(
                lane.sites
                    .figures
                    .as_slice()
                    .iter()
                    .zip(lane.sites.globals.as_slice())
                    .map(|(acc, &global)| SiteCopy {
                        global,
                        acc: *acc,
                        at_peak: acc.at_peak(peak_seq),
                    }),
            );
            let figures = LaneFigures {
                total_bytes: lane.totals.total_bytes,
                total_blocks: lane.totals.total_blocks,
                sampled_ever: lane.totals.sampled_ever,
                peak_seq,
            };
            drop(lane);
            self.add_figures(&figures, first_site);
            return Ok(());
        }
    }

    fn reserve_stacks(&mut self, stacks: usize, frames: usize) -> Result<(), OutOfMemory> {
        try_reserve(&mut self.spans, stacks + 64)?;
        try_reserve(&mut self.frames, frames + 64 * 32)
    }

    /// Copies the stacks without allocating; false when a buffer is too
    /// small (the store grew since `reserve_stacks`).
    fn copy_stacks_locked(&mut self, s: &StackTable) -> bool {
        if s.len() > self.spans.capacity() || s.frame_count() > self.frames.capacity() {
            return false;
        }
        self.spans.clear();
        self.frames.clear();
        for id in 0..s.len() as u32 {
            let f = s.frames_of(id);
            self.spans.push((self.frames.len() as u32, f.len() as u32));
            self.frames.extend_from_slice(f);
        }
        true
    }

    fn to_snapshot(&self, now: u32) -> Result<Snapshot, OutOfMemory> {
        // The caller's (tracked); reserved first, so that a failure below
        // leaves no untracked scratch to drop tracked.
        let mut blocks = Vec::new();
        try_reserve(&mut blocks, self.blocks.len())?;
        // Global ids → the snapshot's own, dense, in order of first use.
        let mut dense = Vec::new();
        untracked(|| try_reserve(&mut dense, self.spans.len()))?;
        dense.resize(self.spans.len(), u32::MAX);
        let mut stacks: Vec<StackRecord> = Vec::new();
        let (mut peak_bytes, mut peak_blocks) = (0, 0);
        for site in &self.sites {
            let Some(slot) = dense.get_mut(site.global as usize) else {
                continue;
            };
            if *slot == u32::MAX {
                *slot = stacks.len() as u32;
                let (start, len) = self.spans[site.global as usize];
                stacks.push(StackRecord {
                    frames: self.frames[start as usize..(start + len) as usize].to_vec(),
                    stats: SiteStats::default(),
                });
            }
            let s = &mut stacks[*slot as usize].stats;
            let a = &site.acc;
            s.total_bytes += a.total_bytes;
            s.total_blocks += a.total_blocks;
            s.freed_lifetime += TICK.mul_f64(a.lifetime / BLOCK_UNIT as f64);
            s.live_bytes += a.curr_bytes;
            s.live_blocks += a.curr_blocks;
            s.max_bytes += a.max_bytes;
            s.max_blocks += a.max_blocks;
            s.at_peak_bytes += site.at_peak.0;
            s.at_peak_blocks += site.at_peak.1;
            peak_bytes += site.at_peak.0;
            peak_blocks += site.at_peak.1;
        }
        // The block figures were summed in weighted units.
        for r in &mut stacks {
            let s = &mut r.stats;
            s.total_blocks = units_to_blocks(s.total_blocks);
            s.live_blocks = units_to_blocks(s.live_blocks);
            s.max_blocks = units_to_blocks(s.max_blocks);
            s.at_peak_blocks = units_to_blocks(s.at_peak_blocks);
        }
        for (k, &(first_block, first_site)) in self.lane_starts.iter().enumerate() {
            let end = self
                .lane_starts
                .get(k + 1)
                .map_or(self.blocks.len(), |n| n.0);
            let site_end = self
                .lane_starts
                .get(k + 1)
                .map_or(self.sites.len(), |n| n.1);
            let lane_sites = &self.sites[first_site..site_end.max(first_site)];
            for &(addr, rec) in &self.blocks[first_block..end] {
                // Only a reset between the copies leaves a block whose slot
                // is not in the copy.
                let Some(id) = lane_sites
                    .get(rec.stack() as usize)
                    .and_then(|s| dense.get(s.global as usize))
                    .filter(|&&id| id != u32::MAX)
                else {
                    continue;
                };
                let (b, k) = weight(rec.size(), rec.epoch());
                blocks.push(LiveBlock {
                    addr: addr as usize,
                    size: rec.size(),
                    stack: *id,
                    born: ticks(rec.born),
                    thread: rec.thread(),
                    est_bytes: b,
                    est_blocks: k as f64 / BLOCK_UNIT as f64,
                    sampled: rec.epoch() != 0,
                });
            }
        }
        let mut heap = self.heap;
        heap.live_blocks = units_to_blocks(heap.live_blocks);
        heap.total_blocks = units_to_blocks(heap.total_blocks);
        heap.peak_bytes = peak_bytes;
        heap.peak_blocks = units_to_blocks(peak_blocks);
        heap.peak_at = ticks(peak::tick());
        untracked(|| drop(dense));
        Ok(Snapshot {
            taken_at: ticks(now),
            estimated: self.estimated,
            blocks,
            stacks,
            heap,
        })
    }
}

/// Drops every record (live blocks, stacks, totals): tracking starts
/// afresh. Blocks allocated before stay allocated; they are simply no
/// longer known.
pub(crate) fn reset() {
    untracked(|| {
        // Every lane at once, then the stacks (the order the recording
        // paths take them in): no lane can keep a stack id of the old store.
        let mut held: Vec<_> = (0..lanes::made()).map(|i| lanes::lane(i).lock()).collect();
        let mut stacks = STACKS.lock();
        for lane in held.iter_mut() {
            drop(lane.clear());
        }
        drop(std::mem::replace(&mut *stacks, StackTable::new()));
        count_reset();
        peak::reset();
        drop(stacks);
        drop(held);
    });
}

/// Drops the stacks that no live block was allocated from, in every lane
/// and in the global store, so that a program that keeps making new stacks
/// (and frees what it allocated from them) keeps the store within
/// [`super::MAX_STACKS`]. Runs when the store is full, at most once a
/// second, on the thread that recorded next (it holds every lane for as
/// long as renumbering their live records takes: a sampled heap has few).
/// A block a realloc holds out of its lane meanwhile loses its record, as
/// across a [`reset`].
pub(crate) fn collect_stacks(now: u32) {
    untracked(|| {
        let mut held: Vec<_> = (0..lanes::made()).map(|i| lanes::lane(i).lock()).collect();
        let mut stacks = STACKS.lock();
        if !super::stacks::collect_due() {
            // Another thread collected first.
            return;
        }
        let mut store = StackTable::new();
        for lane in held.iter_mut() {
            lane.collect(&mut store);
        }
        drop(std::mem::replace(&mut *stacks, store));
        count_reset();
        super::stacks::count_collection(now);
        drop(stacks);
        drop(held);
    });
}

/// The recorder's heap totals alone (cheap: no copy of blocks or stacks),
/// read without the lanes' locks as [`snapshot`] reads them.
pub(crate) fn snapshot_totals() -> HeapTotals {
    untracked(|| {
        let mut raw = RawCopy::default();
        let reading = ReadSection::enter();
        // Without the memory for the per-stack figures, the totals alone
        // (the peak is then unknown).
        let copied = (0..lanes::made()).try_for_each(|i| raw.copy_figures(lanes::lane(i)));
        // Blocks whose frees are left for their lanes are freed.
        let mut left = (0, 0);
        for i in 0..lanes::made() {
            let cell = lanes::lane(i);
            let (_, lane) = cell.unlocked();
            cell.for_each_free_left(|addr| {
                let shard = super::live::LiveTable::shard_of(addr);
                // SAFETY: lanes are never freed; inside a read section.
                let rec = unsafe {
                    Shard::get_racy(addr_of!((*lane).blocks.live.shards[shard]), addr as u64)
                };
                if let Ok(Some(rec)) = rec {
                    let (b, k) = weight(rec.size(), rec.epoch());
                    left = (left.0 + b, left.1 + k);
                }
            });
        }
        drop(reading);
        let mut h = raw.heap;
        h.live_bytes = h.live_bytes.saturating_sub(left.0);
        h.live_blocks = h.live_blocks.saturating_sub(left.1);
        if copied.is_ok() {
            let (b, k) = raw
                .sites
                .iter()
                .fold((0, 0), |(b, k), s| (b + s.at_peak.0, k + s.at_peak.1));
            h.peak_bytes = b;
            h.peak_blocks = units_to_blocks(k);
            h.peak_at = ticks(peak::tick());
        }
        h.live_blocks = units_to_blocks(h.live_blocks);
        h.total_blocks = units_to_blocks(h.total_blocks);
        h
    })
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
    /// Distinct stacks in the global store (at most
    /// [`super::MAX_STACKS`], plus the one that stands for the rest while
    /// it is full).
    pub stacks_stored: u64,
    /// How many times the stacks no live block uses were dropped to keep
    /// the store within its bound.
    pub stack_collections: u64,
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
pub(crate) fn tracker_memory() -> TrackerMemory {
    let mut m = TrackerMemory {
        fixed: (std::mem::size_of_val(&FILTER)
            + std::mem::size_of_val(&SAMPLE_MEANS)
            + std::mem::size_of_val(&LANES)) as u64,
        ..TrackerMemory::default()
    };
    untracked(|| {
        let reading = ReadSection::enter();
        // SAFETY: STACKS is a static, read inside a read section: the
        // figures may be a moment apart, never out of an allocation.
        let stacks = unsafe { &*STACKS.unlocked() };
        m.stacks = stacks.bytes();
        m.stacks_stored = stacks.len() as u64;
        for i in 0..lanes::made() {
            let cell = lanes::lane(i);
            let (version, lane) = cell.unlocked();
            m.fixed += size_of::<LaneCell>() as u64;
            let read = read_whole(version, || {
                // SAFETY: lanes are never freed; inside a read section.
                let (live, stacks) = unsafe { (*lane).bytes() };
                // SAFETY: as above.
                let blocks = unsafe { read_racy(addr_of!((*lane).blocks.live.len)) };
                Some((live, stacks, blocks))
            });
            let (live, stacks, blocks) = read.unwrap_or_else(|| {
                let lane = cell.lock();
                let (live, stacks) = lane.bytes();
                (live, stacks, lane.blocks.live.len)
            });
            m.live_table += live;
            m.stacks += stacks;
            m.live_blocks += blocks as u64;
        }
        drop(reading);
    });
    m.stack_collections = super::stacks::collections();
    m
}
