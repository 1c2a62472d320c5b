//! Exports: DHAT files that pass every check Valgrind's viewer applies (and
//! load in the real viewer in headless Chromium), pprof profiles whose
//! totals match the heap view, well-formed flamegraphs, and the file written at exit
//! (`report`/`diff`/`view` from the command line: the CLI's own tests).

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use leakscope::export::{dhat, flamegraph, pprof};
use leakscope::{Alloc, Mode, tracker};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

fn main() {
    if std::env::var_os("EXPORT_AT_EXIT_CHILD").is_some() {
        // Allocate a little, keep some, and exit: LEAKSCOPE_DHAT_OUT does
        // the rest.
        let kept = widgets(10);
        std::mem::forget(kept);
        return;
    }
    common::run(&[
        (
            "dhat_files_pass_the_viewers_checks",
            dhat_files_pass_the_viewers_checks,
        ),
        (
            "the_checker_catches_what_the_viewer_refuses",
            the_checker_catches_what_the_viewer_refuses,
        ),
        (
            "pprof_decodes_and_matches_the_heap_view",
            pprof_decodes_and_matches_the_heap_view,
        ),
        (
            "the_flamegraph_is_well_formed_and_names_the_top_stack",
            the_flamegraph_is_well_formed_and_names_the_top_stack,
        ),
        (
            "diff_of_two_dumps_shows_exactly_the_growth",
            diff_of_two_dumps_shows_exactly_the_growth,
        ),
        (
            "the_viewer_loads_the_file_in_headless_chromium",
            the_viewer_loads_the_file_in_headless_chromium,
        ),
        (
            "a_dhat_file_is_written_at_exit",
            a_dhat_file_is_written_at_exit,
        ),
    ]);
}

common::widget!();

#[inline(never)]
fn widgets(n: u64) -> Vec<Box<Widget>> {
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

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leakscope-export-{}-{name}", std::process::id()))
}

fn check_file(path: &PathBuf) -> dhat::DhatFile {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    dhat::check(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    dhat::read(path).unwrap()
}

/// Live (bytes, blocks) of the program points allocated at `function`.
fn live_at(file: &dhat::DhatFile, function: &str) -> (u64, u64) {
    let mut out = (0, 0);
    for pp in &file.pps {
        let frames = dhat::frames_of(file, pp);
        if leakscope::symbols::allocation_site(&frames)
            .is_some_and(|f| f.function.split("::{closure").next() == Some(function))
        {
            out.0 += pp.eb;
            out.1 += pp.ebk;
        }
    }
    out
}

fn dhat_files_pass_the_viewers_checks() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    // Exact mode.
    let kept = widgets(100);
    let path = tmp("exact.json");
    dhat::write(&path).unwrap();
    let f = check_file(&path);
    assert_eq!(f.mode, "rust-heap");
    assert_eq!(live_at(&f, "export::widgets"), (100 * 40 + 100 * 8, 101));
    assert!(f.tg <= f.te && f.te > 0);
    // Several threads.
    let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(|| widgets(50))).collect();
    let from_threads: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    dhat::write(&path).unwrap();
    let f = check_file(&path);
    assert_eq!(live_at(&f, "export::widgets").1, 101 + 4 * 51);
    // Sampled mode.
    leakscope::set_mode(Mode::Sampled);
    leakscope::set_sample_bytes(1024);
    let sampled: Vec<Vec<u8>> = (0..2000).map(|_| vec![0u8; 512]).collect();
    dhat::write(&path).unwrap();
    let f = check_file(&path);
    assert_eq!(f.mode, "rust-heap (sampled, mean 1024 bytes)");
    leakscope::set_sample_bytes(leakscope::tracker::DEFAULT_SAMPLE_BYTES);
    leakscope::set_mode(Mode::Exact);
    drop((kept, from_threads, sampled));
    // A run with no allocations: nothing recorded at all.
    tracker::reset();
    dhat::write(&path).unwrap();
    let f = check_file(&path);
    assert!(f.pps.is_empty(), "{:?}", f.pps.len());
    std::fs::remove_file(&path).unwrap();
}

