//! The allocator core in counters and sampled mode, and switching modes at
//! run time. Tests run one at a time on the main thread (see `common`).

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

mod common;

use common::shapes;

use std::hint::black_box;

use leakscope::tracker::{self, Snapshot};
use leakscope::{Alloc, Mode};

#[global_allocator]
static ALLOC: Alloc = Alloc::new();

tests!(
    default_mode_is_sampled,
    counters_are_exact,
    sampled_estimates_of_big_sites_are_within_ten_percent,
    vecs_grown_by_push_are_estimated_without_bias,
    every_growth_shape_is_estimated_without_bias,
    the_stack_store_stays_bounded_when_stacks_never_repeat,
    sampled_memory_is_small,
    blocks_recorded_in_exact_mode_are_forgotten_after_switching_down,
    off_counts_nothing_yet_forgets_records_and_measures,
);

/// Live (bytes, blocks) of the stacks whose allocation site is `function`.
fn site_live(snap: &Snapshot, function: &str) -> (u64, u64) {
    let t = common::site_totals(snap, function);
    (t.live_bytes, t.live_blocks)
}

fn default_mode_is_sampled() {
    // LEAKSCOPE_MODE is not set for the test run.
    if std::env::var_os("LEAKSCOPE_MODE").is_none() {
        assert_eq!(leakscope::mode(), Mode::Sampled);
    }
    assert_eq!(leakscope::sample_bytes(), 524_288);
}

#[inline(never)]
fn hundred_byte_boxes(n: usize) -> Vec<Box<[u8; 100]>> {
    common::keep_frame((0..n).map(|i| Box::new([i as u8; 100])).collect())
}

fn counters_are_exact() {
    leakscope::set_mode(Mode::Counters);
    let recorded = tracker::totals();
    let before = leakscope::stats().unwrap();
    let mut boxes = hundred_byte_boxes(1000);
    boxes.truncate(700);
    boxes.shrink_to_fit();
    let after = leakscope::stats().unwrap();
    // 1000 boxes and their Vec (8000 bytes), 300 boxes freed, then the Vec
    // shrunk by a realloc to 5600 bytes (one more block allocated and one
    // freed, as a realloc counts).
    assert_eq!(after.total_blocks - before.total_blocks, 1000 + 1 + 1);
    assert_eq!(
        after.total_bytes - before.total_bytes,
        1000 * 100 + 8000 + 5600
    );
    assert_eq!(after.freed_blocks - before.freed_blocks, 300 + 1);
    assert_eq!(after.freed_bytes - before.freed_bytes, 300 * 100 + 8000);
    assert_eq!(after.live_blocks - before.live_blocks, 701);
    assert_eq!(after.live_bytes - before.live_bytes, 700 * 100 + 5600);
    assert!(after.peak_live_bytes >= after.live_bytes);
    assert_eq!(
        tracker::totals().total_blocks,
        recorded.total_blocks,
        "counters mode records no stacks"
    );
    drop(boxes);
    let end = leakscope::stats().unwrap();
    assert_eq!(end.live_blocks, before.live_blocks);
    assert_eq!(end.live_bytes, before.live_bytes);
    assert!(end.jemalloc.allocated > 0 && end.jemalloc.resident >= end.jemalloc.active);
    // Blocks on both sides of the fast path's 64 KiB limit (above it they
    // are counted after jemalloc serves them), some zeroed, 64 of each.
    let sizes = [65_535usize, 65_536, 65_537, 1 << 20];
    let mut big: Vec<Vec<u8>> = Vec::with_capacity(256);
    for i in 0..64 {
        for n in sizes {
            big.push(if i % 2 == 0 {
                vec![0u8; n]
            } else {
                Vec::with_capacity(n)
            });
        }
    }
    let with_big = leakscope::stats().unwrap();
    let expected: u64 = 64 * sizes.iter().sum::<usize>() as u64 + 256 * 24;
    assert_eq!(with_big.live_blocks - end.live_blocks, 256 + 1);
    assert_eq!(with_big.live_bytes - end.live_bytes, expected);
    drop(big);
    let gone = leakscope::stats().unwrap();
    assert_eq!(
        (gone.live_blocks, gone.live_bytes),
        (end.live_blocks, end.live_bytes)
    );
    leakscope::set_mode(Mode::Sampled);
}

#[inline(never)]
fn site_pages(total: usize) -> Vec<Vec<u8>> {
    common::keep_frame((0..total / 4096).map(|_| vec![1u8; 4096]).collect())
}

#[inline(never)]
fn site_records(total: usize) -> Vec<Vec<u8>> {
    common::keep_frame((0..total / 1000).map(|_| vec![2u8; 1000]).collect())
}

