//! leakscope::testing's costs: `measure` of an empty closure, and a small
//! allocating workload under `measure` against the same outside it (same
//! thread, sampled mode outside).
//!
//! Run: `cargo bench --bench testing`.

use std::hint::black_box;
use std::time::Instant;

use leakscope::testing::measure;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

/// Builds a few small structures: allocation-heavy, but doing some work.
#[inline(never)]
fn workload() -> usize {
    let mut total = 0;
    for i in 0..200 {
        let v: Vec<u32> = (0..i % 50).collect();
        let s = format!("item {i} has {} values", v.len());
        total += v.iter().sum::<u32>() as usize + s.len();
    }
    total
}

fn fastest(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_nanos() as f64);
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let empty = fastest(20, || {
        for _ in 0..10_000 {
            black_box(measure(|| ()));
        }
    }) / 10_000.0;
    let mut outside = f64::INFINITY;
    let mut inside = f64::INFINITY;
    for _ in 0..15 {
        outside = outside.min(fastest(1, || {
            black_box(workload());
        }));
        inside = inside.min(fastest(1, || {
            black_box(measure(workload));
        }));
    }
    println!("# leakscope::testing\n");
    println!("| measure | result | target |");
    println!("|---|---:|---:|");
    println!("| measure(empty closure) | {:.0} ns | ≤ 1 µs |", empty);
    println!(
        "| workload (400 allocations) under measure vs outside | {:.2}× ({:.0} µs vs {:.0} µs) | ≤ 4× |",
        inside / outside,
        inside / 1e3,
        outside / 1e3
    );
}
