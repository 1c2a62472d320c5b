//! Heap views in exact mode, on workloads of known shape: bytype, drilling
//! into a row, bysize, byage, setrelheap, diffs, paging, rendering widths,
//! snapshots while threads allocate, and the leak report.

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

mod common;

use std::hint::black_box;

use std::time::Duration;

use leakscope::heap::{Kind, Partition};
use leakscope::{Alloc, Mode, hpy};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

tests!(
    bytype_counts_widgets_exactly_and_the_row_drills_down_to_the_site,
    bysize_and_byage_put_blocks_in_their_buckets,
    setrelheap_hides_earlier_blocks,
    diff_after_300_more_widgets_shows_exactly_that,
    paging_shows_rows_11_to_20_on_more,
    rendering_fits_50_to_100_and_200_columns,
    snapshots_while_two_threads_allocate_are_consistent,
    the_leak_report_names_the_growing_type,
    leakscope_shows_and_gives_back_its_own_memory,
    the_consoles_work_is_leakscopes_memory_not_the_programs,
    a_child_forked_while_views_and_dumps_run_never_hangs,
    a_heap_at_the_memory_limit_is_a_memory_error_not_an_abort,
    the_growth_history_skips_points_near_the_memory_limit,
    seventy_thousand_threads_keep_rows_of_their_own,
);

common::widget!();

#[inline(never)]
fn make_widgets(n: u64) -> Vec<Box<Widget>> {
    common::keep_frame(
        (0..n)
            .map(|id| {
                Box::new(Widget {
                    id,
                    payload: [id; 4],
                })
            })
            .collect(),
    )
}

fn row_of<'a>(p: &'a Partition, label: &str) -> Option<(usize, &'a leakscope::heap::Row)> {
    p.rows().iter().enumerate().find(|(_, r)| r.label == label)
}

fn bytype_counts_widgets_exactly_and_the_row_drills_down_to_the_site() {
    let widgets = make_widgets(1000);
    let heap = hpy().heap();
    assert!(!heap.estimated());
    let by_type = heap.bytype();
    let (i, row) = row_of(&by_type, "Box<heap_views::Widget>").expect("a Widget row");
    assert_eq!((row.count, row.size), (1000, 40_000));
    let sub = by_type.row(i);
    assert_eq!((sub.count(), sub.size()), (1000, 40_000));
    let sites = sub.bysite();
    assert_eq!(sites.rows().len(), 1, "one site allocates them");
    assert!(
        sites.rows()[0]
            .label
            .starts_with("heap_views::make_widgets::{closure#0} (heap_views.rs:"),
        "{}",
        sites.rows()[0].label
    );
    let stacks = sub.stacks();
    assert_eq!(stacks.len(), 1);
    assert!(
        stacks[0]
            .0
            .iter()
            .any(|f| f.function == "heap_views::make_widgets")
    );
    // Totals equal the sum of rows.
    let sum: u64 = by_type.rows().iter().map(|r| r.size).sum();
    assert_eq!(sum, heap.size());
    drop(widgets);
}

#[inline(never)]
fn sized_blocks() -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(300);
    for _ in 0..100 {
        v.push(vec![0u8; 24]); // 17..32 B
        v.push(vec![0u8; 3000]); // 2049..4 KiB
        v.push(vec![0u8; 70_000]); // 65537..128 KiB
    }
    v
}

