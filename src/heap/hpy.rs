//! `hpy()`: the entry point, and the relative-heap baseline.

use std::collections::HashSet;
use std::time::Duration;

use super::Heap;
use crate::sys::fork::{ForkSafe, InChild};
use crate::tracker;

/// Blocks live when [`Hpy::setrelheap`] was called: (address, birth). A
/// forked child keeps the baseline.
static RELHEAP: ForkSafe<Option<HashSet<(usize, Duration)>>> = ForkSafe::new(None, InChild::Keep);

/// The entry point, as Guppy's `hpy()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hpy;

/// Guppy's `hpy()`: heaps, baselines and the growth watch.
pub fn hpy() -> Hpy {
    Hpy
}

impl Hpy {
    /// A snapshot of the live blocks the recorder knows (only those
    /// allocated after [`Hpy::setrelheap`], if it was called).
    ///
    /// # Panics
    ///
    /// When leakscope cannot allocate the snapshot; [`Hpy::try_heap`]
    /// says so instead.
    pub fn heap(&self) -> Heap {
        self.try_heap().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Hpy::heap`], or [`tracker::OutOfMemory`] when the process is at
    /// its memory limit and the snapshot cannot be allocated (the program
    /// runs on).
    pub fn try_heap(&self) -> Result<Heap, tracker::OutOfMemory> {
        let snapshot = tracker::try_snapshot()?;
        let base = RELHEAP.lock();
        match base.as_ref() {
            Some(old) => Heap::from_snapshot(snapshot, |b| !old.contains(&(b.addr, b.born))),
            None => Heap::from_snapshot(snapshot, |_| true),
        }
    }

    /// [`Hpy::try_heap`] without the relative-heap baseline: every block
    /// the recorder knows (for the growth history, whose figures must not
    /// jump when a user sets a baseline).
    pub(crate) fn try_whole_heap(&self) -> Result<Heap, tracker::OutOfMemory> {
        Heap::from_snapshot(tracker::try_snapshot()?, |_| true)
    }

    /// The live blocks no root reaches: `Rc`/`Arc` cycles and
    /// `mem::forget` (exact mode only). See [`Heap::unreachable`].
    #[inline(never)]
    pub fn unreachable(&self) -> Result<Heap, super::GraphError> {
        // Of this thread's stack, only what is above this frame is scanned:
        // the snapshot's work below it leaves addresses behind.
        let mark = 0u8;
        self.heap()
            .unreachable_below(std::ptr::addr_of!(mark) as usize)
    }

    /// Later heaps show only blocks allocated after this call.
    pub fn setrelheap(&self) {
        let snapshot = tracker::snapshot();
        let set: HashSet<(usize, Duration)> =
            snapshot.blocks.iter().map(|b| (b.addr, b.born)).collect();
        *RELHEAP.lock() = Some(set);
    }

    /// Guppy's other name for [`Hpy::setrelheap`].
    pub fn setref(&self) {
        self.setrelheap()
    }

    /// Later heaps show every live block again.
    pub fn clear_relheap(&self) {
        *RELHEAP.lock() = None;
    }
}