fn the_checker_catches_what_the_viewer_refuses() {
    let good = serde_json::json!({
        "dhatFileVersion": 2, "mode": "rust-heap", "verb": "Allocated", "bklt": true, "bkacc": false,
        "tu": "µs", "Mtu": "s", "tuth": 10, "cmd": "x", "pid": 1, "tg": 1, "te": 2,
        "pps": [{"tb": 1, "tbk": 1, "tl": 1, "mb": 1, "mbk": 1, "gb": 1, "gbk": 1, "eb": 1, "ebk": 1, "fs": [1]}],
        "ftbl": ["[root]", "0x1: f (a.rs:1:1)"]
    });
    assert_eq!(dhat::check(&good), Ok(()));
    let mut repeated = good.clone();
    let pp = repeated["pps"][0].clone();
    repeated["pps"].as_array_mut().unwrap().push(pp);
    assert_eq!(
        dhat::check(&repeated).map_err(|e| e.to_string()),
        Err("data file contains a repeated location".into())
    );
    let mut missing = good.clone();
    missing["pps"][0].as_object_mut().unwrap().remove("gbk");
    assert_eq!(
        dhat::check(&missing).map_err(|e| e.to_string()),
        Err("data file is missing a field: gbk".into())
    );
    let mut version = good.clone();
    version["dhatFileVersion"] = 1.into();
    assert!(
        dhat::check(&version)
            .unwrap_err()
            .to_string()
            .contains("version number 1")
    );
    let mut root = good.clone();
    root["ftbl"][0] = "main".into();
    assert!(dhat::check(&root).is_err());
    let mut range = good;
    range["pps"][0]["fs"] = serde_json::json!([7]);
    assert_eq!(
        dhat::check(&range).map_err(|e| e.to_string()),
        Err("frame index 7 out of range".into())
    );
}

fn pprof_decodes_and_matches_the_heap_view() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let kept = widgets(200);
    let path = tmp("heap.pb.gz");
    pprof::write(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    let p = pprof::decode(&bytes).unwrap();
    let types: Vec<&str> = p
        .sample_type
        .iter()
        .map(|t| p.string_table[t.r#type as usize].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let inuse: i64 = p.sample.iter().map(|s| s.value[3]).sum();
    let objects: i64 = p.sample.iter().map(|s| s.value[2]).sum();
    // The test's own buffers go first, so both views see the same heap.
    drop((bytes, types));
    let heap = leakscope::hpy().heap();
    assert_eq!(
        (inuse as u64, objects as u64),
        (heap.size(), heap.count()),
        "totals match the heap view"
    );
    // Every location and function a sample names exists.
    for s in &p.sample {
        for id in &s.location_id {
            let loc = &p.location[*id as usize - 1];
            assert_eq!(loc.id, *id);
            for l in &loc.line {
                assert_eq!(p.function[l.function_id as usize - 1].id, l.function_id);
            }
        }
    }
    let names: Vec<&str> = p
        .function
        .iter()
        .map(|f| p.string_table[f.name as usize].as_str())
        .collect();
    assert!(names.contains(&"export::widgets::{closure#0}"), "{names:?}");
    std::fs::remove_file(&path).unwrap();
    drop(kept);
}

fn the_flamegraph_is_well_formed_and_names_the_top_stack() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let kept: Vec<Vec<u8>> = (0..50).map(|_| vec![0u8; 100_000]).collect();
    let snap = tracker::snapshot();
    let svg = flamegraph::svg(&snap).unwrap();
    let mut reader = quick_xml::Reader::from_reader(svg.as_slice());
    let mut buf = Vec::new();
    let mut depth = 0i64;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML: {e}"),
        }
        buf.clear();
    }
    assert_eq!(depth, 0, "balanced");
    let text = String::from_utf8(svg).unwrap();
    assert!(text.contains("<svg"));
    // Its script waits for a width before sizing the frames to it (in a
    // page's box not yet laid out, they would be drawn negative).
    assert!(text.contains(
        "var update_for_width_change = function() {\n            \
         if (!(svg.width.baseVal.value > xpad * 2)) return;"
    ));
    // The biggest live stack: these 5 MB of vectors.
    let top = flamegraph::folded(&snap)
        .into_iter()
        .max_by_key(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .unwrap();
    assert!(
        top.contains("export::the_flamegraph_is_well_formed_and_names_the_top_stack"),
        "{top}"
    );
    assert!(text.contains("export::the_flamegraph_is_well_formed_and_names_the_top_stack"));
    drop(kept);
}

