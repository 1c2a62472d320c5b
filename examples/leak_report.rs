//! A small spider-shaped program with the classic leak (each new request
//! keeps the previous response in its `meta`), and the report leakscope gives
//! of it while it runs: allocator figures, then the live heap by type and
//! allocation site.
//!
//! ```text
//! cargo run --release --example leak_report -- [PAGES] [--exact] [--fixed]
//! ```

use std::collections::HashMap;
use std::time::Instant;

use leakscope::{Mode, symbols, tracker};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

/// A downloaded page.
#[allow(dead_code)]
struct HtmlResponse {
    url: String,
    body: Vec<u8>,
    headers: HashMap<String, String>,
}

/// A request to download; `meta` may carry anything along, including (the
/// leak) the response that produced it.
#[allow(dead_code)]
struct Request {
    url: String,
    meta: Option<Box<HtmlResponse>>,
}

#[inline(never)]
fn download(req: &Request, page: usize) -> HtmlResponse {
    let mut headers = HashMap::new();
    headers.insert("content-type".to_string(), "text/html".to_string());
    HtmlResponse {
        url: req.url.clone(),
        body: vec![b'x'; 8 * 1024 + page % 1024],
        headers,
    }
}

#[inline(never)]
fn parse(resp: HtmlResponse, page: usize, keep_response: bool) -> Request {
    Request {
        url: format!("http://www.somenastyspider.com/product?id={}", page + 1),
        meta: keep_response.then(|| Box::new(resp)),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pages: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let fixed = args.iter().any(|a| a == "--fixed");
    if args.iter().any(|a| a == "--exact") {
        leakscope::set_mode(Mode::Exact);
    }
    eprintln!(
        "crawling {pages} pages in {} mode ({})",
        leakscope::mode().name(),
        if fixed {
            "fixed"
        } else {
            "leaking responses through request meta"
        }
    );
    let started = Instant::now();
    // The scheduler's history of requests: harmless on its own, a leak once
    // every request holds on to a whole response.
    let mut seen: Vec<Request> = Vec::new();
    let mut next = Request {
        url: "http://www.somenastyspider.com/".to_string(),
        meta: None,
    };
    for page in 0..pages {
        let resp = download(&next, page);
        let req = parse(resp, page, !fixed);
        seen.push(std::mem::replace(&mut next, req));
    }
    let elapsed = started.elapsed();

    let stats = leakscope::stats().expect("jemalloc statistics");
    println!(
        "{pages} pages in {:.2}s; live {} blocks, {} bytes; peak {} bytes; jemalloc allocated {} resident {}",
        elapsed.as_secs_f64(),
        stats.live_blocks,
        stats.live_bytes,
        stats.peak_live_bytes,
        stats.jemalloc.allocated,
        stats.jemalloc.resident
    );

    let snap = tracker::snapshot();
    if let Some(note) = symbols::build_info().note() {
        println!("{note}");
    }
    let mut by_site: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for s in &snap.stacks {
        if s.stats.live_bytes == 0 {
            continue;
        }
        let frames = symbols::resolve_stack(&s.frames);
        let ty = symbols::block_type(&frames);
        let site = symbols::allocation_site(&frames).map_or_else(
            || "?".to_string(),
            |f| {
                format!(
                    "{} ({}:{})",
                    f.function,
                    f.file.as_deref().unwrap_or("?"),
                    f.line.unwrap_or(0)
                )
            },
        );
        let name = if ty.ambiguous {
            format!("{} (ambiguous)", ty.name)
        } else {
            ty.name
        };
        let e = by_site.entry((name, site)).or_default();
        e.0 += s.stats.live_bytes;
        e.1 += s.stats.live_blocks;
    }
    let mut rows: Vec<_> = by_site.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    println!(
        "\nLive heap by type and site{}:",
        if snap.estimated {
            format!(
                " (estimates from samples, one per {} bytes on average)",
                leakscope::sample_bytes()
            )
        } else {
            String::new()
        }
    );
    for ((ty, site), (bytes, blocks)) in rows.iter().take(8) {
        println!(
            "{bytes:>12} B {blocks:>8} blocks  {ty}\n{:>32}{site}",
            "at "
        );
    }
    drop(seen);
}
