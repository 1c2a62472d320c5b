//! `leakscope report`, `diff` and `view` on DHAT files this process
//! writes: the real command line, its tables and its errors.

// Boxes in vectors are the point: each box is one heap block to count.
#![allow(clippy::vec_box)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;

use leakscope::export::dhat;
use leakscope::{Alloc, Mode};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

const LEAKSCOPE: &str = env!("CARGO_BIN_EXE_leakscope");

fn main() {
    common::run(&[(
        "report_diff_and_view_from_the_command_line",
        report_diff_and_view_from_the_command_line,
    )]);
}

#[allow(dead_code)]
struct Widget {
    id: u64,
    payload: [u64; 4],
}

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
    std::env::temp_dir().join(format!("leakscope-cli-{}-{name}", std::process::id()))
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(LEAKSCOPE)
        .args(args)
        .output()
        .expect("leakscope");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn report_diff_and_view_from_the_command_line() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let a = tmp("cli-a.json");
    let b = tmp("cli-b.json");
    dhat::write(&a).unwrap();
    let kept = widgets(250);
    dhat::write(&b).unwrap();
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let report = cli(&["report", b_s]);
    // 80 columns: each row's type in the table, its site on the line under
    // it, module paths left out (the file keeps them).
    assert!(report.lines().all(|l| l.chars().count() <= 80), "{report}");
    let lines: Vec<&str> = report.lines().collect();
    let rows: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].ends_with("  Box<Widget>"))
        .collect();
    assert_eq!(rows.len(), 1, "one row for the site: {report}");
    let row: Vec<&str> = lines[rows[0]].split_whitespace().collect();
    assert_eq!(row[..2], ["10000", "250"], "{report}");
    assert!(
        lines[rows[0] + 1].starts_with("    at widgets::{closure#0} (export.rs:"),
        "{report}"
    );
    let diff = cli(&["diff", a_s, b_s]);
    assert!(
        diff.lines()
            .any(|l| l.contains("+10000") && l.contains("+250") && l.contains("Box<Widget>")),
        "{diff}"
    );
    assert!(!diff.contains("warning"), "{diff}");
    // A file from another process is compared with a warning.
    let other = tmp("cli-other.json");
    let text = std::fs::read_to_string(&b).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["pid"] = serde_json::json!(1);
    std::fs::write(&other, json.to_string()).unwrap();
    let diff = cli(&["diff", other.to_str().unwrap(), b_s]);
    let pid = std::process::id();
    assert_eq!(
        diff.replace('\n', " "),
        format!(
            "warning: the files come from different processes (pid 1 and pid {pid}): \
             the change is between two runs, not growth within one No change. "
        ),
    );
    std::fs::remove_file(&other).unwrap();
    let page = tmp("cli-b.html");
    let view = cli(&["view", b_s, "-o", page.to_str().unwrap()]);
    let viewer = dhat::viewer_dir()
        .unwrap_or_else(|| "/usr/libexec/valgrind".into())
        .join("dh_view.js");
    if common::have_file(
        &viewer,
        "valgrind",
        "report_diff_and_view_from_the_command_line (its view part)",
    ) {
        assert!(view.starts_with("Wrote "), "{view}");
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("function buildTree") && html.contains("\"dhatFileVersion\":2"));
        std::fs::remove_file(&page).unwrap();
    } else {
        assert!(view.contains("not installed"), "{view}");
    }
    let bad = Command::new(LEAKSCOPE)
        .args(["report", "/nonexistent.json"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.starts_with("leakscope: cannot read /nonexistent.json: "),
        "{said}"
    );
    drop(kept);
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
}
