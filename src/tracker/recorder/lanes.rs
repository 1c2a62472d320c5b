//! The lanes: where they live and which thread owns which.
//!
//! A thread takes a lane at its first record and gives it back when it
//! exits; the next thread to need one takes it over, with its records and
//! figures, so there are never more lanes than threads that recorded at
//! once. Lane 0 is shared by every thread that has none of its own (one
//! tearing down, say). Past [`MAX_LANES`] threads share lanes, which their
//! locks make safe. Lanes are never freed: their records outlive threads.
//!
//! A lane's lock is biased towards the thread that owns it (see
//! `sys::biased`): while no other thread takes it, its owner records and
//! frees without an atomic read-modify-write. A shared lane is never taken
//! as an owner.
//!
//! A thread that frees a block of another's lane does not take that lane's
//! lock: it leaves the free in the lane's slots for frees (`PendingFrees`),
//! and whoever takes the lane next applies it first (or the freeing thread,
//! when the slots are three quarters full and the lane is free to take
//! without waiting: an idle owner applies nothing). A thread holding a
//! lock can lose its CPU on a loaded machine, and every thread waiting for
//! that lock then waits for the scheduler: with frees left, a thread freeing
//! another's block never waits for that lane, and the lane's owner never
//! waits for it.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::flags::FLAGS;
use super::lane::Lane;
use super::stacks::STACKS;
use crate::sys::biased::{BiasedGuard, BiasedLocked, forget_barrier_in_child};
use crate::sys::lock::RawLocked;
use crate::sys::published::Version;

/// The most lanes there can be (lane 0, the shared one, included).
pub(crate) const MAX_LANES: usize = 1024;

/// A lane behind its lock, with the frees other threads left for it.
pub(crate) struct LaneCell {
    lane: BiasedLocked<Lane>,
    pending: PendingFrees,
}

/// A lane, locked: frees left for it were applied when it was taken.
pub(crate) struct LaneGuard {
    guard: BiasedGuard<'static, Lane>,
}

impl Deref for LaneGuard {
    type Target = Lane;
    fn deref(&self) -> &Lane {
        &self.guard
    }
}

impl DerefMut for LaneGuard {
    fn deref_mut(&mut self) -> &mut Lane {
        &mut self.guard
    }
}

impl LaneCell {
    fn new() -> Self {
        LaneCell {
            lane: BiasedLocked::new(Lane::new()),
            pending: PendingFrees::new(),
        }
    }

    /// Wraps a guard just taken, applying the frees left for the lane.
    #[inline(always)]
    fn guarded(&'static self, guard: BiasedGuard<'static, Lane>) -> LaneGuard {
        let mut g = LaneGuard { guard };
        if self.pending.count.load(Ordering::Acquire) != 0 {
            self.pending.apply(&mut g);
        }
        g
    }

    /// Takes the lock as the lane's owner (see [`BiasedLocked::lock_as_owner`]).
    #[inline(always)]
    pub(crate) fn lock_as_owner(&'static self, may_bias: bool) -> LaneGuard {
        self.guarded(self.lane.lock_as_owner(may_bias))
    }

    /// Takes the lock as any thread.
    pub(crate) fn lock(&'static self) -> LaneGuard {
        self.guarded(self.lane.lock())
    }

    /// Leaves the free of `addr` (at tick `now`) for whoever takes the lane
    /// next, without taking it: false when there is no room (the caller
    /// then takes the lock).
    pub(crate) fn leave_free(&'static self, addr: usize, now: u32) -> bool {
        self.pending.leave(addr, now)
    }

    /// Applies the frees left for the lane when they fill three quarters of
    /// its slots, if the lane can be taken without waiting. A lane whose
    /// owner is idle has nobody else to apply them, and a free that finds
    /// every slot taken must take the lane (waiting for it, if a thread
    /// holding it has lost its CPU). An active owner applies them at its
    /// next record, long before: a lane is taken here, and its owner may
    /// have to wait for this thread, only when it is idle or has lost its
    /// CPU itself.
    pub(crate) fn apply_left_if_crowded(&'static self) {
        if self.pending.count.load(Ordering::Relaxed) >= PENDING_SLOTS / 4 * 3
            && let Some(guard) = self.lane.try_lock()
        {
            drop(self.guarded(guard));
        }
    }

