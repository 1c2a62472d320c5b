//! # leakscope
//!
//! Finds memory leaks in long-running Rust programs while they run.
//!
//! Add the allocator to your program:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//!
//! fn main() {
//!     let kept: Vec<Box<[u8; 64]>> = (0..10).map(|_| Box::new([0u8; 64])).collect();
//!     let stats = leakscope::stats().expect("jemalloc statistics");
//!     assert!(stats.live_blocks >= 10);
//!     # drop(kept);
//! }
//! ```
//!
//! It is tikv-jemallocator underneath. `LEAKSCOPE_MODE` chooses what it
//! tracks on top (see [`Mode`]):
//!
//! | mode | what is recorded | cost |
//! |---|---|---|
//! | `off` | nothing | jemalloc behind one test of a global byte: 2 instructions per alloc+free pair more than jemalloc |
//! | `counters` | live and total bytes and blocks, per thread | ≈ free in programs; ~20 instructions per alloc+free pair |
//! | `sampled` (default) | also a stack for one block every `LEAKSCOPE_SAMPLE_BYTES` (mean 512 KiB); figures are unbiased estimates | as counters |
//! | `exact` | a stack for every block | 3–5× in programs; 9–16× in a loop that only allocates (one thread) |
//!
//! What is recorded can be read at any moment:
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! leakscope::set_mode(leakscope::Mode::Exact);
//! let leaked: &'static mut Vec<u64> = Box::leak(Box::new(vec![1, 2, 3]));
//! let snap = leakscope::tracker::snapshot();
//! let mine = snap.blocks.iter().find(|b| b.addr == leaked.as_ptr() as usize).unwrap();
//! let frames = leakscope::symbols::resolve_stack(&snap.stacks[mine.stack as usize].frames);
//! let site = leakscope::symbols::allocation_site(&frames).unwrap();
//! println!("{} bytes allocated at {}", mine.size, site.function);
//! # }
//! ```
//!
//! The rest of the toolkit reads what the allocator records:
//!
//! - [`heap`]: `hpy().heap().bytype()` — the live heap partitioned by type,
//!   site, stack, size, age or thread, Guppy's way; diffs; a growth watch.
//! - [`graph`]: who holds it — in exact mode, the references between
//!   blocks, named by field from the debug info (`heap.byvia()` →
//!   `Request.meta`), shortest paths from a static or a stack (`sp()`), and
//!   the blocks nothing reaches (`hpy().unreachable()`: `Rc` cycles).
//! - [`trackref`]: live instances per class (`prefs()`, `get_oldest`,
//!   `iter_all`), as Scrapy's trackref.
//! - [`console`]: a telnet console in the process (and `leakscope attach
//!   PID`), answering in a small Python-flavoured language; the sessions
//!   of Scrapy's leak guide (Guppy's `hpy`), diesel's console (`os`, `gc`)
//!   and Pympler (`muppy`, `summary`, `tracker`) run as printed.
//! - [`export`]: DHAT files for Valgrind's viewer, flamegraphs, pprof.
//! - [`leaks`](mod@leaks): [`leaks()`](fn@leaks) — the leak report: a
//!   growth history (started with the console or the endpoint) and a trend
//!   test name what keeps growing, its site, and in exact mode what holds
//!   it and the row of the dominator tree that keeps it alive.
//! - [`http`]: `/debug/leaks`, `/debug/pprof/heap` and `/metrics` for `go tool pprof`,
//!   Pyroscope, Parca and Prometheus.
//! - [`testing`]: `assert_allocs!`, `assert_max_bytes!`, `assert_no_leaks!`.
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! use leakscope::trackref::ObjectRef;
//!
//! struct Request {
//!     url: String,
//!     _ref: ObjectRef<Request>, // counted by trackref
//! }
//!
//! let queue: Vec<Request> = (0..3)
//!     .map(|i| Request { url: format!("http://a/{i}"), _ref: ObjectRef::new() })
//!     .collect();
//! print!("{}", leakscope::trackref::format_live_refs(&[])); // Live References … Request 3
//! print!("{}", leakscope::hpy().heap().bytype());           // Partition of a set of …
//! # assert_eq!(queue[0].url, "http://a/0");
//! # }
//! ```
//!
//! Who holds a block, in exact mode:
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! struct Customer { name: String }
//! struct Order { customer: std::sync::Arc<Customer>, quantity: u32 }
//!
//! leakscope::set_mode(leakscope::Mode::Exact);
//! let c = std::sync::Arc::new(Customer { name: "Ada".into() });
//! let orders: Vec<Order> = (0..3).map(|q| Order { customer: c.clone(), quantity: q }).collect();
//! drop(c);
//! let heap = leakscope::hpy().heap();
//! let by_type = heap.bytype();
//! let i = by_type.rows().iter().position(|r| r.label.contains("Arc<") && r.label.contains("Customer")).unwrap();
//! let via = by_type.row(i).byvia();
//! println!("{via}"); // … Referred to via: Order.customer
//! assert!(via.rows().iter().any(|r| r.label == "Order.customer"));
//! # assert_eq!(orders[0].customer.name, "Ada");
//! # assert_eq!(orders[2].quantity, 2);
//! # }
//! ```
//!
//! Every environment variable is listed, with its default, in [`config`].
//!
//! ## Building your program
//! Types of heap blocks come from symbol names and stacks come cheapest
//! from frame pointers. Build with
//! `RUSTFLAGS="-C symbol-mangling-version=v0 -C force-frame-pointers=yes"`
//! (or the same in `.cargo/config.toml`) and keep debug info in release
//! (`[profile.release] debug = true`). Without them leakscope still works:
//! stacks come from an unwinder and blocks are shown by allocating function.
//!
//! ## Without changing your program
//! A program that allocates through the C library's `malloc` (a Rust
//! program without a `#[global_allocator]`, a C or C++ program) can be
//! run as it is: `leakscope run -- ./yourservice` (the `leakscope` command,
//! `cli/`) starts it with the preload library (`preload/`) in `LD_PRELOAD`.
//! The library serves `malloc` and its family from jemalloc through this
//! crate's allocator, and starts the console: the same modes, views and
//! variables. Blocks are counted at jemalloc's size class (`malloc(100)`
//! is 112 bytes), the size a `free` can learn; stacks come from the
//! unwinder, since the program's standard library keeps no frame
//! pointers. A program whose blocks bypass `malloc` (its own
//! `#[global_allocator]`, its own `malloc`) is named at its start.
//!
//! ## Layers
//!
//! Each folder is one stage of the data flow, from the allocation up to the
//! person reading the console, and a module uses only the layers below it:
//!
//! ```text
//!  console/   server, session, telnet, attach, client, limits;
//!             lang/ (parsing) → eval/ (values) → builtins/ (leakscope's names)
//!  http/      /debug/leaks, /debug/pprof/heap and /metrics, for go tool pprof
//!             and Prometheus
//!  testing    measure and the assertion macros
//!  render/    text for people: every view of the types below; table (helpers
//!             that know no domain type)
//!  export/    DHAT JSON (checker, report, diff, viewer page), flamegraph, pprof
//!  leaks/     the growth history (a thread, a bounded store), the trend test,
//!             the leak report
//!  heap/      hpy(): heaps, partitions, diffs, relheap, holders (byvia, sp,
//!             unreachable, retained, dominators)
//!  trackref   ObjectRef, Tracked: live instances per class
//!  stats      counters plus jemalloc's figures; purge()
//!  graph/     which block refers to which: the roots, the scan, its memory;
//!             the dominator tree
//!  symbols/   addresses → frames (cached), allocation site, block type,
//!             field layouts from DWARF, build info
//!  tracker/   the GlobalAlloc over jemalloc, in the order an allocation
//!             meets it: gate (one global byte), alloc (the paths), thread
//!             (counters, countdown), mode, init (environment, fork),
//!             registry, stack (frame-pointer walk), recorder/ (a lane per
//!             recording thread; the global stacks and peak; snapshot),
//!             scope (measuring scopes)
//!  sys/       clocks, the lock that never allocates and the one biased
//!             towards its owner thread, copies without locks (published),
//!             fork handlers, mapped files, the environment, the room left
//!             under the address-space limit
//!  config     every LEAKSCOPE_* variable, with its default
//! ```
//!
//! Tests of the global allocator live in their own binaries
//! (`tests/alloc_*.rs`, `dhat_oracle.rs`, `heap_views.rs`, `export.rs`,
//! `cli/tests/*.rs`), which run their tests one at a time on the main
//! thread since they check process-wide figures.
//!
//! The `leakscope` command (attach, connect, report, diff, view) is a crate
//! of its own in `cli/`, so a program's build of this library carries no
//! command-line dependencies.

#![deny(missing_docs)]

pub mod config;
pub mod console;
pub mod export;
pub mod graph;
pub mod heap;
pub mod http;
pub mod leaks;
mod render;
mod stats;
pub mod symbols;
mod sys;
pub mod testing;
pub mod tracker;
pub mod trackref;

pub use heap::hpy;

/// The leak report now: the types and sites whose live bytes keep growing,
/// with their site in the program's code and, in exact mode, what holds
/// them. See the [`leaks`](mod@leaks) module; its `Display` is the
/// console's `leaks()`.
pub fn leaks() -> leaks::LeakReport {
    leaks::report()
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use stats::{
    Error as StatsError, JemallocStats, OWN_MEMORY_FIXED, PurgeReport, Stats, purge, stats,
};
pub use tracker::{Alloc, Mode, mode, sample_bytes, set_mode, set_sample_bytes};
