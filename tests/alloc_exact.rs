//! The allocator core in exact mode: exact counts per stack, and every hazard
//! the allocator must survive (realloc in all its forms, failed and huge
//! allocations, large alignments, reentrancy, thread teardown, fork,
//! allocation before `main`, a 16-thread storm with concurrent snapshots).
//!
//! The tests check process-wide figures, so they run one at a time on the
//! main thread (see `common`).

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leakscope::symbols;
use leakscope::tracker::{self, Snapshot};
use leakscope::{Alloc, Mode};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

tests!(
    known_workload_gives_exact_counts_bytes_and_types_per_site,
    realloc_grow_shrink_move_and_failure_keep_exact_accounting,
    alloc_zeroed_is_forwarded_and_counted,
    huge_requests_fail_cleanly,
    alignments_of_4096_and_2_mib_are_honoured_and_recorded,
    the_trackers_own_allocations_are_never_tracked,
    sixteen_thread_storm_with_concurrent_snapshots_returns_to_baseline,
    snapshots_copied_without_locks_see_every_lasting_block_once,
    allocation_during_thread_teardown_is_counted,
    fork_while_other_threads_allocate_does_not_deadlock_the_child,
    allocations_before_main_are_tracked,
    exact_mode_keeps_at_most_48_bytes_per_live_block,
    a_threads_closure_is_the_site_and_its_box_the_type,
    blocks_handed_between_threads_keep_exact_figures_and_the_peak_sums_them,
    threads_that_come_and_go_take_over_lanes_instead_of_adding_them,
);

/// The type of the blocks allocated at `function`.
fn site_types(snap: &Snapshot, function: &str) -> Vec<symbols::BlockType> {
    let mut out = Vec::new();
    for s in &snap.stacks {
        let frames = symbols::resolve_stack(&s.frames);
        if let Some(site) = symbols::allocation_site(&frames)
            && site.function.split("::{closure").next() == Some(function)
            && s.stats.live_blocks > 0
        {
            out.push(symbols::block_type(&frames));
        }
    }
    out
}

common::widget!();

#[allow(dead_code)]
struct Gadget {
    a: u64,
    b: u64,
    c: u64,
}

#[inline(never)]
fn make_widgets(n: u64) -> Vec<Box<Widget>> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        v.push(Box::new(Widget {
            id: i,
            payload: [i; 4],
        }));
    }
    v
}

#[inline(never)]
fn grow_gadgets(n: u64) -> Vec<Gadget> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Gadget { a: i, b: i, c: i });
    }
    v
}

#[inline(never)]
fn leak_strings(n: usize) {
    for i in 0..n {
        let mut s = String::with_capacity(20);
        s.push_str("leaked string ");
        s.push_str(&format!("{i:06}"));
        assert_eq!(s.capacity(), 20);
        std::mem::forget(s);
    }
}

