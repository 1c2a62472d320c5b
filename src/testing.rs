//! Heap-usage assertions for tests: "this code makes exactly 96
//! allocations", "peak heap stays under 10 MiB", "this frees everything it
//! allocates".
//!
//! [`measure`] runs a closure and reports what *it* did on the calling
//! thread: every allocation of that thread is counted and recorded exactly
//! while the closure runs, whatever the mode, so any number of tests can
//! measure in parallel in one test binary and the test harness's own
//! allocations on other threads never pollute the figures. Blocks allocated
//! in the closure stay watched after it returns: one freed later, on any
//! thread, is no longer live.
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! use leakscope::{assert_allocs, assert_max_bytes, assert_no_leaks};
//!
//! let m = leakscope::testing::measure(|| Vec::<u64>::with_capacity(10));
//! assert_eq!((m.allocated_blocks, m.allocated_bytes), (1, 80));
//! assert_eq!(m.live_blocks(), 1); // the Vec is still alive in `m.value`
//!
//! let v = assert_allocs!(1, { Vec::<u8>::with_capacity(100) });
//! assert_max_bytes!(1024, { vec![0u8; 1000] });
//! assert_no_leaks!({ let s = String::from("freed before the end"); drop(s); });
//! # drop(v);
//! # }
//! ```
//!
//! A `realloc` (a `Vec` or `String` growing past its capacity) counts as one
//! block allocated with the new size and one freed with the old size, as the
//! allocator's counters count it. Nested measurements work: the inner one's
//! work counts in the outer one too, and the inner one's blocks are watched
//! by the inner one.
//!
//! The test binary must use [`crate::Alloc`] as its global allocator;
//! [`measure`] panics with what to add when it does not, never reporting
//! zeros that would make an assertion pass silently.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::render::table::{finish, table};
use crate::symbols;
use crate::tracker::scope::{self, SavedScope, ScopeFigures};

/// What a measured closure did, and its return value.
#[derive(Debug)]
pub struct Measurement<R = ()> {
    /// The closure's return value.
    pub value: R,
    /// Blocks allocated by the closure (a realloc counts one).
    pub allocated_blocks: u64,
    /// Bytes allocated by the closure (a realloc counts its new size).
    pub allocated_bytes: u64,
    /// Blocks freed by the closure (a realloc counts one).
    pub freed_blocks: u64,
    /// Bytes freed by the closure (a realloc counts its old size).
    pub freed_bytes: u64,
    /// The peak, during the closure, of bytes allocated minus bytes freed.
    pub peak_bytes: u64,
    scope: Scope,
}

/// The recorder's figures of one measurement; closed on drop.
#[derive(Debug)]
struct Scope(u32);

impl Drop for Scope {
    fn drop(&mut self) {
        scope::close_records(self.0);
    }
}

/// One allocation site in an assertion's report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Site {
    /// The allocating function (the first frame of the program's own code).
    pub function: String,
    /// Its source file, if known.
    pub file: Option<String>,
    /// Its line, if known.
    pub line: Option<u32>,
    /// The block type (`Box<app::Widget>`, `Vec<u8>` …).
    pub type_name: String,
    /// Blocks from this site.
    pub blocks: u64,
    /// Bytes from this site.
    pub bytes: u64,
}

/// Sites in a report: at most this many, largest first.
pub const MAX_SITES: usize = 10;

fn sites(stacks: Vec<(Vec<usize>, u64, u64)>) -> Vec<Site> {
    let mut out: Vec<Site> = stacks
        .into_iter()
        .map(|(frames, blocks, bytes)| {
            let frames = symbols::resolve_stack(&frames);
            let site = symbols::allocation_site(&frames);
            Site {
                function: site.map_or_else(|| "?".to_string(), |f| f.function.clone()),
                file: site.and_then(|f| f.file.clone()),
                line: site.and_then(|f| f.line),
                type_name: symbols::block_type(&frames).name,
                blocks,
                bytes,
            }
        })
        .collect();
    // Stacks that differ below the site are one site here.
    out.sort_by(|a, b| {
        (&a.function, a.line, &a.type_name).cmp(&(&b.function, b.line, &b.type_name))
    });
    out.dedup_by(|b, a| {
        let same = a.function == b.function && a.line == b.line && a.type_name == b.type_name;
        if same {
            a.blocks += b.blocks;
            a.bytes += b.bytes;
        }
        same
    });
    out.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.function.cmp(&b.function))
    });
    out.truncate(MAX_SITES);
    out
}

impl<R> Measurement<R> {
    /// Blocks allocated by the closure that are still live now.
    pub fn live_blocks(&self) -> u64 {
        scope::scope_report(self.scope.0, false).map_or(0, |r| r.live_blocks)
    }

    /// Bytes in those blocks.
    pub fn live_bytes(&self) -> u64 {
        scope::scope_report(self.scope.0, false).map_or(0, |r| r.live_bytes)
    }

    /// Where the closure allocated, most bytes first (at most
    /// [`MAX_SITES`]).
    pub fn allocation_sites(&self) -> Vec<Site> {
        scope::scope_report(self.scope.0, true).map_or_else(Vec::new, |r| sites(r.allocated))
    }

    /// Where the blocks still live now were allocated, most bytes first (at
    /// most [`MAX_SITES`]).
    pub fn live_sites(&self) -> Vec<Site> {
        scope::scope_report(self.scope.0, true).map_or_else(Vec::new, |r| sites(r.live))
    }

    /// The closure's return value.
    pub fn into_value(self) -> R {
        self.value
    }
}