#[inline(never)]
fn site_buffers(total: usize) -> Vec<Vec<u8>> {
    common::keep_frame(
        (0..total / (200 << 10))
            .map(|_| vec![3u8; 200 << 10])
            .collect(),
    )
}

#[inline(never)]
fn site_nodes(total: usize) -> Vec<Box<[u64; 6]>> {
    common::keep_frame((0..total / 48).map(|i| Box::new([i as u64; 6])).collect())
}

fn sampled_estimates_of_big_sites_are_within_ten_percent() {
    // The relative error of a site's estimate is about sqrt(R / S) for a site
    // of S bytes in blocks much smaller than the mean R. ±10% for a site of
    // 5% of a 300 MB heap (16 MB) holds at three standard deviations with a
    // mean of 16 KiB; at the default 512 KiB it takes sites of ~500 MB.
    leakscope::set_mode(Mode::Sampled);
    leakscope::set_sample_bytes(16 << 10);
    let mb = 1 << 20;
    let pages = site_pages(150 * mb);
    let records = site_records(90 * mb);
    let buffers = site_buffers(45 * mb);
    let nodes = site_nodes(16 * mb);
    let snap = tracker::snapshot();
    assert!(snap.estimated, "sampled figures are marked as estimates");
    let cases = [
        (
            "alloc_sampled::site_pages",
            pages.len() * 4096 + pages.capacity() * 24,
            pages.len() + 1,
        ),
        (
            "alloc_sampled::site_records",
            records.len() * 1000 + records.capacity() * 24,
            records.len() + 1,
        ),
        (
            "alloc_sampled::site_buffers",
            buffers.len() * (200 << 10) + buffers.capacity() * 24,
            buffers.len() + 1,
        ),
        (
            "alloc_sampled::site_nodes",
            nodes.len() * 48 + nodes.capacity() * 8,
            nodes.len() + 1,
        ),
    ];
    let total: usize = cases.iter().map(|c| c.1).sum();
    for (site, bytes, blocks) in cases {
        assert!(bytes * 20 >= total, "{site} holds at least 5% of the heap");
        let (est_bytes, est_blocks) = site_live(&snap, site);
        let err = (est_bytes as f64 - bytes as f64) / bytes as f64;
        assert!(
            err.abs() <= 0.10,
            "{site}: estimated {est_bytes} B, true {bytes} B ({:+.1}%)",
            err * 100.0
        );
        let err = (est_blocks as f64 - blocks as f64) / blocks as f64;
        assert!(
            err.abs() <= 0.10,
            "{site}: estimated {est_blocks} blocks, true {blocks} ({:+.1}%)",
            err * 100.0
        );
    }
    drop((pages, records, buffers, nodes));
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::site_pages"),
        (0, 0),
        "freed samples are forgotten"
    );
    leakscope::set_sample_bytes(leakscope::tracker::DEFAULT_SAMPLE_BYTES);
}

/// A `Vec<u8>` pushed to 64 bytes: reallocated from 8 to 16, 32, 64.
#[inline(never)]
fn grown_to_64() -> Vec<u8> {
    let mut v = Vec::new();
    for b in 0..64u8 {
        v.push(b);
    }
    common::keep_frame(v)
}

/// A `Vec<u8>` of 64 bytes allocated at its size.
#[inline(never)]
fn reserved_64() -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    for b in 0..64u8 {
        v.push(b);
    }
    common::keep_frame(v)
}

#[inline(never)]
fn many(n: usize, make: fn() -> Vec<u8>) -> Vec<Vec<u8>> {
    common::keep_frame((0..n).map(|_| make()).collect())
}