fn known_workload_gives_exact_counts_bytes_and_types_per_site() {
    let widgets = make_widgets(1000);
    let gadgets = grow_gadgets(1000);
    leak_strings(500);
    let snap = tracker::snapshot();
    assert!(!snap.estimated, "exact mode figures are not estimates");

    // 1000 boxes of 40 bytes, plus the Vec that holds them (1000 pointers).
    let w = common::site_totals(&snap, "alloc_exact::make_widgets");
    assert_eq!(w.live_blocks, 1001);
    assert_eq!(w.live_bytes, 1000 * 40 + 1000 * 8);
    assert_eq!(w.total_blocks, 1001);
    let types = site_types(&snap, "alloc_exact::make_widgets");
    assert!(
        types
            .iter()
            .any(|t| t.name == "Box<alloc_exact::Widget>" && !t.ambiguous),
        "{types:?}"
    );

    // Vec<Gadget> grown by push: capacities 4, 8, …, 1024 — one allocation
    // and eight reallocations, one live block of 1024 × 24 bytes.
    let g = common::site_totals(&snap, "alloc_exact::grow_gadgets");
    assert_eq!(g.live_blocks, 1);
    assert_eq!(g.live_bytes, 1024 * 24);
    assert_eq!(g.total_blocks, 9);
    assert_eq!(
        g.total_bytes,
        24 * (4 + 8 + 16 + 32 + 64 + 128 + 256 + 512 + 1024)
    );
    let types = site_types(&snap, "alloc_exact::grow_gadgets");
    assert!(
        types.iter().any(|t| t.name == "Vec<alloc_exact::Gadget>"),
        "{types:?}"
    );

    // 500 leaked 20-byte strings.
    let s = common::site_totals(&snap, "alloc_exact::leak_strings");
    assert_eq!(s.live_blocks, 500);
    assert_eq!(s.live_bytes, 500 * 20);
    let types = site_types(&snap, "alloc_exact::leak_strings");
    assert!(types.iter().any(|t| t.name == "String"), "{types:?}");

    drop(widgets);
    drop(gadgets);
    let snap = tracker::snapshot();
    let w = common::site_totals(&snap, "alloc_exact::make_widgets");
    assert_eq!((w.live_blocks, w.live_bytes), (0, 0));
    assert_eq!(w.total_blocks, 1001, "totals survive frees");
    assert_eq!(
        common::site_totals(&snap, "alloc_exact::grow_gadgets").live_blocks,
        0
    );
    assert_eq!(
        common::site_totals(&snap, "alloc_exact::leak_strings").live_blocks,
        500
    );
}

fn recorded_size(addr: *mut u8) -> Option<u64> {
    tracker::snapshot()
        .blocks
        .iter()
        .find(|b| b.addr == addr as usize)
        .map(|b| b.size)
}

fn live_counters() -> (u64, u64) {
    let s = leakscope::stats().expect("stats");
    (s.live_blocks, s.live_bytes)
}

fn realloc_grow_shrink_move_and_failure_keep_exact_accounting() {
    let layout = Layout::from_size_align(100, 8).unwrap();
    let before = live_counters();
    // SAFETY: valid layouts; each pointer is used with the layout it has.
    unsafe {
        let p = ALLOC.alloc(layout);
        assert!(!p.is_null());
        p.write_bytes(0xAB, 100);
        assert_eq!(recorded_size(p), Some(100));

        let p = ALLOC.realloc(p, layout, 200);
        assert_eq!(recorded_size(p), Some(200));
        assert_eq!(*p.add(99), 0xAB, "contents kept on grow");

        let p = ALLOC.realloc(p, Layout::from_size_align(200, 8).unwrap(), 50);
        assert_eq!(recorded_size(p), Some(50));

        // Far larger: jemalloc must move the block to another size class.
        let old = p;
        let p = ALLOC.realloc(p, Layout::from_size_align(50, 8).unwrap(), 1 << 20);
        assert_ne!(p, old, "a 50 B → 1 MiB realloc moves");
        assert_eq!(recorded_size(p), Some(1 << 20));
        assert_eq!(recorded_size(old), None, "the old address is forgotten");
        assert_eq!(*p.add(49), 0xAB, "contents kept on move");
        let mid = live_counters();
        assert_eq!(mid.0, before.0 + 1);
        assert_eq!(mid.1, before.1 + (1 << 20));

        // A failed realloc returns null and leaves the block and every figure
        // as they were.
        let big = Layout::from_size_align(1 << 20, 8).unwrap();
        let failed = ALLOC.realloc(p, big, isize::MAX as usize - 4096);
        assert!(failed.is_null());
        assert_eq!(recorded_size(p), Some(1 << 20));
        assert_eq!(*p.add(49), 0xAB);
        assert_eq!(live_counters(), mid);

        ALLOC.dealloc(p, big);
        assert_eq!(recorded_size(p), None);
    }
    assert_eq!(live_counters(), before);
}