static NEXT_SCOPE: AtomicU32 = AtomicU32::new(1);

/// Restores the thread's scope even when the closure panics.
struct ScopeGuard(Option<SavedScope>);

impl ScopeGuard {
    fn exit(&mut self) -> ScopeFigures {
        self.0
            .take()
            .map_or_else(ScopeFigures::default, scope::exit_scope)
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        self.exit();
    }
}

/// Runs `f` and measures what it allocates and frees on this thread.
///
/// # Panics
/// When this binary's global allocator is not [`crate::Alloc`].
pub fn measure<R>(f: impl FnOnce() -> R) -> Measurement<R> {
    let mut id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
    if id == 0 {
        id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
    }
    // A probe in a scope of its own, discarded after: it proves the
    // allocator is ours (the thread's counters move) and counts nowhere.
    let probe = scope::enter_scope(id);
    let before = scope::thread_alloc_blocks();
    drop(std::hint::black_box(Box::new(0u8)));
    let ours = scope::thread_alloc_blocks() != before;
    scope::discard_scope(probe);
    if !ours {
        panic!(
            "leakscope::testing::measure needs leakscope's allocator in this test binary; add\n\n    \
             #[global_allocator]\n    static ALLOC: leakscope::Alloc = leakscope::Alloc::new();\n\n\
             to the test file (integration tests are binaries of their own)"
        );
    }
    let mut guard = ScopeGuard(Some(scope::enter_scope(id)));
    let scope = Scope(id);
    scope::open_records(id);
    let value = f();
    let figures = guard.exit();
    Measurement {
        value,
        allocated_blocks: figures.alloc_blocks,
        allocated_bytes: figures.alloc_bytes,
        freed_blocks: figures.free_blocks,
        freed_bytes: figures.free_bytes,
        peak_bytes: figures.peak_bytes,
        scope,
    }
}

/// Panics unless the closure made exactly `expected` allocations, listing
/// where it allocated. Used by [`assert_allocs!`](crate::assert_allocs).
#[track_caller]
#[doc(hidden)]
pub fn check_allocs<R>(m: &Measurement<R>, expected: u64) {
    if m.allocated_blocks != expected {
        panic!(
            "expected {expected} allocations, the code made {} ({} bytes). Where:\n{}",
            m.allocated_blocks,
            m.allocated_bytes,
            site_table(&m.allocation_sites())
        );
    }
}

/// Panics if the closure's peak of allocated-minus-freed bytes passed
/// `limit`, listing where it allocated. Used by
/// [`assert_max_bytes!`](crate::assert_max_bytes).
#[track_caller]
#[doc(hidden)]
pub fn check_max_bytes<R>(m: &Measurement<R>, limit: u64) {
    if m.peak_bytes > limit {
        panic!(
            "the code's heap peaked at {} bytes, over the limit of {limit}. Where it allocated:\n{}",
            m.peak_bytes,
            site_table(&m.allocation_sites())
        );
    }
}

/// Panics if blocks the closure allocated are still live, listing where they
/// were allocated. Used by [`assert_no_leaks!`](crate::assert_no_leaks).
#[track_caller]
#[doc(hidden)]
pub fn check_no_leaks<R>(m: &Measurement<R>) {
    let live = m.live_blocks();
    if live != 0 {
        panic!(
            "the code leaked {live} blocks ({} bytes). Allocated at:\n{}",
            m.live_bytes(),
            site_table(&m.live_sites())
        );
    }
}

/// `assert_allocs!(n, { … })`: the block makes exactly `n` allocations on
/// this thread (see [`testing`](crate::testing)); evaluates to the block's
/// value. On failure the message lists the allocation sites.
#[macro_export]
macro_rules! assert_allocs {
    ($expected:expr, $body:block) => {{
        let m = $crate::testing::measure(|| $body);
        $crate::testing::check_allocs(&m, $expected);
        m.into_value()
    }};
}

/// `assert_max_bytes!(limit, { … })`: the block's heap (allocated minus
/// freed bytes on this thread) never passes `limit`; evaluates to the
/// block's value.
#[macro_export]
macro_rules! assert_max_bytes {
    ($limit:expr, $body:block) => {{
        let m = $crate::testing::measure(|| $body);
        $crate::testing::check_max_bytes(&m, $limit);
        m.into_value()
    }};
}

/// `assert_no_leaks!({ … })`: every block the block allocates is freed by
/// the time it ends (its value is dropped first, so return nothing that
/// owns heap memory); the message names where leaked blocks were allocated.
#[macro_export]
macro_rules! assert_no_leaks {
    ($body:block) => {{
        let m = $crate::testing::measure(|| {
            let _ = $body;
        });
        $crate::testing::check_no_leaks(&m);
    }};
}

/// Allocation sites for an assertion message, one per line: blocks, bytes,
/// type, function and place.
fn site_table(list: &[Site]) -> String {
    if list.is_empty() {
        return "  (no allocation sites recorded)\n".to_string();
    }
    let mut t = table(&["Blocks", "Bytes", "Type", "Allocated at"], &[0, 1]);
    for s in list {
        let place = match symbols::short_place(s.file.as_deref(), s.line) {
            Some(p) => format!("{} ({p})", s.function),
            None => s.function.clone(),
        };
        t.add_row(vec![
            s.blocks.to_string(),
            s.bytes.to_string(),
            s.type_name.clone(),
            place,
        ]);
    }
    let mut out = String::new();
    for line in finish(&t).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// This module's path, as frames of its functions begin.
#[cfg(test)]
pub(crate) const MODULE: &str = module_path!();