fn bysize_and_byage_put_blocks_in_their_buckets() {
    let old = make_widgets(50);
    std::thread::sleep(Duration::from_millis(1100));
    let blocks = sized_blocks();
    let heap = hpy().heap();
    // Every line of sized_blocks is a site of its own: sum over them.
    let sites = heap.bysite();
    let mut counts = std::collections::HashMap::new();
    for (i, _) in sites
        .rows()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.label.starts_with("heap_views::sized_blocks"))
    {
        for r in sites.row(i).bysize().rows() {
            *counts.entry(r.label.clone()).or_insert(0) += r.count;
        }
    }
    let count = |label: &str| counts.get(label).copied();
    assert_eq!(count("17..32 B"), Some(100));
    assert_eq!(count("2049..4 KiB"), Some(100));
    assert_eq!(count("65537..128 KiB"), Some(100));
    // The Vec holding them: 300 × 24 bytes = 7200 → 4097..8 KiB.
    assert_eq!(count("4097..8 KiB"), Some(1));

    let by_age = heap.byage();
    let (old_i, _) = by_age
        .rows()
        .iter()
        .enumerate()
        .find(|(_, r)| r.label == "1-10 s")
        .expect("blocks older than a second");
    let old_sites = by_age.row(old_i).bytype();
    assert_eq!(
        row_of(&old_sites, "Box<heap_views::Widget>").map(|(_, r)| r.count),
        Some(50)
    );
    let (young_i, _) = by_age
        .rows()
        .iter()
        .enumerate()
        .find(|(_, r)| r.label == "< 1 s")
        .expect("young blocks");
    assert!(row_of(&by_age.row(young_i).bytype(), "Box<heap_views::Widget>").is_none());
    drop((old, blocks));
}

fn setrelheap_hides_earlier_blocks() {
    let before = make_widgets(200);
    hpy().setrelheap();
    let after = make_widgets(30);
    let by_type = hpy().heap().bytype();
    assert_eq!(
        row_of(&by_type, "Box<heap_views::Widget>").map(|(_, r)| r.count),
        Some(30)
    );
    hpy().clear_relheap();
    let by_type = hpy().heap().bytype();
    assert_eq!(
        row_of(&by_type, "Box<heap_views::Widget>").map(|(_, r)| r.count),
        Some(230)
    );
    drop((before, after));
}

fn diff_after_300_more_widgets_shows_exactly_that() {
    let first = make_widgets(100);
    let before = hpy().heap();
    let more = make_widgets(300);
    let now = hpy().heap();
    let d = &now - &before;
    assert_eq!(d.kind, Kind::Type);
    let w = d
        .rows
        .iter()
        .find(|r| r.label == "Box<heap_views::Widget>")
        .expect("Widget row");
    assert_eq!((w.count, w.size), (300, 12_000));
    assert_eq!(
        d.rows[0].label, "Box<heap_views::Widget>",
        "the largest change first"
    );
    // The Vec holding them is the only other real change; anything else is
    // the harness's noise, far smaller.
    for r in &d.rows[1..] {
        assert!(r.size.abs() < 12_000 / 4, "unexpected change {r:?}");
    }
    let text = d.to_string();
    assert!(text.contains("+300") && text.contains("+12000"), "{text}");
    drop((first, more));
}

/// Allocates one Vec per distinct length, from distinct sites: 25 types.
#[inline(never)]
fn many_types() -> Vec<Box<dyn std::any::Any>> {
    macro_rules! arrays {
        ($($n:literal)*) => { vec![$(Box::new([0u8; $n]) as Box<dyn std::any::Any>),*] };
    }
    arrays!(1001 1002 1003 1004 1005 1006 1007 1008 1009 1010 1011 1012 1013 1014 1015 1016 1017 1018 1019 1020 1021 1022 1023 1024 1025)
}

fn paging_shows_rows_11_to_20_on_more() {
    let kept = many_types();
    let p = hpy().heap().bysize().all();
    assert!(p.rows().len() >= 3);
    let by_type = hpy().heap().bytype();
    assert!(by_type.rows().len() > 20, "{} rows", by_type.rows().len());
    let first: Vec<usize> = by_type.page().map(|(i, _)| i).collect();
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    let text = by_type.to_string();
    assert!(text.starts_with("Partition of a set of "), "{text}");
    assert!(
        text.contains(&format!(
            "<{} more rows. Type e.g. '_.more' to view.>",
            by_type.rows().len() - 10
        )),
        "{text}"
    );
    let more = by_type.more();
    let second: Vec<usize> = more.page().map(|(i, _)| i).collect();
    assert_eq!(second, (10..20).collect::<Vec<_>>());
    let text = more.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Partition of a set of "),
        "the heading repeats"
    );
    assert!(lines[1].trim_start().starts_with("Index"));
    assert!(lines[3].trim_start().starts_with("10 "), "{text}");
    assert!(lines[12].trim_start().starts_with("19 "), "{text}");
    assert_eq!(by_type.all().page().count(), by_type.rows().len());
    drop(kept);
}