    /// Whether a free of `addr` is left for the lane.
    pub(crate) fn free_left(&self, addr: usize) -> bool {
        self.pending.count.load(Ordering::Acquire) != 0
            && self
                .pending
                .addrs
                .iter()
                .any(|a| a.load(Ordering::Acquire) == addr)
    }

    /// Calls `f` with every address whose free is left for the lane.
    pub(crate) fn for_each_free_left(&self, mut f: impl FnMut(usize)) {
        if self.pending.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for a in &self.pending.addrs {
            let addr = a.load(Ordering::Acquire);
            if addr > CLAIMED {
                f(addr);
            }
        }
    }

    /// See [`BiasedLocked::unlocked`].
    pub(crate) fn unlocked(&self) -> (&Version, *const Lane) {
        self.lane.unlocked()
    }

    /// See [`BiasedLocked::longest_wait`].
    pub(crate) fn longest_wait(&self) -> std::time::Duration {
        self.lane.longest_wait()
    }
}

/// How many frees other threads can leave for a lane at once.
pub(super) const PENDING_SLOTS: usize = 256;

/// Frees of a lane's blocks that other threads made without taking the
/// lane (its holder may have lost its CPU, and its owner must never wait
/// for them): left here, and applied by whoever takes the lane next,
/// before anything else it does there. So a block allocated at the same
/// address later is recorded after the old one is forgotten: the
/// allocator hands an address out again only after the free that left it
/// here returned. Readers that copy the lane leave these blocks out (see
/// `snapshot`), so a free left for an idle lane is never a leak in a view.
struct PendingFrees {
    /// A freed address, or 0 (empty), or [`CLAIMED`] (being written).
    addrs: [AtomicUsize; PENDING_SLOTS],
    ticks: [AtomicU32; PENDING_SLOTS],
    /// Addresses written and not yet applied.
    count: AtomicUsize,
}

/// A slot a thread is writing a free into.
const CLAIMED: usize = 1;

impl PendingFrees {
    fn new() -> Self {
        PendingFrees {
            addrs: [const { AtomicUsize::new(0) }; PENDING_SLOTS],
            ticks: [const { AtomicU32::new(0) }; PENDING_SLOTS],
            count: AtomicUsize::new(0),
        }
    }

    /// Leaves a free (see [`LaneCell::leave_free`]).
    fn leave(&self, addr: usize, now: u32) -> bool {
        if self.count.load(Ordering::Relaxed) >= PENDING_SLOTS {
            return false;
        }
        let Some(i) = self.addrs.iter().position(|a| {
            a.load(Ordering::Relaxed) == 0
                && a.compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        }) else {
            return false;
        };
        self.ticks[i].store(now, Ordering::Relaxed);
        self.addrs[i].store(addr, Ordering::Release);
        self.count.fetch_add(1, Ordering::Release);
        true
    }

    /// Applies every free left (under the lane's lock). Every slot is read:
    /// a free counted before the lane was taken must be applied before its
    /// owner records a block at the same address, and slots are not filled
    /// in the order they are counted.
    #[cold]
    #[inline(never)]
    fn apply(&self, lane: &mut Lane) {
        for (a, t) in self.addrs.iter().zip(&self.ticks) {
            let addr = a.load(Ordering::Acquire);
            if addr > CLAIMED {
                // Forgotten first, then the slot freed: a thread that reads
                // the lane meanwhile either sees the free still left or the
                // record gone (see `free_in_other_lanes`).
                lane.remove(addr, t.load(Ordering::Relaxed), true);
                a.store(0, Ordering::Release);
                self.count.fetch_sub(1, Ordering::Release);
            }
        }
    }
}

/// Set in a thread's lane index when the lane is shared with other threads
/// (past [`MAX_LANES`]): the thread then never takes it as its owner.
const SHARED: u32 = 1 << 31;

/// The index of a thread's lane (0 for none), from what it keeps.
#[inline(always)]
pub(crate) fn index_of(owner: &Cell<u32>) -> usize {
    (owner.get() & !SHARED) as usize
}

pub(crate) static LANES: [AtomicPtr<LaneCell>; MAX_LANES] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_LANES];
/// How many lanes have been made (their indices are below this).
static MADE: AtomicUsize = AtomicUsize::new(0);

/// Lanes no thread owns, ready to be taken over.
struct Pool {
    free: [u16; MAX_LANES],
    len: usize,
}

static POOL: RawLocked<Pool> = RawLocked::new(Pool {
    free: [0; MAX_LANES],
    len: 0,
});

