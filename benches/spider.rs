//! The leaky_spider crawler's throughput under leakscope (sampled, the
//! default) against the same crawler on plain tikv-jemallocator, in the
//! same run: this binary runs itself again once per measurement, each time
//! with its allocator chosen before the first allocation, alternating.
//!
//! Run: `cargo bench --bench spider`.

// The example's own modules; not every item is used here.
#[path = "../tests/common/chosen.rs"]
mod chosen;
#[allow(dead_code)]
#[path = "../examples/leaky_spider/engine.rs"]
mod engine;
#[path = "../examples/leaky_spider/site.rs"]
mod site;
#[path = "../examples/leaky_spider/spiders.rs"]
mod spiders;

use chosen::Chosen;

use std::sync::Arc;
use std::time::{Duration, Instant};

/// leakscope (sampled, the default), or plain jemalloc when
/// `SPIDER_BENCH_ALLOCATOR=jemalloc`.
#[global_allocator]
static ALLOC: Chosen<leakscope::Alloc, tikv_jemallocator::Jemalloc> = Chosen::new(
    c"SPIDER_BENCH_ALLOCATOR",
    b"jemalloc",
    leakscope::Alloc::new(),
    tikv_jemallocator::Jemalloc,
);

const PAGES: u64 = 20_000;

/// Crawls PAGES pages (fixed spider: the leak would make the two runs do
/// different work) and prints the seconds it took.
fn crawl() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let catalogue = Arc::new(site::Catalogue::load().unwrap());
    let server = runtime.block_on(site::start(catalogue)).unwrap();
    let spiders: Vec<Box<dyn spiders::Spider>> = vec![
        Box::new(spiders::NastySpider::new(true)),
        Box::new(spiders::GoodSpider::new()),
    ];
    let settings = engine::Settings {
        concurrency: 16,
        max_pages: Some(PAGES),
        blocking_pipeline: None,
        rate: None,
    };
    let engine = engine::Engine::new(server, spiders, settings).unwrap();
    let started = Instant::now();
    runtime.spawn(engine.clone().run());
    while !engine.finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("{}", started.elapsed().as_secs_f64());
    engine.stop();
    runtime.shutdown_timeout(Duration::from_secs(1));
}

fn run_once(allocator: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SPIDER_BENCH_ALLOCATOR", allocator)
        .env("SPIDER_BENCH_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("SPIDER_BENCH_CHILD").is_some() {
        return crawl();
    }
    let rounds = if std::env::var_os("BENCH_QUICK").is_some() {
        3
    } else {
        7
    };
    let (mut plain, mut tracked) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(run_once("jemalloc"));
        tracked.push(run_once("leakscope"));
    }
    plain.sort_by(f64::total_cmp);
    tracked.sort_by(f64::total_cmp);
    let (p, t) = (plain[rounds / 2], tracked[rounds / 2]);
    println!(
        "# leaky_spider throughput ({PAGES} pages, fixed spider, median of {rounds} alternating runs)\n"
    );
    println!("| allocator | time | pages/s | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| tikv-jemallocator | {p:.3} s | {:.0} | 1.00× |",
        PAGES as f64 / p
    );
    println!(
        "| leakscope (sampled) | {t:.3} s | {:.0} | {:.3}× (target ≤ 1.01×) |",
        PAGES as f64 / t,
        t / p
    );
}
