//! `leakscope run`'s cost: a program that knows nothing of leakscope
//! (`fixtures/preload/churn.rs`, malloc and free in a loop), run plainly
//! on the C library's malloc, then with leakscope's preload library in
//! each mode, alternating, in the same run. `off` is jemalloc behind the
//! library's functions with nothing tracked: the difference between it
//! and the others is the tracking's own cost.
//!
//! Run: `cargo bench --bench preload`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// malloc/free pairs per thread in one run; exact mode, which unwinds
/// every allocation's stack, does fewer.
const PAIRS: usize = 10_000_000;
const EXACT_PAIRS: usize = 200_000;
/// Runs per configuration; the median is shown.
const RUNS: usize = 5;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The release preload library, built for this bench.
fn library() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-j2",
            "-p",
            "leakscope-preload",
        ])
        .current_dir(root())
        .status()
        .expect("cargo builds the preload library");
    assert!(status.success());
    root().join("target/release/libleakscope_preload.so")
}

/// The workload, built optimised with debug info, as a service would be.
fn workload() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("churn");
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--edition", "2024", "-O", "-g", "-o"])
        .arg(&out)
        .arg(root().join("fixtures/preload/churn.rs"))
        .status()
        .expect("rustc builds the workload");
    assert!(status.success());
    out
}

/// The nanoseconds a malloc/free pair took in one run of the workload,
/// with `mode` preloaded (or plainly when `None`).
fn once(program: &Path, library: &Path, mode: Option<&str>, threads: usize) -> f64 {
    let pairs = if mode == Some("exact") {
        EXACT_PAIRS
    } else {
        PAIRS
    };
    let mut command = Command::new(program);
    command
        .args([pairs.to_string(), threads.to_string()])
        .env("LEAKSCOPE_CONSOLE", "off")
        .env("LEAKSCOPE_WATCH_INTERVAL", "0")
        .env_remove("LD_PRELOAD");
    if let Some(mode) = mode {
        command
            .env("LD_PRELOAD", library)
            .env("LEAKSCOPE_MODE", mode);
    }
    let out = command.output().expect("the workload runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    seconds * 1e9 / pairs as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let library = library();
    let program = workload();
    let configs: [(&str, Option<&str>); 5] = [
        ("glibc malloc, plainly", None),
        ("leakscope run, off (jemalloc, untracked)", Some("off")),
        ("leakscope run, counters", Some("counters")),
        ("leakscope run, sampled (the default)", Some("sampled")),
        ("leakscope run, exact", Some("exact")),
    ];
    println!(
        "### A program run under `leakscope run` ({PAIRS} malloc/free pairs a thread, \
         {EXACT_PAIRS} in exact mode; median of {RUNS} alternating runs)\n"
    );
    for threads in [1, 2] {
        println!("{threads} thread(s):\n");
        println!("| configuration | per pair | ratio to plain |");
        println!("|---|---:|---:|");
        let mut times = vec![Vec::new(); configs.len()];
        for _ in 0..RUNS {
            for (i, (_, mode)) in configs.iter().enumerate() {
                times[i].push(once(&program, &library, *mode, threads));
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        for ((name, _), t) in configs.iter().zip(&medians) {
            println!("| {name} | {t:.1} ns | {:.2}× |", t / medians[0]);
        }
        println!();
    }
}