fn diff_of_two_dumps_shows_exactly_the_growth() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let before = tmp("before.json");
    let after = tmp("after.json");
    let first = widgets(10);
    dhat::write(&before).unwrap();
    let more = widgets(300);
    dhat::write(&after).unwrap();
    let (by_point, by_type) =
        dhat::diff(&dhat::read(&before).unwrap(), &dhat::read(&after).unwrap());
    let w = by_type
        .iter()
        .find(|r| r.type_name == "Box<export::Widget>")
        .expect("Widget row");
    assert_eq!((w.live.0, w.live.1), (300 * 40, 300));
    assert_eq!((w.total.0, w.total.1), (300 * 40, 300));
    let site: Vec<_> = by_point
        .iter()
        .filter(|r| r.site.starts_with("export::widgets"))
        .collect();
    assert_eq!(
        site.iter().map(|r| r.live.1).sum::<i64>(),
        301,
        "300 boxes and one more Vec"
    );
    drop((first, more));
    std::fs::remove_file(&before).unwrap();
    std::fs::remove_file(&after).unwrap();
}

fn the_viewer_loads_the_file_in_headless_chromium() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let test = "the_viewer_loads_the_file_in_headless_chromium";
    let browser = "chromium";
    if !common::have(browser, "chromium", test)
        || !common::have_file(
            &dhat::viewer_dir()
                .unwrap_or_else(|| "/usr/libexec/valgrind".into())
                .join("dh_view.js"),
            "valgrind",
            test,
        )
    {
        return;
    }
    let kept = widgets(42);
    let path = tmp("browser.json");
    let file = dhat::write(&path).unwrap();
    let page = tmp("browser.html");
    std::fs::write(
        &page,
        dhat::viewer_page(&file, "browser.json", &dhat::viewer_dir().unwrap()).unwrap(),
    )
    .unwrap();
    let profile = tmp("chromium-profile");
    let out = Command::new(browser)
        .args(common::browser::HEADLESS)
        .args([
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    // What the page shows: the body after the inlined viewer script.
    let shown = &dom[dom.rfind("</script>").expect("a page")..];
    assert!(
        !shown.contains("class=\"error\""),
        "the viewer reported an error: {shown}"
    );
    assert!(
        !shown.contains("Load a DHAT data file to begin"),
        "the data was not loaded: {shown}"
    );
    assert!(
        shown.contains("<span class=\"invocation\">Invocation"),
        "the invocation is shown: {shown}"
    );
    assert!(
        shown.contains("PP 1/"),
        "program points are listed: {shown}"
    );
    assert!(
        shown.contains("export::widgets"),
        "the widgets' program point is shown"
    );
    drop(kept);
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&page).unwrap();
}

fn a_dhat_file_is_written_at_exit() {
    // A name that is not UTF-8 names that very file.
    let mut path = tmp("at-exit-");
    path.as_mut_os_string()
        .push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff.json"));
    let out = Command::new(std::env::current_exe().unwrap())
        .env("EXPORT_AT_EXIT_CHILD", "1")
        .env("LEAKSCOPE_DHAT_OUT", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DHAT file written to"));
    let f = check_file(&path);
    assert_eq!(live_at(&f, "export::widgets"), (10 * 40 + 10 * 8, 11));
    std::fs::remove_file(&path).unwrap();
}