fn rendering_fits_50_to_100_and_200_columns() {
    let kept = make_widgets(10);
    let heap = hpy().heap();
    let p = heap.bytype();
    // `bysite`'s heading ("Allocation site") is wider than the narrowest
    // label: at every width from 50 up, a table too wide for all its
    // columns drops the cumulative ones rather than overflow.
    for view in [heap.bytype(), heap.bysite(), heap.bysize()] {
        for width in (50..=100).chain([200]) {
            let text = view.render(width);
            for line in text.lines() {
                if line.starts_with('<') {
                    continue;
                }
                assert!(
                    line.chars().count() <= width,
                    "{width}: {line:?} is {} wide",
                    line.chars().count()
                );
            }
        }
    }
    let text = p.render(80);
    // A table with a `(?)` row says once, under it, what that means.
    let ambiguous = text.lines().filter(|l| l.ends_with(" (?)")).count();
    assert!(
        ambiguous > 0,
        "the test's own Vec<Box<Widget>> is one: {text}"
    );
    assert_eq!(
        text.matches("(?): the type comes from a generic function")
            .count(),
        1,
        "{text}"
    );
    let heading = text.lines().next().unwrap();
    let t = p.heap().totals();
    assert_eq!(
        heading,
        format!(
            "Partition of a set of {} objects. Total size = {} bytes.",
            t.count, t.size
        )
    );
    let header: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "Index",
            "Count",
            "%",
            "Size",
            "%",
            "Cumulative",
            "%",
            "Type"
        ]
    );
    drop(kept);
}

#[inline(never)]
fn churn(seed: u64, stop: &std::sync::atomic::AtomicBool) {
    let mut x = seed | 1;
    let mut held: Vec<Option<Vec<u8>>> = (0..256).map(|_| None).collect();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        held[(x >> 40) as usize % 256] = Some(vec![1u8; 16 + (x % 2000) as usize]);
        if x.is_multiple_of(64) {
            std::thread::yield_now();
        }
    }
}