/// Lane `i`, which exists.
#[inline]
pub(crate) fn lane(i: usize) -> &'static LaneCell {
    // SAFETY: lanes are made once and never freed; callers pass indices
    // below `made()`, whose pointers were stored before MADE grew past them.
    unsafe { &*LANES[i].load(Ordering::Acquire) }
}

/// How many lanes exist.
#[inline]
pub(crate) fn made() -> usize {
    MADE.load(Ordering::Acquire)
}

/// Makes lane `MADE` (under the pool's lock). The caller's thread is busy:
/// the lane is the tracker's own memory.
fn make_lane() -> Option<usize> {
    let i = MADE.load(Ordering::Relaxed);
    if i >= MAX_LANES {
        return None;
    }
    let cell = Box::into_raw(Box::new(LaneCell::new()));
    LANES[i].store(cell, Ordering::Release);
    MADE.store(i + 1, Ordering::Release);
    Some(i)
}

/// The lane a thread records in, locked: its own (`owner` holds its index,
/// 0 for none yet), taking one if `may_own` (the thread is live), or a
/// shared one. The caller's thread is busy.
#[inline(always)]
pub(crate) fn lock_own(owner: &Cell<u32>, may_own: bool) -> LaneGuard {
    let mut i = owner.get();
    if i == 0 {
        i = take_lane(owner, may_own);
    }
    lock_index(i)
}

/// Locks the lane a thread's lane index names: as its owner, unless it is
/// shared (or the shared lane 0). Only exact mode biases lanes: it records
/// every block, and the bias takes a locked instruction off each; sampled
/// mode takes a lane's lock once per sample and makes no system call for it.
#[inline(always)]
pub(crate) fn lock_index(i: u32) -> LaneGuard {
    if i != 0 && i & SHARED == 0 {
        lane(i as usize).lock_as_owner(super::exact_mode())
    } else {
        lane((i & !SHARED) as usize).lock()
    }
}

/// [`lock_own`] for a thread without a lane of its own: takes one from the
/// pool, or makes one, when it may; returns what the thread now keeps (0:
/// the shared lane 0; see [`SHARED`]).
#[cold]
#[inline(never)]
fn take_lane(owner: &Cell<u32>, may_own: bool) -> u32 {
    if !may_own && made() > 0 {
        return 0;
    }
    let mut pool = POOL.lock();
    if made() == 0 {
        make_lane();
    }
    if !may_own {
        return 0;
    }
    let taken = if pool.len > 0 {
        pool.len -= 1;
        Some(pool.free[pool.len] as usize)
    } else {
        make_lane()
    };
    // Past MAX_LANES, threads share the lanes there are.
    let i = match taken {
        Some(i) => i as u32,
        None => (1 + owner as *const _ as usize / 64 % (MAX_LANES - 1)) as u32 | SHARED,
    };
    owner.set(i);
    i
}

/// Gives a thread's lane back (the thread exits): what it has not
/// published is published, an empty table's memory is freed, and the next
/// thread to need a lane takes it over.
pub(crate) fn release(owner: &Cell<u32>) {
    let kept = owner.replace(0);
    let i = (kept & !SHARED) as usize;
    if i == 0 || kept & SHARED != 0 {
        // A shared lane stays with the threads that share it.
        return;
    }
    {
        let mut lane = lock_index(kept);
        lane.settle();
        lane.trim();
    }
    let mut pool = POOL.lock();
    if pool.len < MAX_LANES && !pool.free[..pool.len].contains(&(i as u16)) {
        let n = pool.len;
        pool.free[n] = i as u16;
        pool.len += 1;
    }
}

/// Runs `f` on every lane, in order, each under its lock.
pub(crate) fn for_each(mut f: impl FnMut(&mut Lane)) {
    for i in 0..made() {
        f(&mut lane(i).lock());
    }
}

/// The longest any thread has waited for a lane's lock or the stacks'.
pub(crate) fn longest_wait() -> std::time::Duration {
    (0..made())
        .map(|i| lane(i).longest_wait())
        .chain([STACKS.longest_wait()])
        .max()
        .unwrap_or_default()
}

/// Before `fork`: holds every lock of the recorder, in the order the
/// allocation paths take them (pool, lanes, stacks, flags).
pub(crate) fn fork_prepare() {
    POOL.lock_for_fork();
    for i in 0..made() {
        lane(i).lane.lock_for_fork();
    }
    STACKS.lock_for_fork();
    FLAGS.lock_for_fork();
}