fn alloc_zeroed_is_forwarded_and_counted() {
    let layout = Layout::from_size_align(64 * 1024, 16).unwrap();
    let before = live_counters();
    // SAFETY: valid layout, freed with the same layout.
    unsafe {
        // Dirty some memory of that size class first so zeroing is observable.
        let d = ALLOC.alloc(layout);
        d.write_bytes(0xFF, layout.size());
        ALLOC.dealloc(d, layout);
        let p = ALLOC.alloc_zeroed(layout);
        assert!(!p.is_null());
        assert!(
            std::slice::from_raw_parts(p, layout.size())
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(recorded_size(p), Some(64 * 1024));
        assert_eq!(live_counters(), (before.0 + 1, before.1 + 64 * 1024));
        ALLOC.dealloc(p, layout);
    }
    assert_eq!(live_counters(), before);
}

fn huge_requests_fail_cleanly() {
    let before = live_counters();
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(usize::MAX / 2).is_err());
    let mut w: Vec<u64> = vec![1, 2, 3];
    assert!(w.try_reserve_exact(isize::MAX as usize / 4).is_err());
    assert_eq!(w, [1, 2, 3], "a failed reserve keeps the vector");
    // SAFETY: a valid (if unsatisfiable) layout; null is the expected answer.
    let p =
        unsafe { ALLOC.alloc(Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap()) };
    assert!(p.is_null());
    drop(w);
    assert_eq!(live_counters(), before);
    // Requests jemalloc refuses, in each mode: a small one whose alignment
    // cannot be met, and a vast one with a plain alignment (larger than the
    // countdown, so the fast path, which counts before calling jemalloc,
    // never takes it). Neither is counted.
    let totals = || {
        let s = leakscope::stats().expect("stats");
        (s.total_blocks, s.total_bytes, s.live_blocks, s.live_bytes)
    };
    for mode in [Mode::Counters, Mode::Sampled, Mode::Exact] {
        leakscope::set_mode(mode);
        let before = totals();
        let layout = Layout::from_size_align(16, 1 << 62).unwrap();
        // SAFETY: a valid (if unsatisfiable) layout; null is the expected answer.
        let p = unsafe { ALLOC.alloc(layout) };
        assert!(p.is_null(), "{mode:?}");
        // SAFETY: as above.
        let p = unsafe { ALLOC.alloc_zeroed(layout) };
        assert!(p.is_null(), "{mode:?}");
        let vast = Layout::from_size_align(isize::MAX as usize / 2, 8).unwrap();
        // SAFETY: as above.
        let p = unsafe { ALLOC.alloc(vast) };
        assert!(p.is_null(), "{mode:?}");
        assert_eq!(
            totals(),
            before,
            "{mode:?}: a failed allocation is not counted"
        );
    }
}

fn alignments_of_4096_and_2_mib_are_honoured_and_recorded() {
    let before = live_counters();
    for &(size, align) in &[
        (100usize, 4096usize),
        (8192, 4096),
        (1000, 2 << 20),
        (3 << 20, 2 << 20),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: valid layout, freed with the same layout.
        unsafe {
            let p = ALLOC.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "{size} B aligned to {align}");
            p.write_bytes(1, size);
            assert_eq!(recorded_size(p), Some(size as u64));
            let q = ALLOC.realloc(p, layout, size * 2);
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "realloc keeps the alignment");
            assert_eq!(recorded_size(q), Some(size as u64 * 2));
            ALLOC.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
        }
    }
    assert_eq!(live_counters(), before);
}

fn the_trackers_own_allocations_are_never_tracked() {
    let before = live_counters();
    let recorded_before = tracker::totals().live_blocks;
    // Resolving symbols loads and caches debug info (megabytes); snapshots
    // copy the recorder. None of it may appear in the counters or the
    // recorder once the results are dropped.
    {
        let snap = tracker::snapshot();
        for s in snap.stacks.iter().take(50) {
            let frames = symbols::resolve_stack(&s.frames);
            black_box(symbols::block_type(&frames));
        }
        black_box(symbols::build_info());
    }
    assert_eq!(live_counters(), before);
    assert_eq!(tracker::totals().live_blocks, recorded_before);
    let snap = tracker::snapshot();
    for b in &snap.blocks {
        let frames = symbols::resolve_stack(&snap.stacks[b.stack as usize].frames);
        assert!(
            !frames.iter().any(|f| f.function.contains("gimli")
                || f.function.starts_with("leakscope::symbols")
                || f.function.starts_with("leakscope::tracker::recorder")),
            "a tracker allocation was recorded: {frames:#?}"
        );
    }
}

