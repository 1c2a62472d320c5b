//! The tracker: everything that runs inside `GlobalAlloc`.
//!
//! [`Alloc`] is the global allocator (tikv-jemallocator underneath). It
//! counts every block per thread, and records the stack of a sample of
//! blocks (or of every block, in [`Mode::Exact`]) in the recorder. The rest
//! of leakscope reads what it recorded through one API: [`snapshot`], a
//! copy taken without any of the recorder's locks, so that no allocating
//! thread ever waits for a view.
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//!
//! # fn main() {
//! leakscope::set_mode(leakscope::Mode::Exact);
//! let kept = vec![1u64, 2, 3];
//! let snap = leakscope::tracker::snapshot();
//! let block = snap.blocks.iter().find(|b| b.addr == kept.as_ptr() as usize).unwrap();
//! assert_eq!(block.size, 24);
//! # }
//! ```
//!
//! The modules, in the order an allocation meets them: `alloc` (the
//! `GlobalAlloc` paths), `thread` (each thread's counters and countdown),
//! `settings` (the global mode and sampling mean), `mode` (switching
//! them), `init` (the environment, read once without
//! allocating, and the `fork` handlers), `registry` (the live threads'
//! counters), `stack` (the frame-pointer walk), `recorder` (live blocks and
//! per-stack totals, in one lane per recording thread) and `scope` (measuring scopes for `testing`).

#![doc = include_str!("../../docs/modes.md")]

mod alloc;
mod budget;
mod gate;
mod init;
mod mode;
pub(crate) mod recorder;
mod registry;
pub(crate) mod scope;
mod settings;
pub(crate) mod stack;
mod thread;

use std::time::Duration;

pub use alloc::Alloc;
pub(crate) use budget::admit_view;
pub use budget::{
    DEFAULT_VIEWS_MEMORY, VIEWS_MEMORY_PERCENT_OF_LIVE, set_views_memory, views_budget,
    views_memory,
};
pub use mode::{mode, set_mode, set_sample_bytes};
pub use recorder::{
    HeapTotals, LiveBlock, OutOfMemory, SiteStats, Snapshot, StackId, StackRecord, TrackerMemory,
    locked_copies, snapshot, try_snapshot,
};
pub use recorder::{MAX_STACKS, MAX_STORED_FRAMES, STORE_FULL_FRAME};
pub(crate) use registry::{thread_local_addresses, thread_name};
pub use settings::{DEFAULT_SAMPLE_BYTES, Mode, sample_bytes};
pub use stack::{
    DEFAULT_MAX_FRAMES, Unwinder, has_frame_pointers, max_frames, set_max_frames, set_unwinder,
    unwinder,
};
pub(crate) use thread::{as_program, own_thread, untracked};

/// The address ranges of the tracker's own statics that hold block
/// addresses (the recorder's): not roots of the heap graph.
pub(crate) fn own_static_ranges() -> [(usize, usize); 1] {
    let start = &recorder::LANES as *const _ as usize;
    [(start, start + size_of_val(&recorder::LANES))]
}

/// Starts one of leakscope's own threads: what it allocates is leakscope's
/// memory, not the program's (see `thread::own_thread`).
pub(crate) fn spawn_own<F, T>(
    builder: std::thread::Builder,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    builder.spawn(move || {
        own_thread();
        f()
    })
}

/// Drops every record (live blocks, stacks, totals): tracking starts afresh.
/// Blocks allocated before stay allocated; they are simply no longer known.
pub fn reset() {
    recorder::reset()
}

/// The recorder's heap totals alone (cheap: no copy of blocks or stacks).
pub fn totals() -> HeapTotals {
    recorder::snapshot_totals()
}

/// What the tracker's own data structures take now.
pub fn memory() -> TrackerMemory {
    recorder::tracker_memory()
}

/// The counters summed over every thread, at one reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CounterTotals {
    /// Bytes allocated since the start (a realloc counts its new size).
    pub(crate) alloc_bytes: u64,
    /// Blocks allocated since the start.
    pub(crate) alloc_blocks: u64,
    /// Bytes freed since the start.
    pub(crate) free_bytes: u64,
    /// Blocks freed since the start.
    pub(crate) free_blocks: u64,
    /// Threads whose counters are registered now.
    pub(crate) threads: usize,
    /// The counters-mode estimate of the peak of live bytes.
    pub(crate) peak_estimate: u64,
    /// The longest any thread has waited for a lock of the recorder's.
    pub(crate) longest_wait: Duration,
    /// Bytes leakscope holds for itself (allocated while in its own code).
    pub(crate) own_bytes: u64,
}

/// Reads the counters of every thread.
pub(crate) fn counter_totals() -> CounterTotals {
    let (c, threads) = registry::counters_sum();
    let r = std::sync::atomic::Ordering::Relaxed;
    CounterTotals {
        alloc_bytes: c.alloc_bytes.load(r),
        alloc_blocks: c.alloc_blocks.load(r),
        free_bytes: c.free_bytes.load(r),
        free_blocks: c.free_blocks.load(r),
        threads,
        peak_estimate: registry::flushed_peak().max(0) as u64,
        longest_wait: recorder::longest_wait(),
        own_bytes: registry::own_bytes(),
    }
}

/// This module's path, as frames of its functions begin.
#[cfg(test)]
pub(crate) const MODULE: &str = module_path!();