fn vecs_grown_by_push_are_estimated_without_bias() {
    // A block grown by realloc has one chance to be sampled per byte it
    // ever held, as a block allocated at its final size has: 8 + 8 + 16 +
    // 32 bytes of growth, not 8 + 16 + 32 + 64 fresh bytes (which
    // over-estimated these Vecs by 87.5%). 200 000 blocks of 64 bytes at a
    // mean of 4 KiB are about 3 100 samples: a standard deviation of 1.8%,
    // so ±10% holds at five and a half.
    leakscope::set_mode(Mode::Sampled);
    leakscope::set_sample_bytes(4 << 10);
    let n = 200_000;
    let grown = many(n, grown_to_64);
    let reserved = many(n, reserved_64);
    let snap = tracker::snapshot();
    for site in ["alloc_sampled::grown_to_64", "alloc_sampled::reserved_64"] {
        let (bytes, blocks) = site_live(&snap, site);
        eprintln!(
            "{site}: {bytes} B ({:+.1}%), {blocks} blocks ({:+.1}%)",
            (bytes as f64 / (n * 64) as f64 - 1.0) * 100.0,
            (blocks as f64 / n as f64 - 1.0) * 100.0
        );
        let err = bytes as f64 / (n * 64) as f64 - 1.0;
        assert!(
            err.abs() <= 0.10,
            "{site}: estimated {bytes} B, true {} B ({:+.1}%)",
            n * 64,
            err * 100.0
        );
        let err = blocks as f64 / n as f64 - 1.0;
        assert!(
            err.abs() <= 0.10,
            "{site}: estimated {blocks} blocks, true {n} ({:+.1}%)",
            err * 100.0
        );
    }
    drop((grown, reserved));
    leakscope::set_sample_bytes(leakscope::tracker::DEFAULT_SAMPLE_BYTES);
}

fn sampled_memory_is_small() {
    leakscope::set_mode(Mode::Sampled);
    // Hash maps keep their capacity: start from empty ones, so what is
    // measured is this workload's samples, not an earlier test's.
    tracker::reset();
    let kept: Vec<Vec<u8>> = (0..200_000).map(|_| vec![0u8; 512]).collect();
    let mem = tracker::memory();
    // 100 MB at a 512 KiB mean: about 200 samples.
    assert!(mem.live_blocks < 2_000, "{mem:?}");
    assert!(mem.fixed <= 4 << 20, "fixed part within 4 MiB: {mem:?}");
    // The target: at most 4 MiB fixed plus 64 bytes per live sample (a
    // few hundred samples in 256 shards still pay each shard's smallest
    // table, so per sample alone they cost more).
    let total = mem.fixed + mem.live_table + mem.stacks;
    assert!(total <= (4 << 20) + 64 * mem.live_blocks, "{mem:?}");
    black_box(&kept);
    drop(kept);
}

#[inline(never)]
fn exact_blocks(n: usize) -> Vec<Box<u64>> {
    common::keep_frame((0..n as u64).map(Box::new).collect())
}

fn blocks_recorded_in_exact_mode_are_forgotten_after_switching_down() {
    leakscope::set_mode(Mode::Exact);
    let boxes = exact_blocks(5000);
    leakscope::set_mode(Mode::Counters);
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::exact_blocks"),
        (5000 * 8 + 5000 * 8, 5001)
    );
    let more = exact_blocks(100);
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::exact_blocks").1,
        5001,
        "counters mode records nothing"
    );
    drop(boxes);
    drop(more);
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::exact_blocks"),
        (0, 0),
        "frees after the switch still remove records"
    );
    leakscope::set_mode(Mode::Sampled);
}

#[inline(never)]
fn recorded_box() -> Box<[u8; 256]> {
    common::keep_frame(Box::new([9u8; 256]))
}

#[inline(never)]
fn off_churn(n: usize) {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(64);
    for i in 0..n {
        let mut v = vec![i as u8; 16 + i % 512];
        v.push(1);
        kept.push(v);
        if kept.len() == 64 {
            kept.clear();
        }
    }
    black_box(kept);
}

fn off_counts_nothing_yet_forgets_records_and_measures() {
    // A block recorded while sampling (a 1-byte mean samples every block).
    leakscope::set_mode(Mode::Sampled);
    leakscope::set_sample_bytes(1);
    let kept = recorded_box();
    leakscope::set_sample_bytes(leakscope::tracker::DEFAULT_SAMPLE_BYTES);
    let snap = tracker::snapshot();
    assert_eq!(site_live(&snap, "alloc_sampled::recorded_box").1, 1);
    drop(snap);
    // Off: allocations, reallocs and frees go straight to jemalloc and
    // count nowhere.
    leakscope::set_mode(Mode::Off);
    let before = leakscope::stats().unwrap();
    off_churn(10_000);
    let after = leakscope::stats().unwrap();
    assert_eq!(
        (after.total_blocks, after.freed_blocks),
        (before.total_blocks, before.freed_blocks),
        "nothing is counted while off"
    );
    // …but a recorded block freed while off is forgotten,
    drop(kept);
    // and a measurement counts in any mode (its thread is seen).
    let m = leakscope::testing::measure(|| black_box(vec![0u8; 100]).len());
    assert_eq!((m.allocated_blocks, m.allocated_bytes), (1, 100));
    assert_eq!((m.freed_blocks, m.freed_bytes), (1, 100));
    leakscope::set_mode(Mode::Sampled);
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::recorded_box"),
        (0, 0),
        "the block freed while off is gone from the recorder"
    );
    // Counting again once on.
    let before = leakscope::stats().unwrap();
    off_churn(1_000);
    let after = leakscope::stats().unwrap();
    assert!(after.total_blocks >= before.total_blocks + 1_000);
}