#[inline(never)]
fn storm_worker(seed: u64, ops: usize) {
    let mut x = seed | 1;
    let mut held: Vec<Option<Vec<u8>>> = (0..64).map(|_| None).collect();
    for _ in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 16 + (x % 4096) as usize;
        held[(x >> 20) as usize % 64] = Some(vec![0u8; size]);
    }
    drop(held);
}

fn sixteen_thread_storm_with_concurrent_snapshots_returns_to_baseline() {
    // Warm up thread creation so that any lazily created runtime state exists
    // before the baseline is taken.
    std::thread::spawn(|| storm_worker(1, 10)).join().unwrap();
    let before = live_counters();
    let recorded_before = tracker::totals().live_blocks;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let snapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut taken = 0;
            while !stop.load(Ordering::Relaxed) {
                let snap = tracker::snapshot();
                let sum: u64 = snap.stacks.iter().map(|s| s.stats.live_blocks).sum();
                assert_eq!(
                    sum, snap.heap.live_blocks,
                    "stack totals sum to the heap total"
                );
                // Blocks are copied shard by shard while others allocate:
                // each names a stack of the copy.
                for b in &snap.blocks {
                    assert!(snap.stacks[b.stack as usize].stats.total_blocks > 0);
                }
                taken += 1;
            }
            taken
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|i| std::thread::spawn(move || storm_worker(0x9E37_79B9 * (i + 1), 20_000)))
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    let snapshots = snapper.join().expect("snapshot thread");
    drop(stop);
    assert!(snapshots > 0);
    assert!(started.elapsed() < Duration::from_secs(120), "no deadlock");
    assert_eq!(live_counters(), before, "counters back to the baseline");
    assert_eq!(
        tracker::totals().live_blocks,
        recorded_before,
        "recorded live blocks back to the baseline"
    );
    let snap = tracker::snapshot();
    assert_eq!(
        snap.blocks.len() as u64,
        snap.heap.live_blocks,
        "quiescent: blocks match totals"
    );
    let storm = common::site_totals(&snap, "alloc_exact::storm_worker");
    assert_eq!(storm.live_blocks, 0);
    assert!(storm.total_blocks >= 16 * 20_000);
}

/// Allocates a block of `size` bytes from one of 48 stacks (`depth` deep
/// in recursion), so that lanes and the global store meet new stacks.
#[inline(never)]
fn block_from_depth(depth: u32, size: usize) -> Vec<u8> {
    if depth == 0 {
        return black_box(vec![1u8; size]);
    }
    let v = block_from_depth(depth - 1, size);
    black_box(&v);
    v
}

/// Keeps `n` blocks of `size` bytes for as long as `stop` is unset, then
/// frees them. Meanwhile it churns: rings of blocks from many stacks, each
/// ring larger than the last, so its lane's tables keep growing (their
/// arrays replaced) while snapshots copy them.
fn lasting_and_churning(
    seed: u64,
    n: usize,
    size: usize,
    kept: std::sync::mpsc::Sender<Vec<usize>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let lasting: Vec<Box<[u8]>> = (0..n).map(|_| vec![9u8; size].into_boxed_slice()).collect();
    kept.send(lasting.iter().map(|b| b.as_ptr() as usize).collect())
        .unwrap();
    let mut x = seed | 1;
    let mut round = 1;
    while !stop.load(Ordering::Relaxed) {
        let mut ring = Vec::new();
        for _ in 0..round * 2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ring.push(block_from_depth(
                (x % 48) as u32,
                8 + (x >> 40) as usize % 200,
            ));
        }
        drop(ring);
        round = round % 20 + 1;
    }
    drop(lasting);
}

