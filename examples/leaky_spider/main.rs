//! leaky_spider: a small but real async crawler with the two bugs Scrapy
//! users know best, and leakscope's console to find them while it runs.
//!
//! - The nasty spider keeps each `HtmlResponse` in the next `Request`'s
//!   meta: every response stays alive (the leak of Scrapy's memory-leak guide). `--fixed` cures it.
//! - `--blocking-pipeline SECS`: a pipeline step blocks the item pipeline's
//!   worker thread for SECS out of every 2 × SECS; responses pile up in the scraper slot waiting for their
//!   items, `needs_backout()` turns True and downloads stop: the crawl looks
//!   hung (a blocked Scrapy pipeline), while the console still answers.
//!
//! ```text
//! cargo run --release --example leaky_spider
//! telnet localhost 6023      # user leakscope, password from the log
//! >>> prefs()
//! >>> get_oldest('HtmlResponse').url
//! >>> hpy().heap().bytype()
//! >>> est()
//! >>> dump_dhat('/tmp/spider.json')
//! ```

mod engine;
mod site;
mod spiders;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use leakscope::console::Console;
use leakscope::trackref;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

#[derive(Parser)]
#[command(about = "A crawler that leaks, and the console to see it")]
struct Args {
    /// Keep responses out of request meta (no leak).
    #[arg(long)]
    fixed: bool,
    /// Stop crawling after this many pages (the console stays up until
    /// engine.stop(), or use --exit).
    #[arg(long)]
    pages: Option<u64>,
    /// Exit as soon as the pages are crawled.
    #[arg(long)]
    exit: bool,
    /// A pipeline step that blocks a worker thread for SECS seconds, then
    /// lets it run for SECS, over and over.
    #[arg(long, value_name = "SECS")]
    blocking_pipeline: Option<f64>,
    /// The console's port (default: the first free of 6023..=6073).
    #[arg(long)]
    console_port: Option<u16>,
    /// Serve the page (/), /debug/pprof/heap and /metrics on this address (also
    /// LEAKSCOPE_HTTP; port 0: any free port).
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<std::net::SocketAddr>,
    /// Pages per second at most.
    #[arg(long)]
    rate: Option<f64>,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

fn live(class: &str) -> usize {
    trackref::live_refs()
        .iter()
        .find(|c| c.name == class)
        .map_or(0, |c| c.live)
}

fn main() -> std::process::ExitCode {
    match crawl(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leaky_spider: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn crawl(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let catalogue = Arc::new(site::Catalogue::load()?);
    let server = runtime.block_on(site::start(catalogue))?;
    let spiders: Vec<Box<dyn spiders::Spider>> = vec![
        Box::new(spiders::NastySpider::new(args.fixed)),
        Box::new(spiders::GoodSpider::new()),
    ];
    let settings = engine::Settings {
        concurrency: args.concurrency.max(1),
        max_pages: args.pages,
        blocking_pipeline: args.blocking_pipeline.map(Duration::from_secs_f64),
        rate: args.rate,
    };
    let engine = engine::Engine::new(server, spiders, settings)?;

    // The same names in the telnet console and in `leakscope attach PID`.
    let names = || {
        Console::builder()
            .var("engine", engine::Handle(engine.clone()))
            .func("est", {
                let engine = engine.clone();
                move || engine.status()
            })
    };
    // LEAKSCOPE_CONSOLE=off, LEAKSCOPE_CONSOLE_PORT, LEAKSCOPE_CONSOLE_PASSWORD;
    // --console-port, set after, wins.
    let mut console = names().with_default_env();
    if let Some(port) = args.console_port {
        console = console.port(port);
    }
    let _console = console.spawn()?;
    leakscope::console::enable_attach(names())?;
    let mut http = leakscope::http::Endpoint::builder().with_default_env();
    if let Some(addr) = args.http {
        http = http.addr(addr);
    }
    let http = http.spawn()?;
    if let Some(addr) = http.addr() {
        eprintln!(
            "The page: open http://{addr}/ in a browser; pprof and metrics on http://{addr}/ \
             (go tool pprof http://{addr}/debug/pprof/heap)"
        );
    }

    eprintln!(
        "Crawling http://www.somenastyspider.com/ and http://www.goodspider.com/ (served on {server}){}",
        if args.fixed { ", fixed" } else { "" }
    );
    runtime.spawn(engine.clone().run());

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut announced_done = false;
    while !engine.stopped() {
        std::thread::sleep(Duration::from_millis(250));
        if last.0.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let pages = engine.pages.load(Ordering::Relaxed);
        let rate = (pages - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), pages);
        let heap = leakscope::stats().map_or(0, |s| s.live_bytes);
        let line = format!(
            "pages {pages} ({rate:.0}/s), items {}, live responses {}, heap {}{}",
            engine.items.load(Ordering::Relaxed),
            live("HtmlResponse"),
            mib(heap),
            if engine.needs_backout() {
                ", backing out"
            } else {
                ""
            }
        );
        match &bar {
            Some(b) => b.set_message(line),
            None => eprintln!("{line}"),
        }
        if !announced_done && engine.finished() {
            announced_done = true;
            let failures = engine
                .failures()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            eprintln!(
                "Crawled {} pages in {:.1}s{failures}; the console stays up until engine.stop().",
                engine.pages.load(Ordering::SeqCst),
                started.elapsed().as_secs_f64()
            );
            if args.exit {
                engine.stop();
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    eprintln!(
        "Stopped after {} pages and {} items.",
        engine.pages.load(Ordering::Relaxed),
        engine.items.load(Ordering::Relaxed)
    );
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Bytes in MiB, as the progress line shows the heap.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
