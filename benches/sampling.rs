//! How true sampled mode's estimates are, per growth shape: each shape
//! (allocated at once, pushed, shrunk, grown in steps, `VecDeque`,
//! `String`, `HashMap`, `BTreeMap`, and 16 MiB `Vec`s pushed an element at
//! a time) measured once in exact mode for the truth, then in `RUNS`
//! sampled runs at the default mean (512 KiB). Prints each shape's mean
//! error, its distance from the truth in standard errors, and the spread
//! of the estimates against what theory gives (a block of `z` bytes is in
//! the sample with probability `1 - e^(-z/R)` and weighs `z` over that).
//!
//! `cargo bench --bench sampling` (`BENCH_RUNS=N` for more runs).

#[path = "../tests/common/mod.rs"]
mod common;

use common::shapes;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

/// Sampled runs per shape, unless `BENCH_RUNS` says otherwise.
const RUNS: usize = 24;

/// Each shape at 16 times the test's size: about 13 MB a shape, 64 MiB for
/// each of the large `Vec`s.
const SCALE: usize = 16;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 2)
        .unwrap_or(RUNS);
    let r = leakscope::tracker::DEFAULT_SAMPLE_BYTES;
    println!("# Sampled estimates per growth shape\n");
    println!(
        "At a {} KiB mean, {runs} runs per shape: each shape's mean error (in \
         standard errors of the mean too) and spread, against what theory says.\n",
        r >> 10
    );
    println!("```text");
    let measured: Vec<_> = shapes::all()
        .iter()
        .map(|shape| {
            let m = shapes::measure(shape, SCALE, r, runs);
            println!("{}", m.line());
            m
        })
        .collect();
    let whole = shapes::whole(&measured);
    println!("{}", whole.line());
    println!("```");
}