fn snapshots_while_two_threads_allocate_are_consistent() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(i + 1, &stop))
        })
        .collect();
    for _ in 0..5 {
        let heap = hpy().heap();
        for p in [heap.bytype(), heap.bysite(), heap.bysize(), heap.bythread()] {
            let count: u64 = p.rows().iter().map(|r| r.count).sum();
            let size: u64 = p.rows().iter().map(|r| r.size).sum();
            assert_eq!(
                (count, size),
                (heap.count(), heap.size()),
                "totals equal the sum of rows"
            );
            assert!(p.rows().iter().all(|r| r.count > 0));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[inline(never)]
fn grow(kept: &mut Vec<Box<Widget>>, n: u64) {
    kept.extend(make_widgets(n));
}

fn the_leak_report_names_the_growing_type() {
    let mut kept = Vec::new();
    // Growth every 40 ms, a point every 100 ms. The first points can be
    // slow (symbols resolved the first time), so grow until the report
    // names the type, within a deadline.
    leakscope::leaks::restart(Duration::from_millis(100));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        grow(&mut kept, 200);
        std::thread::sleep(Duration::from_millis(40));
        let r = leakscope::leaks();
        if r.suspects
            .iter()
            .any(|s| s.type_name == "Box<heap_views::Widget>")
            || std::time::Instant::now() > deadline
        {
            break r;
        }
    };
    let history = leakscope::leaks::history();
    leakscope::leaks::stop();
    let s = report
        .suspects
        .iter()
        .find(|s| s.type_name == "Box<heap_views::Widget>")
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert!(s.site.contains("heap_views::make_widgets"), "{s:#?}");
    // Exact figures: 40-byte widgets, no more than are kept, a history
    // that only rose.
    assert_eq!(report.mode, Mode::Exact);
    assert_eq!(s.bytes, s.blocks * 40, "{s:#?}");
    assert!(s.blocks > 0 && s.blocks <= kept.len() as u64, "{s:#?}");
    assert!(s.history.windows(2).all(|w| w[0] <= w[1]), "{s:#?}");
    assert!(
        s.bytes_per_minute > 0.0 && s.growing_seconds > 0.0,
        "{s:#?}"
    );
    // In exact mode the holder is named: the Vec the widgets are kept in.
    let held = s.held_by.as_ref().unwrap_or_else(|| panic!("{s:#?}"));
    // Every widget looked at (an even spread of at most 2000 of those the
    // report's heap held, taken a little after the history's last point).
    assert_eq!(held.blocks, held.of_blocks, "{s:#?}");
    assert!(
        held.of_blocks <= 2000 && held.of_blocks >= s.blocks.min(2000),
        "{s:#?}"
    );
    // Kept alive by the vector: the row of the dominator tree above them.
    let keeper = held.kept_by.as_ref().unwrap_or_else(|| panic!("{s:#?}"));
    assert_eq!(
        keeper.type_name.trim_end_matches(" (?)"),
        "Vec<Box<heap_views::Widget>>",
        "{s:#?}"
    );
    // (A stale word on a stack may hold a few widgets directly.)
    assert!(keeper.dominates * 10 >= s.blocks * 9, "{s:#?}");
    // Shown without module paths, within 80 columns.
    let shown = report.render(80);
    assert!(shown.contains(": Box<Widget>\n"), "{shown}");
    assert!(!shown.contains("heap_views::Widget"), "{shown}");
    assert!(shown.lines().all(|l| l.chars().count() <= 80), "{shown}");
    let shown = history.render(80);
    assert!(shown.starts_with("Growth history: "), "{shown}");
    assert!(shown.contains("Box<Widget>"), "{shown}");
    assert!(shown.lines().all(|l| l.chars().count() <= 80), "{shown}");
    drop(kept);
}

fn leakscope_shows_and_gives_back_its_own_memory() {
    // Resolving stacks reads this binary's debug information in place:
    // what stays is where each unit's code lies and the frames found, far
    // less than the debug information itself.
    let kept = make_widgets(100);
    // Earlier tests' views loaded it already: start from none.
    leakscope::symbols::release_debug_info();
    let before = leakscope::stats().unwrap();
    // An address no stack has: resolving it needs the debug information.
    let fresh = leakscope_shows_and_gives_back_its_own_memory as *const () as usize + 8;
    black_box(leakscope::symbols::resolve(fresh));
    black_box(hpy().heap().bysite().all().render(80));
    let resolved = leakscope::stats().unwrap();
    assert!(
        resolved.own_bytes < before.own_bytes + (1 << 20),
        "resolving frames keeps under 1 MiB: {} → {}",
        before.own_bytes,
        resolved.own_bytes
    );
    // The index of type layouts the graph's field names come from (where
    // each named type is defined: MiBs for this binary) is leakscope's own
    // memory, shown apart from the program's.
    black_box(leakscope::symbols::layouts().knows("heap_views::Widget"));
    let viewed = leakscope::stats().unwrap();
    assert!(
        viewed.own_bytes > resolved.own_bytes + (1 << 20),
        "{} → {}",
        resolved.own_bytes,
        viewed.own_bytes
    );
    // Not the program's: its live figure moved by far less.
    let program = viewed.live_bytes.abs_diff(before.live_bytes);
    assert!(program < viewed.own_bytes - before.own_bytes, "{program}");
    assert!(
        leakscope::stats()
            .unwrap()
            .to_string()
            .contains("leakscope itself")
    );
    // Given back: what stays is the bounded cache of resolved frames.
    leakscope::symbols::release_debug_info();
    let released = leakscope::stats().unwrap();
    assert!(
        released.own_bytes < resolved.own_bytes + (256 << 10),
        "{} → {}",
        viewed.own_bytes,
        released.own_bytes
    );
    // And views still work, parsing again.
    assert!(
        hpy()
            .heap()
            .bysite()
            .render(80)
            .starts_with("Partition of a set of")
    );
    drop(kept);
}

/// A console on a free port (password `pw`) and a client logged in.
fn console_and_client() -> (leakscope::console::Console, common::Client) {
    let console = leakscope::console::Console::builder()
        .port(0)
        .password("pw")
        .spawn()
        .expect("console");
    let mut c = common::Client::connect(console.addr().unwrap());
    c.login("pw");
    (console, c)
}

fn the_consoles_work_is_leakscopes_memory_not_the_programs() {
    // What a console session builds (heaps it keeps, the views' tables,
    // the snapshot copies) is leakscope's own memory: two heaps taken in a
    // row differ by nothing, and the program's live figure does not move
    // while the session works, in every mode that counts.
    let kept = make_widgets(20_000);
    let (_console, mut c) = console_and_client();
    // The growth history the console started takes and drops heaps of its
    // own in the background: stopped, so that leakscope's memory moves
    // only with this session's work.
    leakscope::leaks::stop();
    for mode in ["exact", "sampled", "counters"] {
        let switched = c.run(&format!("set_mode('{mode}')"));
        assert!(switched.contains(mode), "{switched}");
        // The session's first heap and the debug information, loaded once.
        assert_eq!(c.run("x = hpy().heap()"), "");
        black_box(c.run("x.bysite"));
        let before = leakscope::stats().unwrap();
        assert_eq!(c.run("y = hpy().heap()"), "");
        for view in ["y.bytype", "y.bysite", "y.bysize", "y.byage"] {
            black_box(c.run(view));
        }
        let diff = c.run("hpy().heap() - y");
        assert!(
            diff.starts_with("Difference: 0 blocks, 0 bytes"),
            "{mode}: {diff}"
        );
        let after = leakscope::stats().unwrap();
        // This thread's reads of the console's answers are all the program
        // did meanwhile: a few KiB, where the heap `y` alone holds MiBs.
        assert!(
            after.live_bytes.abs_diff(before.live_bytes) < 64 << 10,
            "{mode}: the program's live bytes moved from {} to {}",
            before.live_bytes,
            after.live_bytes
        );
        if mode == "exact" {
            assert!(
                after.own_bytes > before.own_bytes + (20_000 * 32),
                "{mode}: the kept heap is leakscope's own: {} -> {}",
                before.own_bytes,
                after.own_bytes
            );
        }
    }
    c.run("set_mode('exact')");
    drop(kept);
}

/// A tracked object, for the registry's locks.
struct Fetched {
    _ref: leakscope::trackref::ObjectRef<Fetched>,
    _body: Vec<u8>,
}

/// What a forked child does: writes a DHAT file (symbols, layouts), or
/// takes a heap under a baseline and uses the registry. Whether it worked.
#[inline(never)]
fn in_the_child(dumping: bool, dump: &std::path::Path) -> bool {
    if dumping {
        return leakscope::export::dhat::write(dump).is_ok();
    }
    let h = hpy();
    h.setrelheap();
    let after = h.heap();
    h.clear_relheap();
    // One object of its own is alive while the registry is read: the
    // allocating threads may have none alive at that moment.
    let new = leakscope::trackref::Tracked::new(Fetched {
        _ref: leakscope::trackref::ObjectRef::new(),
        _body: vec![0; 8],
    });
    let objects = leakscope::trackref::live_refs();
    drop(new);
    !objects.is_empty() && !after.estimated()
}

fn a_child_forked_while_views_and_dumps_run_never_hangs() {
    // In a process of its own: what the tests before it leave in the heap
    // would make each child's views slower (four times, measured), not the
    // forks harder.
    let test = "a_child_forked_while_views_and_dumps_run_never_hangs";
    if !common::in_fresh_process(test, "LEAKSCOPE_TEST_FORKS_ALONE", &[]) {
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    // The threads below stop when this test ends, even by a failed
    // assertion, so that no later test meets them.
    struct StopsThreads(Arc<AtomicBool>);
    impl Drop for StopsThreads {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stops = StopsThreads(stop.clone());
    let dir = std::env::temp_dir().join(format!("leakscope-fork-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Four threads allocate and register tracked objects; three sessions
    // loop over views, baselines and dumps (the symbol cache, the layouts,
    // the relative heap, the registry's shards).
    let mut threads: Vec<_> = (0..4u64)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    kept.push(leakscope::trackref::Tracked::new(Fetched {
                        _ref: leakscope::trackref::ObjectRef::new(),
                        _body: vec![i as u8; 64],
                    }));
                    if kept.len() > 500 {
                        kept.clear();
                    }
                    black_box(make_widgets(20));
                    // Busy, not hogging both cores: the children need one.
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();
    let (console, _) = console_and_client();
    let addr = console.addr().unwrap();
    for session in 0..3 {
        let stop = stop.clone();
        let dump = dir.join(format!("session-{session}.json"));
        threads.push(std::thread::spawn(move || {
            let mut c = common::Client::connect(addr);
            c.login("pw");
            let lines = [
                "x = hpy().heap()".to_string(),
                "x.bysite".into(),
                "x.bytype[0].byvia".into(),
                "hpy().setrelheap()".into(),
                format!("dump_dhat('{}')", dump.display()),
                "hpy().clear_relheap()".into(),
                "prefs()".into(),
            ];
            for line in lines.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // The sessions are load, not what is checked: on a machine
                // loaded far past its cores a view's answer may take more
                // than the usual 30 s, and the test's own end bounds them.
                black_box(c.run_within(line, 600));
            }
        }));
    }
    // Children that take a heap, a baseline and the registry, and
    // children that write a DHAT file (symbols, layouts) and exit.
    // What the children do, done once here first: the symbols of its
    // stacks are then in the cache every child starts with.
    let warm = dir.join("warm.json");
    assert!(in_the_child(true, &warm), "a DHAT file is written");
    assert!(
        in_the_child(false, &warm),
        "a heap and the registry are read"
    );
    // 220 children by default (200 taking heaps, 20 writing dumps);
    // LEAKSCOPE_TEST_FORKS=1100 tries 1 000 and 100.
    let children: u32 = std::env::var("LEAKSCOPE_TEST_FORKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(220);
    let (heap_children, dump_children) = (children - children / 11, children / 11);
    let start = std::time::Instant::now();
    let (mut heaps, mut dumps) = (0, 0);
    while heaps < heap_children || dumps < dump_children {
        let dumping = dumps < dump_children && dumps * 10 <= heaps;
        let dump = dir.join(format!("child-{}.json", heaps + dumps));
        // SAFETY: the child uses leakscope and calls _exit; it never returns
        // into the test.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = in_the_child(dumping, &dump);
            // SAFETY: ending the child without the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let what = if dumping { "dump" } else { "heap" };
        common::wait_child(pid, &format!("{what} child {}", heaps + dumps));
        if dumping {
            dumps += 1;
        } else {
            heaps += 1;
        }
    }
    eprintln!(
        "    {heaps} heap children and {dumps} dump children in {:.1} s, none hung",
        start.elapsed().as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(console);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `text`'s words with one space between them (answers are wrapped).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The process's address space in bytes (`VmSize`).
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

fn set_address_space_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a filled struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
}

fn a_heap_at_the_memory_limit_is_a_memory_error_not_an_abort() {
    // A fresh process: the limit is set just above what it holds, and a
    // fork would share address space this test cannot account for. No
    // growth history: memory its heaps gave back would be room for the
    // heap this test expects not to fit.
    let test = "a_heap_at_the_memory_limit_is_a_memory_error_not_an_abort";
    let env = [("LEAKSCOPE_WATCH_INTERVAL", "0")];
    if !common::in_fresh_process(test, "LEAKSCOPE_TEST_AT_THE_LIMIT", &env) {
        return;
    }
    // Half a million live blocks: a snapshot of them needs about 32 MiB,
    // far past the 8 MiB of room below, and the heap a session keeps stays
    // within its 64 MiB budget even when copies torn under load make the
    // snapshot reserve an eighth more.
    let kept = make_widgets(500_000);
    let (_console, mut c) = console_and_client();
    assert_eq!(c.run("1 + 1"), "2\r\n");
    // 8 MiB more address space than the process has now. Nothing is
    // checked until the limit is lifted: a failing check's report would
    // itself run out of memory.
    set_address_space_limit(address_space() + (8 << 20));
    let answer = c.run("x = hpy().heap()");
    let prefs = c.run("prefs()");
    let direct = hpy().try_heap().err();
    let dump = leakscope::export::dhat::write(std::env::temp_dir().join("leakscope-at-limit.json"));
    black_box(vec![1u8; 1000]);
    set_address_space_limit(libc::RLIM_INFINITY);
    // The line, a caret under the call, and the error.
    assert!(answer.starts_with("  x = hpy().heap()\r\n"), "{answer:?}");
    let said = words(&answer);
    assert!(
        said.contains("^ MemoryError: leakscope could not allocate ")
            && said.ends_with(
                "bytes to copy the recorder's state (the process is at its memory \
                 limit); nothing was changed"
            ),
        "{answer:?}"
    );
    // The session, the console and the program went on.
    assert!(prefs.contains("Live References"), "{prefs}");
    match direct {
        Some(e) => assert!(e.bytes > 8 << 20, "{e}"),
        None => panic!("a heap of half a million blocks fit in 8 MiB"),
    }
    match dump {
        Err(leakscope::export::Error::OutOfMemory(_)) => {}
        other => panic!("{other:?}"),
    }
    // With room again, the same line answers.
    set_address_space_limit(libc::RLIM_INFINITY);
    assert_eq!(c.run("x = hpy().heap()"), "");
    assert!(c.run("x.bytype").contains("Box<Widget>"));
    drop(kept);
}

fn the_growth_history_skips_points_near_the_memory_limit() {
    let test = "the_growth_history_skips_points_near_the_memory_limit";
    if !common::in_fresh_process(test, "LEAKSCOPE_TEST_HISTORY_AT_THE_LIMIT", &[]) {
        return;
    }
    // Room for the history's thread, not for a point (it asks for 64 MiB
    // more than twice its last heap).
    set_address_space_limit(address_space() + (32 << 20));
    leakscope::leaks::restart(Duration::from_millis(100));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut history = leakscope::leaks::history();
    while history.skipped_points < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        history = leakscope::leaks::history();
    }
    leakscope::leaks::stop();
    set_address_space_limit(libc::RLIM_INFINITY);
    assert!(history.skipped_points >= 2, "{history:?}");
    assert!(history.times.is_empty(), "{history:?}");
    let shown = history.render(80);
    assert!(
        shown.contains(" points skipped: the process was near its address-space"),
        "{shown}"
    );
}

/// What each of [`THREADS`] threads leaves behind: one block it allocated.
struct LeftByAThread(#[allow(dead_code)] u64);

/// More threads than a 16-bit index tells apart.
const THREADS: usize = 70_002;

/// Thread indices are 32-bit: one block left by each of 70 002 threads
/// (started one after another) carries its own thread's index, and
/// `bythread` gives each of them a row of its own. With 16-bit indices,
/// the 4 466th and the 70 002nd thread shared a row.
fn seventy_thousand_threads_keep_rows_of_their_own() {
    let mut left = Vec::with_capacity(THREADS);
    // Started 100 at a time: each has its index however they interleave.
    for batch in (0..THREADS).collect::<Vec<_>>().chunks(100) {
        let started: Vec<_> = batch
            .iter()
            .map(|&i| std::thread::spawn(move || Box::new(LeftByAThread(i as u64))))
            .collect();
        left.extend(started.into_iter().map(|t| t.join().unwrap()));
    }
    let addrs: std::collections::HashSet<usize> = left
        .iter()
        .map(|b| &**b as *const LeftByAThread as usize)
        .collect();
    let snap = leakscope::tracker::snapshot();
    let threads: std::collections::HashSet<u32> = snap
        .blocks
        .iter()
        .filter(|b| addrs.contains(&b.addr))
        .map(|b| b.thread)
        .collect();
    assert_eq!(threads.len(), THREADS, "one index per thread");
    assert!(threads.iter().any(|&t| t > u16::MAX as u32));
    let by_type = hpy().heap().bytype();
    let (i, row) = row_of(&by_type, "Box<heap_views::LeftByAThread>").expect("the left blocks");
    assert_eq!((row.count, row.size), (THREADS as u64, 8 * THREADS as u64));
    let by_thread = by_type.row(i).bythread();
    assert_eq!(by_thread.rows().len(), THREADS, "a row per thread");
    assert!(by_thread.rows().iter().all(|r| r.count == 1));
    drop(left);
}