/// After `fork`, in the parent: releases what [`fork_prepare`] took.
pub(crate) fn fork_parent() {
    // SAFETY: this thread took every one of these locks in fork_prepare.
    unsafe {
        FLAGS.force_unlock();
        STACKS.force_unlock();
        for i in 0..made() {
            lane(i).lane.force_unlock();
        }
        POOL.force_unlock();
    }
}

/// After `fork`, in the child (one thread): the locks are free again, and
/// every lane but `kept` (the forking thread's, 0 for none) goes back to
/// the pool, since the threads that owned them are gone.
pub(crate) fn fork_child(kept: usize) {
    // SAFETY: only this thread exists in the child.
    unsafe {
        forget_barrier_in_child();
        FLAGS.reset_in_child();
        STACKS.reset_in_child();
        for i in 0..made() {
            lane(i).lane.reset_in_child();
        }
        let pool = POOL.get_unchecked();
        pool.len = 0;
        for i in 1..made() {
            if i != kept {
                pool.free[pool.len] = i as u16;
                pool.len += 1;
            }
        }
        POOL.reset_in_child();
    }
}

#[cfg(test)]
mod tests {
    use super::super::NewBlock;
    use super::*;

    fn block(addr: usize) -> NewBlock {
        NewBlock {
            addr,
            size: 40,
            thread: 0,
            epoch: 0,
            scope: 0,
        }
    }

    #[test]
    fn a_free_left_for_a_held_lane_is_applied_by_the_next_taker() {
        // A lane of its own (this binary's allocator is not leakscope's).
        let cell: &'static LaneCell = Box::leak(Box::new(LaneCell::new()));
        let addrs: Vec<usize> = (0..PENDING_SLOTS + 8)
            .map(|i| 0x7b00_0000_0000 + i * 64)
            .collect();
        {
            let mut lane = cell.lock();
            for &a in &addrs {
                lane.record_alloc(block(a), &[1, 2, 3], 0x5eed, 0, false);
            }
        }
        let n = addrs.len();
        let held = cell.lock();
        // Another thread frees blocks of the lane while it is held: it
        // does not wait, it leaves the frees (as many as there are slots).
        std::thread::scope(|s| {
            s.spawn(|| {
                for &a in &addrs[..PENDING_SLOTS] {
                    assert!(!cell.free_left(a));
                    assert!(cell.leave_free(a, 7));
                    assert!(cell.free_left(a));
                }
                assert!(!cell.leave_free(addrs[PENDING_SLOTS], 7), "no room left");
            });
        });
        assert_eq!(held.blocks.live.len, n, "not applied under the holder");
        drop(held);
        let mut left = Vec::new();
        cell.for_each_free_left(|a| left.push(a));
        left.sort();
        assert_eq!(left, addrs[..PENDING_SLOTS], "left until the lane is taken");
        let lane = cell.lock();
        assert_eq!(
            cell.pending.count.load(Ordering::Relaxed),
            0,
            "applied when taken"
        );
        assert!(!cell.free_left(addrs[0]));
        assert_eq!(lane.blocks.live.len, n - PENDING_SLOTS);
        for &a in &addrs[..PENDING_SLOTS] {
            assert!(lane.blocks.live.get(a).is_none(), "{a:#x} forgotten");
        }
        for &a in &addrs[PENDING_SLOTS..] {
            assert!(lane.blocks.live.get(a).is_some(), "{a:#x} kept");
        }
        assert_eq!(lane.totals.curr_bytes, 8 * 40);
    }

    #[test]
    fn a_free_left_for_a_lane_comes_before_a_block_recorded_there_later() {
        // The address is freed (left, the lane held) and allocated again in
        // the same lane: the new block's record must survive.
        let cell: &'static LaneCell = Box::leak(Box::new(LaneCell::new()));
        let a = 0x7c00_0000_0000;
        cell.lock()
            .record_alloc(block(a), &[1, 2, 3], 0x5eed, 0, false);
        let held = cell.lock();
        assert!(std::thread::scope(|s| s
            .spawn(|| cell.leave_free(a, 3))
            .join()
            .unwrap()));
        drop(held);
        let mut lane = cell.lock();
        lane.record_alloc(block(a), &[4, 5, 6], 0x6eed, 9, false);
        assert_eq!(lane.blocks.live.len, 1);
        assert_eq!(lane.blocks.live.get(a).map(|r| r.born), Some(9));
    }
}
