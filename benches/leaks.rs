//! The growth history's cost: the CPU its thread takes and the memory it
//! keeps, on the leaky_spider crawler (the leaking spider, so that the heap
//! and its rows keep changing), in sampled and in exact mode. Each mode
//! runs in a child process of its own, with a point every second (ten
//! times the default rate, so that the run sees many points); the share
//! at the default interval (10 s) is the CPU per point over 10 s.
//!
//! Run: `cargo bench --bench leaks` (`BENCH_QUICK=1`: 10 s per mode
//! instead of 30).

#[allow(dead_code)]
#[path = "../examples/leaky_spider/engine.rs"]
mod engine;
#[path = "../examples/leaky_spider/site.rs"]
mod site;
#[path = "../examples/leaky_spider/spiders.rs"]
mod spiders;

use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

/// CPU seconds (user and system) of this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The fields after the command's closing parenthesis start at the
        // third: utime is the 14th, stime the 15th.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        total += (field(11) + field(12)) / ticks;
    }
    total
}

/// Crawls for `secs` with the growth history running, then prints one
/// line of figures: points, history CPU seconds, wall seconds, history
/// bytes, the last point's seconds, and the seconds `leaks()` took.
fn crawl(secs: u64) {
    leakscope::leaks::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let catalogue = Arc::new(site::Catalogue::load().unwrap());
    let server = runtime.block_on(site::start(catalogue)).unwrap();
    let spiders: Vec<Box<dyn spiders::Spider>> = vec![
        Box::new(spiders::NastySpider::new(false)),
        Box::new(spiders::GoodSpider::new()),
    ];
    let settings = engine::Settings {
        concurrency: 16,
        max_pages: None,
        blocking_pipeline: None,
        rate: Some(1000.0),
    };
    let engine = engine::Engine::new(server, spiders, settings).unwrap();
    let started = Instant::now();
    runtime.spawn(engine.clone().run());
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = thread_cpu("leakscope-histo");
    let history = leakscope::leaks::history();
    let t = Instant::now();
    let report = leakscope::leaks();
    let report_secs = t.elapsed().as_secs_f64();
    assert!(!report.suspects.is_empty(), "{report}");
    println!(
        "{} {cpu} {wall} {} {} {report_secs}",
        history.times.len(),
        history.history_bytes,
        history.last_point_seconds
    );
    engine.stop();
    runtime.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = if std::env::var_os("BENCH_QUICK").is_some() {
        10
    } else {
        30
    };
    if std::env::var_os("LEAKS_BENCH_CHILD").is_some() {
        return crawl(secs);
    }
    println!("# The growth history on the leaking spider ({secs} s per mode, a point every 1 s)\n");
    println!(
        "| mode | points | history CPU | share at 1 s | share at 10 s (default) | memory | last point | leaks() |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for mode in ["sampled", "exact"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("LEAKS_BENCH_CHILD", "1")
            .env("LEAKSCOPE_MODE", mode)
            .env("LEAKSCOPE_WATCH_INTERVAL", "1")
            .env("LEAKSCOPE_CONSOLE", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let (points, cpu, wall, bytes, last, report) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        println!(
            "| {mode} | {points} | {cpu:.2} s | {:.2} % | {:.3} % (target ≤ 1 %) | {:.1} KiB (bound 2 MiB) | {:.1} ms | {:.1} ms |",
            100.0 * cpu / wall,
            100.0 * cpu / points.max(1.0) / 10.0,
            bytes / 1024.0,
            last * 1000.0,
            report * 1000.0
        );
    }
}