fn snapshots_copied_without_locks_see_every_lasting_block_once() {
    // Four threads each keep 3 000 blocks of a size no other block here
    // has, and churn; snapshots taken meanwhile copy their lanes without
    // the lanes' locks. Each must hold every lasting block exactly once,
    // at its size.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let sizes = [1_111usize, 1_213, 1_319, 1_423];
    let workers: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let (tx, stop) = (tx.clone(), stop.clone());
            std::thread::spawn(move || {
                lasting_and_churning(0x2545_F491 * (i as u64 + 1), 3_000, size, tx, stop)
            })
        })
        .collect();
    let lasting: Vec<(usize, usize)> = sizes
        .iter()
        .flat_map(|_| rx.recv().unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|a| (a, 0))
        .collect();
    let lasting: std::collections::HashMap<usize, usize> = lasting.into_iter().collect();
    assert_eq!(lasting.len(), 4 * 3_000);
    // Stops the workers even if an assertion fails, so that no churn
    // outlives this test.
    struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stopping = StopOnDrop(stop.clone());
    let before = tracker::locked_copies();
    let mut snapshots = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while snapshots < 5 || Instant::now() < until {
        let snap = tracker::snapshot();
        // A churned block may be in two lanes' copies (freed after its
        // lane was copied, its address reused in a lane copied later); a
        // lasting block lives throughout, in one lane.
        let mut seen = std::collections::HashMap::new();
        for b in &snap.blocks {
            if lasting.contains_key(&b.addr) {
                assert!(
                    sizes.contains(&(b.size as usize)),
                    "{:#x}: {} bytes",
                    b.addr,
                    b.size
                );
                *seen.entry(b.addr).or_insert(0) += 1;
            }
        }
        assert_eq!(
            seen.len(),
            lasting.len(),
            "snapshot {snapshots}: every lasting block"
        );
        assert!(
            seen.values().all(|&n| n == 1),
            "snapshot {snapshots}: each once"
        );
        let sum: u64 = snap.stacks.iter().map(|s| s.stats.live_blocks).sum();
        assert_eq!(sum, snap.heap.live_blocks, "stack totals sum to the heap's");
        snapshots += 1;
    }
    drop(stopping);
    for w in workers {
        w.join().unwrap();
    }
    println!(
        "  {snapshots} snapshots; {} parts copied under a lock",
        tracker::locked_copies() - before
    );
}

static TEARDOWN_LEAK: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        // Runs during thread-local teardown, possibly after leakscope's own
        // per-thread state was unregistered.
        let churn: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        black_box(&churn);
        drop(churn);
        let kept = Box::leak(Box::new([7u8; 48]));
        TEARDOWN_LEAK.store(kept.as_mut_ptr(), Ordering::Relaxed);
    }
}

thread_local! {
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

fn allocation_during_thread_teardown_is_counted() {
    std::thread::spawn(|| ()).join().unwrap();
    let before = live_counters();
    std::thread::spawn(|| {
        ON_EXIT.with(|_| ());
        black_box(vec![1u8; 10]);
    })
    .join()
    .unwrap();
    let leaked = TEARDOWN_LEAK.load(Ordering::Relaxed);
    assert!(!leaked.is_null(), "the destructor ran");
    assert_eq!(
        live_counters(),
        (before.0 + 1, before.1 + 48),
        "exactly the one leak"
    );
    assert_eq!(recorded_size(leaked), Some(48));
}

fn fork_while_other_threads_allocate_does_not_deadlock_the_child() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    storm_worker(i + 7, 500);
                    black_box(tracker::totals());
                }
            })
        })
        .collect();
    for round in 0..20 {
        // SAFETY: the child only allocates, reads leakscope's state and
        // calls _exit; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let v: Vec<u64> = (0..1000).collect();
            let snap = tracker::snapshot();
            let ok = leakscope::stats().is_ok() && !snap.stacks.is_empty() && v.len() == 1000;
            // SAFETY: ending the child without running the parent's atexit.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        common::wait_child(pid, &format!("fork child {round}"));
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
}

