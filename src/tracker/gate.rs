//! The gate: one global byte that every allocation path reads first. While
//! it is zero (the mode is off, no thread is in a measuring scope, and the
//! recorder holds no block) allocations, frees and reallocs go straight to
//! jemalloc without touching thread-local state. Each flag is owned by one
//! writer, which updates it together with the state it stands for.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::sys::lock::RawLocked;

/// Set unless the mode is off (also before initialisation, which the slow
/// path performs).
pub(super) const GATE_MODE: u8 = 1;
/// Set while the recorder holds at least one live block.
pub(super) const GATE_LIVE: u8 = 2;
/// Set while at least one thread is in a measuring scope.
pub(super) const GATE_SCOPED: u8 = 4;
/// Set while the recorder holds a block the free filter does not know (an
/// exact-mode record): every free must then ask the recorder.
pub(super) const GATE_UNFILTERED: u8 = 8;

/// The flags above; zero means plain jemalloc.
static GATE: AtomicU8 = AtomicU8::new(GATE_MODE);

/// How many threads are in a measuring scope (the [`GATE_SCOPED`] flag's
/// state). Its lock also keeps the mode and [`GATE_MODE`] in step, so that
/// neither flag can be left behind by a race between two updates.
static SCOPED_THREADS: RawLocked<u32> = RawLocked::new(0);

/// The gate's flags, as the allocation paths read them.
#[inline(always)]
pub(super) fn gate() -> u8 {
    GATE.load(Ordering::Relaxed)
}

/// Sets or clears `flag`, writing the shared line only when it changes.
/// Callers serialise the updates of one flag: the lock of
/// [`SCOPED_THREADS`] for the mode and scope flags, the recorder's flags
/// lock for the live and unfiltered flags.
#[inline]
pub(super) fn set_flag(flag: u8, on: bool) {
    let g = gate();
    if on && g & flag == 0 {
        GATE.fetch_or(flag, Ordering::Relaxed);
    } else if !on && g & flag != 0 {
        GATE.fetch_and(!flag, Ordering::Relaxed);
    }
}

/// Stores the mode with `store`, which says whether it is anything but
/// off, and sets [`GATE_MODE`] to match.
pub(super) fn update_mode(store: impl FnOnce() -> bool) {
    let _held = SCOPED_THREADS.lock();
    set_flag(GATE_MODE, store());
}

/// Before `fork`: holds the flags' lock, so that the child gets the mode
/// and the flags in step.
pub(super) fn fork_prepare() {
    SCOPED_THREADS.lock_for_fork();
}

/// After `fork`, in the parent: releases what [`fork_prepare`] took.
pub(super) fn fork_parent() {
    // SAFETY: this thread took the lock in fork_prepare.
    unsafe { SCOPED_THREADS.force_unlock() }
}

/// After `fork`, in the child (one thread): the lock is free again. Scope
/// counts of threads that did not survive stay, which only keeps the
/// tracked paths on.
pub(super) fn fork_child() {
    // SAFETY: only this thread exists in the child.
    unsafe { SCOPED_THREADS.reset_in_child() }
}

/// Counts a thread into a measuring scope (`true`) or out of one.
pub(super) fn count_scoped_thread(entering: bool) {
    let mut n = SCOPED_THREADS.lock();
    if entering {
        *n += 1;
    } else {
        *n = n.saturating_sub(1);
    }
    set_flag(GATE_SCOPED, *n > 0);
}
