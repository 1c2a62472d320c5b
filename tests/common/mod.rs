//! A sequential test runner for the allocator's test binaries.
//!
//! These binaries check process-wide figures (live blocks, the recorder's
//! totals), which libtest's own threads would disturb by allocating while a
//! test measures. So each such binary has `harness = false` and runs its tests
//! one after another on the main thread, reporting like libtest does.

#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// Runs `tests` in order (those whose name contains a command-line filter,
/// if any), prints one line per test and libtest's summary line, and exits
/// with 101 when any failed.
pub fn run(tests: &[(&str, fn())]) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let started = Instant::now();
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, test) in &chosen {
        let t = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!(
            "test {name} ... {} ({:.2}s)",
            if ok { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len(),
        tests.len() - chosen.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// Sums the totals of the stacks whose allocation site is `function`
/// (closures of `function` included).
pub fn site_totals(
    snap: &leakscope::recorder::Snapshot,
    function: &str,
) -> leakscope::recorder::SiteStats {
    let mut sum = leakscope::recorder::SiteStats::default();
    for s in &snap.stacks {
        let frames = leakscope::symbols::resolve_stack(&s.frames);
        if let Some(site) = leakscope::symbols::allocation_site(&frames)
            && site.function.split("::{closure").next() == Some(function)
        {
            sum.total_bytes += s.stats.total_bytes;
            sum.total_blocks += s.stats.total_blocks;
            sum.live_bytes += s.stats.live_bytes;
            sum.live_blocks += s.stats.live_blocks;
        }
    }
    sum
}

/// `tests!(a, b, c)` runs the functions `a`, `b`, `c` with [`run`].
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        fn main() {
            common::run(&[$((stringify!($name), $name as fn())),*]);
        }
    };
}
