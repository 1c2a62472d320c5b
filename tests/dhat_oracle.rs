//! Exact mode against the oracle: the same workload under `dhat::Alloc`
//! gives the same total and end-of-run bytes and blocks per allocation site,
//! and the same global peak, both in the recorder and in the DHAT file
//! leakscope writes.
//!
//! A binary has one global allocator, chosen here once, before the first
//! allocation, from `ORACLE_ALLOCATOR`: the test re-executes this binary with
//! `ORACLE_ALLOCATOR=dhat`, so dhat's run is a separate process that never
//! touches jemalloc, and compares what both report.

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::chosen::Chosen;
use leakscope::{Mode, symbols, tracker};

/// leakscope in exact mode, or dhat when `ORACLE_ALLOCATOR=dhat`.
#[global_allocator]
static ALLOC: Chosen<leakscope::Alloc, dhat::Alloc> = Chosen::new(
    c"ORACLE_ALLOCATOR",
    b"dhat",
    leakscope::Alloc::with_default_mode(Mode::Exact),
    dhat::Alloc,
);

fn main() {
    if ALLOC.second_chosen() {
        run_under_dhat();
        return;
    }
    common::run(&[(
        "exact_mode_matches_dhat_per_allocation_site",
        exact_mode_matches_dhat_per_allocation_site,
    )]);
}

#[allow(dead_code)]
struct Widget {
    id: u64,
    name: [u8; 24],
}

#[allow(dead_code)]
struct Gadget(u64, u32);

#[inline(never)]
fn wl_widgets() -> Vec<Box<Widget>> {
    (0..1000)
        .map(|id| {
            Box::new(Widget {
                id,
                name: [b'w'; 24],
            })
        })
        .collect()
}

#[inline(never)]
fn wl_gadgets() -> Vec<Gadget> {
    let mut v = Vec::new();
    for i in 0..1000 {
        v.push(Gadget(i, i as u32));
    }
    v
}

#[inline(never)]
fn wl_strings() {
    for i in 0..500 {
        std::mem::forget(format!("a leaked string number {i}"));
    }
}

#[inline(never)]
fn wl_churn() {
    for i in 0..2000usize {
        let mut v: Vec<u8> = Vec::with_capacity(16 + i % 300);
        v.extend(std::iter::repeat_n(1u8, i % 500));
        v.shrink_to_fit();
        std::hint::black_box(&v);
    }
}

#[inline(never)]
fn wl_map() -> HashMap<u64, String> {
    (0..300u64).map(|i| (i, i.to_string().repeat(3))).collect()
}

/// Runs the workload; returns what it keeps alive.
fn workload() -> (Vec<Box<Widget>>, Vec<Gadget>, HashMap<u64, String>) {
    let w = wl_widgets();
    let g = wl_gadgets();
    wl_strings();
    wl_churn();
    let m = wl_map();
    (w, g, m)
}

/// Per workload function: (total bytes, total blocks, end bytes, end blocks).
type Sites = BTreeMap<String, [u64; 4]>;

/// The workload function named in a frame description, if any.
fn workload_fn(frame: &str) -> Option<String> {
    let start = frame.find("dhat_oracle::wl_")?;
    let rest = &frame[start..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    Some(
        rest[..end]
            .trim_end_matches(':')
            .split("::{closure")
            .next()?
            .to_string(),
    )
}

fn run_under_dhat() {
    let path = std::env::temp_dir().join(format!("leakscope-oracle-{}.json", std::process::id()));
    let kept;
    {
        let _profiler = dhat::Profiler::builder()
            .file_name(&path)
            .trim_backtraces(None)
            .build();
        kept = workload();
    }
    let text = std::fs::read_to_string(&path).expect("dhat wrote its file");
    let _ = std::fs::remove_file(&path);
    let json: serde_json::Value = serde_json::from_str(&text).expect("dhat JSON");
    let ftbl: Vec<&str> = json["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut sites = Sites::new();
    // The global peak: every program point's bytes at it, summed.
    let peak: u64 = json["pps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pp| pp["gb"].as_u64().unwrap())
        .sum();
    sites.insert("global peak".into(), [peak, 0, 0, 0]);
    for pp in json["pps"].as_array().unwrap() {
        let site = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|i| workload_fn(ftbl[i.as_u64().unwrap() as usize]));
        if let Some(site) = site {
            let e = sites.entry(site).or_default();
            for (k, key) in ["tb", "tbk", "eb", "ebk"].iter().enumerate() {
                e[k] += pp[key].as_u64().unwrap();
            }
        }
    }
    println!("{}", serde_json::to_string(&sites).unwrap());
    drop(kept);
}

fn exact_mode_matches_dhat_per_allocation_site() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("ORACLE_ALLOCATOR", "dhat")
        .output()
        .expect("run the dhat half");
    assert!(
        out.status.success(),
        "dhat half failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("dhat's figures");
    let dhat: Sites = serde_json::from_str(line).unwrap();

    leakscope::set_mode(Mode::Exact);
    // Start afresh, as dhat's profiler does: only what the workload does.
    tracker::reset();
    let kept = workload();
    let snap = tracker::snapshot();
    let mut ours = Sites::new();
    for s in &snap.stacks {
        let frames = symbols::resolve_stack(&s.frames);
        if let Some(site) = frames.iter().find_map(|f| workload_fn(&f.function)) {
            let e = ours.entry(site).or_default();
            e[0] += s.stats.total_bytes;
            e[1] += s.stats.total_blocks;
            e[2] += s.stats.live_bytes;
            e[3] += s.stats.live_blocks;
        }
    }
    ours.insert("global peak".into(), [snap.heap.peak_bytes, 0, 0, 0]);
    // The same from the DHAT file leakscope writes.
    let file = leakscope::export::dhat::from_snapshot(&snap);
    let mut from_file = Sites::new();
    for pp in &file.pps {
        let frames = leakscope::export::dhat::frames_of(&file, pp);
        if let Some(site) = frames.iter().find_map(|f| workload_fn(&f.function)) {
            let e = from_file.entry(site).or_default();
            e[0] += pp.tb;
            e[1] += pp.tbk;
            e[2] += pp.eb;
            e[3] += pp.ebk;
        }
    }
    from_file.insert(
        "global peak".into(),
        [file.pps.iter().map(|pp| pp.gb).sum(), 0, 0, 0],
    );
    drop(kept);
    assert_eq!(dhat.len(), 6, "dhat saw every workload function: {dhat:?}");
    assert_eq!(
        ours, dhat,
        "per site [tb, tbk, eb, ebk] and the global peak: leakscope (left) vs dhat (right)"
    );
    assert_eq!(from_file, dhat, "the same, read from leakscope's DHAT file");
}
