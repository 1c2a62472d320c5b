//! Rendered tables against golden files: each test renders fixed figures
//! and compares the text with `tests/golden/NAME.txt`, so that a change
//! of layout is a diff to review. `GOLDEN_UPDATE=1 cargo test --lib golden`
//! writes the files anew instead.

use std::time::Duration;

use super::WIDTH;
use crate::leaks::{GrowthHistory, GrowthRow};
use crate::stats::{JemallocStats, Stats};
use crate::symbols::Frame;
use crate::tracker::Mode;

/// Compares `text` with the golden file `name`, or writes it when
/// `GOLDEN_UPDATE` is set.
fn check(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == text,
        "{name} renders differently from {}; if the change is meant, run \
         GOLDEN_UPDATE=1 cargo test --lib golden and review the diff.\n--- rendered:\n{text}\
         --- golden:\n{want}",
        path.display()
    );
}

#[test]
fn stats_in_exact_mode() {
    let s = Stats {
        mode: Some(Mode::Exact),
        live_bytes: 108_858_490,
        live_blocks: 11_570,
        total_bytes: 17_185_783_750,
        total_blocks: 3_209_140,
        freed_bytes: 17_076_925_260,
        freed_blocks: 3_197_570,
        peak_live_bytes: 109_174_773,
        peak_tolerance: 0,
        threads: 11,
        longest_tracker_wait: Duration::from_micros(14_776),
        locked_copies: 0,
        own_bytes: 9_017_729,
        recorder_bytes: 1_116_152,
        debug_info_bytes: 4_986_240,
        own_bound: 22_220_140,
        views_budget: 295_650_056,
        jemalloc: JemallocStats {
            allocated: 122_789_520,
            active: 137_052_160,
            resident: 153_071_616,
            mapped: 174_256_128,
            retained: 38_080_512,
            metadata: 6_371_312,
        },
    };
    check("stats_exact", &s.to_string());
}

#[test]
fn stacks_fold_the_runtime() {
    let f = |function: &str, file: &str, line: u32| Frame {
        addr: 0,
        function: function.into(),
        file: Some(file.into()),
        line: Some(line),
        column: None,
        inlined: false,
        v0: true,
    };
    let rustc = "/rustc/abc/library/alloc/src/raw_vec.rs";
    let tokio = "/root/.cargo/registry/src/index.crates.io-0/tokio-1.0.0/src/rt.rs";
    let mut frames = vec![
        f("<alloc::vec::Vec<u8>>::push", rustc, 2410),
        f(
            "<app::engine::Engine>::crawl::{closure#0}",
            "/src/app/engine.rs",
            229,
        ),
        f("app::run", "/src/app/main.rs", 40),
    ];
    for k in 0..12 {
        frames.push(f(&format!("<tokio::runtime::Runtime>::poll{k}"), tokio, 7));
    }
    let list = vec![
        (
            frames.clone(),
            crate::heap::Totals {
                count: 1194,
                size: 47_708_954,
            },
        ),
        (
            frames[1..].to_vec(),
            crate::heap::Totals { count: 3, size: 96 },
        ),
    ];
    check("stacks_80", &super::stacks(&list, 10, WIDTH, false));
    check("stacks_60_full", &super::stacks(&list, 10, 60, true));
}

#[test]
fn the_growth_history_table() {
    let row = |label: &str, bytes: [u64; 4]| GrowthRow {
        label: label.into(),
        bytes: bytes.to_vec(),
        blocks: bytes.iter().map(|b| b / 1000).collect(),
    };
    let h = GrowthHistory {
        running: true,
        interval_seconds: 10.0,
        times: vec![0.0, 10.0, 20.0, 30.0],
        modes: Vec::new(),
        total: row("(all)", [4 << 20, 12 << 20, 20 << 20, 28 << 20]),
        types: vec![
            row("Vec<u8>", [3 << 20, 11 << 20, 19 << 20, 27 << 20]),
            row(
                "Arc<leakscope::trackref::tracked::TrackedInner<app::HtmlResponse>>",
                [1 << 16, 2 << 16, 3 << 16, 4 << 16],
            ),
        ],
        sites: vec![row(
            "<app::engine::Engine>::crawl::{closure#0} (engine.rs:229)",
            [3 << 20, 11 << 20, 19 << 20, 27 << 20],
        )],
        history_bytes: 48_128,
        last_point_seconds: 0.004,
        skipped_points: 0,
    };
    check("history_80", &super::leaks::history(&h, WIDTH));
    check("history_60", &super::leaks::history(&h, 60));
}