static BEFORE_MAIN: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static BEFORE_MAIN_LEN: AtomicUsize = AtomicUsize::new(0);

#[inline(never)]
extern "C" fn allocate_before_main() {
    let v: Vec<u8> = vec![42; 333];
    BEFORE_MAIN_LEN.store(v.len(), Ordering::Relaxed);
    BEFORE_MAIN.store(v.leak().as_mut_ptr(), Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static RUN_BEFORE_MAIN: extern "C" fn() = allocate_before_main;

fn allocations_before_main_are_tracked() {
    let p = BEFORE_MAIN.load(Ordering::Relaxed);
    assert!(!p.is_null(), "the constructor ran before main");
    assert_eq!(BEFORE_MAIN_LEN.load(Ordering::Relaxed), 333);
    assert!(
        // SAFETY: the constructor leaked 333 initialised bytes at p.
        unsafe { std::slice::from_raw_parts(p, 333) }
            .iter()
            .all(|&b| b == 42)
    );
    assert_eq!(
        recorded_size(p),
        Some(333),
        "recorded in exact mode from the start"
    );
    let snap = tracker::snapshot();
    let site = common::site_totals(&snap, "alloc_exact::allocate_before_main");
    assert_eq!((site.live_blocks, site.live_bytes), (1, 333));
}

/// The live table's hash maps double as they fill; memory is checked every
/// quarter octave across one doubling, so no point of the cycle is missed.
fn exact_mode_keeps_at_most_48_bytes_per_live_block() {
    tracker::reset();
    for k in 0..=4 {
        let n = (100_000.0 * 2f64.powf(k as f64 / 4.0)) as u64;
        let kept: Vec<Box<u64>> = (0..n).map(Box::new).collect();
        let mem = tracker::memory();
        assert!(mem.live_blocks > n, "{mem:?}");
        assert!(mem.per_live_block() <= 48.0, "{n} boxes: {mem:?}");
        drop(kept);
    }
}

/// The resolved frames of the live block at `addr`.
fn frames_of_block(addr: usize) -> Vec<symbols::Frame> {
    let snap = tracker::snapshot();
    let b = snap
        .blocks
        .iter()
        .find(|b| b.addr == addr)
        .expect("recorded");
    symbols::resolve_stack(&snap.stacks[b.stack as usize].frames)
}

fn a_threads_closure_is_the_site_and_its_box_the_type() {
    // Allocated in a thread's closure, one frame below std's thread start
    // (which goes through __rust_begin_short_backtrace): the closure is the
    // site and the box its type, not std's `Box<dyn FnOnce>`.
    let boxed = std::thread::spawn(|| common::keep_frame(Box::new([7u8; 48])))
        .join()
        .unwrap();
    let frames = frames_of_block(&*boxed as *const [u8; 48] as usize);
    let site = symbols::allocation_site(&frames).unwrap();
    assert!(
        site.function.starts_with(
            "alloc_exact::a_threads_closure_is_the_site_and_its_box_the_type::{closure"
        ),
        "{frames:#?}"
    );
    assert!(site.is_program());
    assert_eq!(symbols::block_type(&frames).name, "Box<[u8; 48]>");
    assert!(
        symbols::site_label(&frames).starts_with("alloc_exact::a_threads_closure"),
        "{}",
        symbols::site_label(&frames)
    );
    // A frame whose source is a dependency's is not the program's, even
    // outside the standard library.
    let mut dep = site.clone();
    dep.file = Some(
        "/root/.cargo/registry/src/index.crates.io-0/reqwest-0.13.5/src/async_impl/response.rs"
            .into(),
    );
    dep.function = "<reqwest::async_impl::response::Response>::text::{closure#0}".into();
    assert!(!dep.is_program() && !dep.is_runtime());
    let mut through = frames.clone();
    let at = through.iter().position(|f| f.is_program()).unwrap();
    through.insert(at, dep);
    assert!(
        symbols::site_label(&through).ends_with(" via reqwest::…::Response::text"),
        "{}",
        symbols::site_label(&through)
    );
    let none: Vec<symbols::Frame> = through[..=at].to_vec();
    assert!(
        symbols::site_label(&none).starts_with("[no program frame] <reqwest::"),
        "{}",
        symbols::site_label(&none)
    );
    drop(boxed);
}

/// `n` blocks of `size` bytes, in a vector of exactly `n` (one more block).
#[inline(never)]
fn handed_blocks(n: usize, size: usize) -> Vec<Box<[u8]>> {
    (0..n).map(|_| vec![1u8; size].into_boxed_slice()).collect()
}

fn blocks_handed_between_threads_keep_exact_figures_and_the_peak_sums_them() {
    tracker::reset();
    // Two threads alive at once record in lanes of their own: A allocates
    // first, then B while A's blocks live; both hand theirs to main, which
    // frees A's (a free of another lane's blocks) and keeps B's.
    let turn = std::sync::Arc::new(std::sync::Barrier::new(2));
    let (ta, tb) = (turn.clone(), turn);
    let a = std::thread::spawn(move || {
        let v = handed_blocks(100, 1000);
        ta.wait();
        ta.wait();
        v
    });
    let b = std::thread::spawn(move || {
        tb.wait();
        let v = handed_blocks(100, 1000);
        tb.wait();
        v
    });
    let from_a = a.join().expect("thread A");
    let from_b = b.join().expect("thread B");
    // Each thread: 100 blocks of 1000 B and a vector of 100 boxed slices
    // (16 B each).
    let per_thread = 100 * 1000 + 100 * 16;
    drop(from_a);
    let snap = tracker::snapshot();
    let site = common::site_totals(&snap, "alloc_exact::handed_blocks");
    assert_eq!(
        (site.total_blocks, site.total_bytes),
        (202, 2 * per_thread),
        "allocated on two threads"
    );
    assert_eq!(
        (site.live_blocks, site.live_bytes),
        (101, per_thread),
        "A's blocks freed on main, B's live"
    );
    // At the peak both threads' blocks were live (with the threads'
    // own small blocks: handles, the barrier).
    let site_at_peak: u64 = snap
        .stacks
        .iter()
        .filter(|s| {
            let frames = symbols::resolve_stack(&s.frames);
            symbols::allocation_site(&frames)
                .is_some_and(|site| site.function.starts_with("alloc_exact::handed_blocks"))
        })
        .map(|s| s.stats.at_peak_bytes)
        .sum();
    assert_eq!(site_at_peak, 2 * per_thread, "the site's bytes at the peak");
    let at_peak: u64 = snap.stacks.iter().map(|s| s.stats.at_peak_bytes).sum();
    assert_eq!(snap.heap.peak_bytes, at_peak, "the peak is the stacks' sum");
    assert!(
        snap.heap.peak_bytes - 2 * per_thread < 4096,
        "the peak holds both threads' blocks and little else: {}",
        snap.heap.peak_bytes
    );
    assert_eq!(snap.blocks.len() as u64, snap.heap.live_blocks);
    drop(from_b);
    let after = common::site_totals(&tracker::snapshot(), "alloc_exact::handed_blocks");
    assert_eq!((after.live_blocks, after.live_bytes), (0, 0));
}

fn threads_that_come_and_go_take_over_lanes_instead_of_adding_them() {
    // Each lane is a fixed part of the tracker's memory: a thread that
    // exits gives its lane back, and the next thread takes it over.
    std::thread::spawn(|| black_box(handed_blocks(10, 100)))
        .join()
        .unwrap();
    let fixed = tracker::memory().fixed;
    let mut kept = Vec::new();
    for _ in 0..50 {
        kept.push(
            std::thread::spawn(|| handed_blocks(10, 100))
                .join()
                .unwrap(),
        );
    }
    assert_eq!(tracker::memory().fixed, fixed, "no lane added");
    // Their blocks outlive them, in the lanes the threads left.
    let site = common::site_totals(&tracker::snapshot(), "alloc_exact::handed_blocks");
    assert!(site.live_blocks >= 50 * 11, "{site:?}");
    drop(kept);
}
