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
    common::run(&[
        (
            "report_diff_and_view_from_the_command_line",
            report_diff_and_view_from_the_command_line,
        ),
        (
            "hostile_files_and_arguments_get_a_clear_error_and_nothing_else",
            hostile_files_and_arguments_get_a_clear_error_and_nothing_else,
        ),
    ]);
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

/// A type whose name is wider than the report's Type column.
struct ShelvedForTheReportsTypeColumn<T>(#[allow(dead_code)] T);

#[inline(never)]
fn shelved(n: u64) -> Vec<Box<ShelvedForTheReportsTypeColumn<Widget>>> {
    common::keep_frame(
        (0..n)
            .map(|id| {
                Box::new(ShelvedForTheReportsTypeColumn(Widget {
                    id,
                    payload: [id; 4],
                }))
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

/// The command's exit status, stdout and stderr.
fn cli_any(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(LEAKSCOPE)
        .args(args)
        .output()
        .expect("leakscope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must fail, and returns what it said on stderr.
fn cli_fails(args: &[&str]) -> String {
    let (ok, out, err) = cli_any(args);
    assert!(!ok, "{args:?} succeeded: {out}");
    assert_eq!(out, "", "{args:?} wrote to stdout");
    err
}

fn hostile_files_and_arguments_get_a_clear_error_and_nothing_else() {
    leakscope::set_mode(Mode::Exact);
    let dir = tmp("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    // Devices are refused before a byte is read: each of these would read
    // without end.
    for (cmd, file) in [
        ("report", "/dev/zero"),
        ("report", "/dev/urandom"),
        ("view", "/dev/zero"),
    ] {
        assert_eq!(
            cli_fails(&[cmd, file]),
            format!("leakscope: cannot read {file}: not a regular file\n")
        );
    }
    assert_eq!(
        cli_fails(&["diff", "/dev/zero", "/dev/zero"]),
        "leakscope: cannot read /dev/zero: not a regular file\n"
    );
    // A file larger than the limit is refused, and the flag is named.
    let dump = at("heap.json");
    dhat::write(&dump).unwrap();
    let size = std::fs::metadata(&dump).unwrap().len();
    assert_eq!(
        cli_fails(&["report", &dump, "--max-bytes", "100"]),
        format!(
            "leakscope: cannot read {dump}: {size} bytes, more than the 100 allowed \
             (--max-bytes raises it)\n"
        )
    );
    assert!(cli_any(&["report", &dump, "--max-bytes", &size.to_string()]).0);
    // Terminal escapes in the file's strings are shown, not obeyed.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    json["cmd"] = serde_json::json!("evil \u{1b}]0;owned\u{7}\u{1b}[2J");
    json["ftbl"][1] = serde_json::json!(format!("\u{1b}[31m{}", json["ftbl"][1].as_str().unwrap()));
    let evil = at("evil.json");
    std::fs::write(&evil, json.to_string()).unwrap();
    for args in [
        vec!["report", evil.as_str(), "--width", "200"],
        vec!["diff", dump.as_str(), evil.as_str(), "--width", "200"],
    ] {
        let (ok, out, err) = cli_any(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: {out:?}"
        );
        if args[0] == "report" {
            assert!(
                out.starts_with("evil \\u{1b}]0;owned\\u{7}\\u{1b}[2J "),
                "{out}"
            );
        }
    }
    // `view` writes no page through a link, and never over its input.
    let victim = at("victim.txt");
    std::fs::write(&victim, "victim").unwrap();
    let link = at("heap.html");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    if dhat::viewer_dir().is_some() {
        assert_eq!(
            cli_fails(&["view", &dump]),
            format!("leakscope: refusing to write {link}: it is a symbolic link\n")
        );
        let named_html = at("input.html");
        std::fs::copy(&dump, &named_html).unwrap();
        assert_eq!(
            cli_fails(&["view", &named_html]),
            format!(
                "leakscope: the page would replace its input {named_html}: choose \
                 another with --output\n"
            )
        );
        // Another file at the output is kept; a page view wrote is replaced.
        let page = at("page.html");
        std::fs::write(&page, "<html>someone's page</html>").unwrap();
        let refused = cli_fails(&["view", &dump, "-o", &page]);
        assert!(
            refused.starts_with(&format!(
                "leakscope: refusing to write {page}: the file there"
            )),
            "{refused}"
        );
        std::fs::remove_file(&page).unwrap();
        assert!(cli_any(&["view", &dump, "-o", &page]).0);
        assert!(cli_any(&["view", &dump, "-o", &page]).0);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
    // attach checks its arguments before it sends anything.
    for (args, said) in [
        (
            vec!["attach", "1", "--timeout", "18446744073709551615"],
            "invalid value '18446744073709551615' for '--timeout <TIMEOUT>': \
             18446744073709551615 is not in 1..=3600",
        ),
        (
            vec!["attach", "1", "--signal", "15"],
            "invalid value '15' for '--signal <SIGNAL>': 15 is not a signal attach may \
             use: one of USR1, USR2, WINCH, URG (a program may stop on any other it handles)",
        ),
        (
            vec!["attach", "1", "--signal", "TERM"],
            "invalid value 'TERM' for '--signal <SIGNAL>': TERM is not a signal attach may \
             use: one of USR1, USR2, WINCH, URG (a program may stop on any other it handles)",
        ),
    ] {
        let err = cli_fails(&args);
        assert!(
            err.starts_with(&format!("error: {said}\n")),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn report_diff_and_view_from_the_command_line() {
    // Whatever an earlier test left behind, this one needs exact mode.
    leakscope::set_mode(Mode::Exact);
    let a = tmp("cli-a.json");
    let b = tmp("cli-b.json");
    dhat::write(&a).unwrap();
    let kept = widgets(250);
    let shelf = shelved(7);
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
    // A type too wide for its cell is shown whole under its row.
    let long = "Box<ShelvedForTheReportsTypeColumn<Widget>>";
    let at = lines
        .iter()
        .position(|l| *l == format!("    type {long}"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(lines[at - 1].contains("  Box<…"), "{report}");
    assert!(
        lines[at - 1].split_whitespace().nth(1) == Some("7"),
        "{report}"
    );
    assert!(
        lines[at + 1].starts_with("    at shelved::{closure#0} (export.rs:"),
        "{report}"
    );
    drop(shelf);
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
