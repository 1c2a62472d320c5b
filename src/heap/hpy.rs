//! `hpy()`: the entry point, and the relative-heap baseline.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Heap, HeapData};
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
        let data = match shared_recent() {
            Some(data) => data,
            None => {
                let began = Instant::now();
                let data = HeapData::of(tracker::try_snapshot()?)?;
                offer_recent(&data, began);
                data
            }
        };
        let base = RELHEAP.lock();
        match base.as_ref() {
            Some(old) => Heap::over(data, |b| !old.contains(&(b.addr, b.born))),
            None => Heap::over(data, |_| true),
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

/// How long a snapshot taken for a heap asked from outside (a console
/// line, an HTTP request) is offered to other askers whose work began
/// before it was taken: they asked at the same moment, and share it, and
/// with it the heap graph and the dominator tree once built. Eight sessions
/// asking at once cost one snapshot and one graph, not eight; an asker that
/// began after it was taken gets its own, so no heap is older than the
/// line that asked for it.
pub(crate) const SHARE_WINDOW: Duration = Duration::from_secs(1);

/// The latest snapshot taken for a view asked from outside.
struct Recent {
    data: Weak<HeapData>,
    /// When the snapshot began.
    at: Instant,
    by: std::thread::ThreadId,
    mode: tracker::Mode,
}

/// [`Recent`], while one is kept; a forked child starts without.
static RECENT: ForkSafe<Option<Recent>> = ForkSafe::new(None, InChild::Empty);

thread_local! {
    /// The snapshot this thread's last heap asked from outside was of (its
    /// address): the next one is another moment.
    static LAST_GIVEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The snapshot another asker took within [`SHARE_WINDOW`], in the same
/// mode, if it is still held and is not the one this thread's last heap
/// was of; only for work asked from outside (the program's own calls get
/// their own, and one session's successive heaps are successive moments).
fn shared_recent() -> Option<Arc<HeapData>> {
    if !crate::sys::cancel::is_watched() {
        return None;
    }
    let me = std::thread::current().id();
    let last = LAST_GIVEN.with(std::cell::Cell::get);
    let asked = crate::sys::cancel::watch_began()?;
    let recent = RECENT.lock();
    let r = recent.as_ref()?;
    let same_moment = r.at >= asked && r.at.elapsed() < SHARE_WINDOW;
    let data = (r.by != me && same_moment && r.mode == tracker::mode())
        .then(|| r.data.upgrade())
        .flatten()
        .filter(|d| Arc::as_ptr(d) as usize != last)?;
    LAST_GIVEN.with(|l| l.set(Arc::as_ptr(&data) as usize));
    Some(data)
}

/// Offers `data`, whose snapshot began at `began`, to the next asker (see
/// [`shared_recent`]).
fn offer_recent(data: &Arc<HeapData>, began: Instant) {
    if !crate::sys::cancel::is_watched() {
        return;
    }
    LAST_GIVEN.with(|l| l.set(Arc::as_ptr(data) as usize));
    *RECENT.lock() = Some(Recent {
        data: Arc::downgrade(data),
        at: began,
        by: std::thread::current().id(),
        mode: tracker::mode(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cancel;

    /// A heap asked for from outside, as a console line asks.
    fn asked_heap() -> Heap {
        cancel::watched(Box::new(|| None), || hpy().heap()).unwrap()
    }

    #[test]
    fn askers_from_outside_within_the_window_share_one_snapshot() {
        use std::sync::Barrier;
        // B's line begins, then A takes its heap, then B asks: they asked
        // at the same moment, and B shares A's snapshot. Other tests may
        // ask for heaps meanwhile (then the pair is tried again).
        let shared = (0..50).any(|_| {
            let (asked, taken) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
            let b = {
                let (asked, taken) = (asked.clone(), taken.clone());
                std::thread::spawn(move || {
                    cancel::watched(Box::new(|| None), || {
                        asked.wait();
                        taken.wait();
                        hpy().heap()
                    })
                    .unwrap()
                })
            };
            let a = cancel::watched(Box::new(|| None), || {
                asked.wait();
                let a = hpy().heap();
                taken.wait();
                a
            })
            .unwrap();
            Arc::ptr_eq(&a.data, &b.join().unwrap().data)
        });
        assert!(shared);
        // A line that begins after a snapshot was taken gets its own; so do
        // the same asker again and the program's own call.
        let a = asked_heap();
        let later = std::thread::spawn(asked_heap).join().unwrap();
        assert!(!Arc::ptr_eq(&a.data, &later.data));
        let again = asked_heap();
        assert!(!Arc::ptr_eq(&a.data, &again.data));
        let own = hpy().heap();
        assert!(!Arc::ptr_eq(&again.data, &own.data));
    }
}