/// Allocates one 64-byte block at the end of a chain of calls that spells
/// `path`'s low `depth` bits (a call through [`left`] or [`right`] per
/// bit): each path is a stack of its own. Keeps the block when `keep`.
#[inline(never)]
fn spell(path: u32, depth: u32, keep: bool) -> Option<Box<[u8; 64]>> {
    if depth == 0 {
        let b = black_box(Box::new([0u8; 64]));
        return keep.then_some(b);
    }
    if path & 1 == 0 {
        left(path >> 1, depth - 1, keep)
    } else {
        right(path >> 1, depth - 1, keep)
    }
}

#[inline(never)]
fn left(path: u32, depth: u32, keep: bool) -> Option<Box<[u8; 64]>> {
    black_box(spell(path, depth, keep))
}

#[inline(never)]
fn right(path: u32, depth: u32, keep: bool) -> Option<Box<[u8; 64]>> {
    black_box(spell(path, depth, keep))
}

#[inline(never)]
fn kept_before_the_flood() -> Box<[u8; 333]> {
    common::keep_frame(Box::new([1u8; 333]))
}

fn the_stack_store_stays_bounded_when_stacks_never_repeat() {
    // Every block sampled (a 1-byte mean), 65 536 distinct stacks (16
    // levels of two call sites, within 64 frames), of which 64 keep their
    // block: the store fills at MAX_STACKS, new stacks then count in its
    // stand-in, and a collection drops the stacks no live block uses.
    leakscope::set_mode(Mode::Sampled);
    tracker::reset();
    leakscope::set_sample_bytes(1);
    tracker::set_max_frames(64);
    let old = kept_before_the_flood();
    let kept: Vec<_> = (0..1u32 << 16)
        .filter_map(|path| spell(path, 16, path % 1024 == 0))
        .collect();
    leakscope::set_sample_bytes(tracker::DEFAULT_SAMPLE_BYTES);
    tracker::set_max_frames(tracker::DEFAULT_MAX_FRAMES);
    let mem = tracker::memory();
    eprintln!("{mem:?}");
    assert!(mem.stack_collections >= 1, "{mem:?}");
    assert!(
        mem.stacks_stored as usize <= tracker::MAX_STACKS + 1,
        "{mem:?}"
    );
    assert!(mem.stacks <= 16 << 20, "{mem:?}");
    let snap = tracker::snapshot();
    assert_eq!(
        site_live(&snap, "alloc_sampled::kept_before_the_flood"),
        (333, 1),
        "a live block keeps its stack through collections"
    );
    // Each kept block is live in the snapshot, under a stack of its own or
    // the stand-in of the full store.
    let live_64 = snap
        .blocks
        .iter()
        .filter(|b| kept.iter().any(|k| k.as_ptr() as usize == b.addr))
        .count();
    assert_eq!((live_64, kept.len()), (64, 64));
    drop((old, kept));
    tracker::reset();
}

fn every_growth_shape_is_estimated_without_bias() {
    // Each shape's truth from one exact run, then 40 sampled runs at a
    // 16 KiB mean (about 50 samples of the 0.8 MB each shape holds). The
    // mean estimate must lie within four standard errors of the truth (a
    // biased rule, such as a shrunk block keeping a record that weighs its
    // old size, is off by 20-50), and the spread of the estimates within
    // what 40 runs allow of theory's (0.5-1.6 of it).
    const RUNS: usize = 40;
    let r = 16 << 10;
    let measured: Vec<_> = shapes::all()
        .iter()
        .map(|shape| shapes::measure(shape, 1, r, RUNS))
        .collect();
    for m in &measured {
        eprintln!("{}", m.line());
    }
    leakscope::set_sample_bytes(tracker::DEFAULT_SAMPLE_BYTES);
    let whole = shapes::whole(&measured);
    eprintln!("{}", whole.line());
    for m in measured.iter().chain([&whole]) {
        if m.theory_sd < 1.0 {
            // Blocks so large that every one is sampled: exact every time.
            assert!(m.estimates.iter().all(|&e| e == m.truth), "{}", m.line());
            continue;
        }
        assert!(m.bias_in_se().abs() <= 4.0, "biased: {}", m.line());
        let ratio = m.spread() / m.theory_sd;
        assert!((0.5..=1.6).contains(&ratio), "spread: {}", m.line());
    }
}
