//! Text for people: every table leakscope prints is built here (with
//! comfy-table), from data types that carry no formatting of their own.

use std::time::Duration;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::heap::Totals;
use crate::heap::{HeapDiff, Partition, Suspect};
use crate::stats::{PurgeReport, Stats};
use crate::symbols::Frame;
use crate::testing::Site;
use crate::trackref::ClassLive;

/// Default terminal width for `Display`.
pub const WIDTH: usize = 80;

/// A plain table that reads well in a terminal and over telnet: a header, a
/// rule under it, columns separated by spaces, numbers right-aligned.
fn table(header: &[&str], right_aligned: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    let last = header.len().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i == last { 0 } else { 2 }));
    }
    for &i in right_aligned {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The room left for the last (label) column of a table whose first
/// columns hold `cells` under `header`, in a terminal `width` wide (at least
/// 12, so a label always has room for a word).
fn label_width<const N: usize>(cells: &[[String; N]], header: &[&str], width: usize) -> usize {
    let numeric: usize = (0..N)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum();
    width.saturating_sub(numeric).max(12)
}

/// Renders a table with a rule under its header.
fn finish(t: &Table) -> String {
    let text = t.trim_fmt();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(text.len() * 2);
    out.push_str(header.trim_end());
    out.push('\n');
    out.push_str(&"-".repeat(header.trim_end().chars().count()));
    for l in lines {
        out.push('\n');
        out.push_str(l.trim_end());
    }
    out
}

/// An age in whole seconds, as trackref reports it: `265s ago`.
pub fn age(d: Duration) -> String {
    format!("{}s ago", d.as_secs())
}

/// A signed change: `+3`, `-2`, `0`.
pub fn change(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// The `Live References` report: heading only when nothing is alive.
pub fn live_refs(rows: &[ClassLive]) -> String {
    let mut out = String::from("Live References\n");
    if rows.is_empty() {
        return out;
    }
    let mut t = table(&["Class", "Live", "Oldest", "Change"], &[1, 2, 3]);
    for r in rows {
        t.add_row(vec![
            r.name.to_string(),
            r.live.to_string(),
            r.oldest.map(age).unwrap_or_default(),
            change(r.change),
        ]);
    }
    out.push('\n');
    out.push_str(&finish(&t));
    out.push('\n');
    out
}

/// Shortens `label` from the left to at most `width` characters by dropping
/// whole leading path segments or words (`…` marks the cut); never cuts a
/// word in the middle, so a single word longer than `width` stays whole.
pub fn shorten_left(label: &str, width: usize) -> String {
    let len = |s: &str| s.chars().count();
    if len(label) <= width {
        return label.to_string();
    }
    let mut rest = label;
    loop {
        let cut = rest.char_indices().find_map(|(i, c)| match c {
            ':' if rest[i..].starts_with("::") => Some(i + 2),
            ' ' | '<' | '(' | ',' => Some(i + 1),
            _ => None,
        });
        match cut {
            Some(i) if i < rest.len() => {
                rest = &rest[i..];
                if len(rest) < width {
                    return format!("…{rest}");
                }
            }
            // Nothing more to drop without cutting a word.
            _ if rest.len() == label.len() => return label.to_string(),
            _ => return format!("…{rest}"),
        }
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0".to_string()
    } else {
        (part as f64 * 100.0 / whole as f64).round().to_string()
    }
}

/// Guppy's heading: `Partition of a set of N objects. Total size = X bytes.`
fn partition_heading(count: u64, size: u64, estimated: bool) -> String {
    let objects = if count == 1 { "object" } else { "objects" };
    if estimated {
        format!(
            "Partition of a set of about {count} {objects} (estimated from samples). \
             Total size = about {size} bytes."
        )
    } else {
        format!("Partition of a set of {count} {objects}. Total size = {size} bytes.")
    }
}

/// One page of a partition, Guppy's way: heading, Index, Count, %, Size, %,
/// Cumulative, %, Kind; then `<N more rows. Type e.g. '_.more' to view.>`.
pub fn partition(p: &Partition, width: usize) -> String {
    let total = p.heap().totals();
    let rows = p.rows();
    let mut cumulative: Vec<u64> = Vec::with_capacity(rows.len());
    let mut acc = 0;
    for r in rows {
        acc += r.size;
        cumulative.push(acc);
    }
    let page: Vec<_> = p.page().collect();
    let cells: Vec<[String; 7]> = page
        .iter()
        .map(|(i, r)| {
            [
                i.to_string(),
                r.count.to_string(),
                percent(r.count, total.count),
                r.size.to_string(),
                percent(r.size, total.size),
                cumulative[*i].to_string(),
                percent(cumulative[*i], total.size),
            ]
        })
        .collect();
    let header = [
        "Index",
        "Count",
        "%",
        "Size",
        "%",
        "Cumulative",
        "%",
        p.kind().heading(),
    ];
    let label_width = label_width(&cells, &header, width);
    let mut t = table(&header, &[0, 1, 2, 3, 4, 5, 6]);
    for ((_, r), c) in page.iter().zip(cells) {
        let mut row: Vec<String> = c.into_iter().collect();
        row.push(shorten_left(&r.label, label_width));
        t.add_row(row);
    }
    let mut out = partition_heading(total.count, total.size, p.heap().estimated());
    out.push('\n');
    out.push_str(&finish(&t));
    out.push('\n');
    let more = p.rows_after_page();
    if more > 0 {
        out.push_str(&format!(
            "<{more} more rows. Type e.g. '_.more' to view.>\n"
        ));
    }
    out
}

/// The difference between two heaps, Pympler's and tracemalloc's way:
/// signed counts and sizes, largest absolute change first.
pub fn diff(d: &HeapDiff, width: usize) -> String {
    let mut out = format!(
        "Difference: {} blocks, {} bytes{}.\n",
        change(d.count),
        change(d.size),
        if d.estimated {
            " (estimated from samples)"
        } else {
            ""
        }
    );
    if d.rows.is_empty() {
        return out;
    }
    let cells: Vec<[String; 2]> = d
        .rows
        .iter()
        .map(|r| [change(r.count), change(r.size)])
        .collect();
    let header = ["Count", "Size", d.kind.heading()];
    let label_width = label_width(&cells, &header, width);
    let mut t = table(&header, &[0, 1]);
    for (r, c) in d.rows.iter().zip(cells) {
        t.add_row(vec![
            c[0].clone(),
            c[1].clone(),
            shorten_left(&r.label, label_width),
        ]);
    }
    out.push_str(&finish(&t));
    out.push('\n');
    out
}

/// The growth watch's suspects.
pub fn suspects(list: &[Suspect], width: usize) -> String {
    if list.is_empty() {
        return "No suspects: nothing grew in most intervals (or the watch has fewer than 3 points).\n"
            .to_string();
    }
    let cells: Vec<[String; 4]> = list
        .iter()
        .map(|s| {
            [
                format!("{:?}", s.kind).to_lowercase(),
                format!("{}/{}", s.grew, s.intervals),
                s.size.to_string(),
                format!("{:+.0}", s.bytes_per_minute),
            ]
        })
        .collect();
    let header = ["Kind", "Grew", "Size", "Bytes/min", "Suspect"];
    let label_width = label_width(&cells, &header, width);
    let mut t = table(&header, &[1, 2, 3]);
    for (s, c) in list.iter().zip(cells) {
        let mut row: Vec<String> = c.into_iter().collect();
        row.push(shorten_left(&s.label, label_width));
        t.add_row(row);
    }
    let mut out = finish(&t);
    out.push('\n');
    out
}

/// Allocation sites for an assertion message, one per line: blocks, bytes,
/// type, function and place.
pub fn sites(list: &[Site]) -> String {
    if list.is_empty() {
        return "  (no allocation sites recorded)\n".to_string();
    }
    let mut t = table(&["Blocks", "Bytes", "Type", "Allocated at"], &[0, 1]);
    for s in list {
        let place = match (&s.file, s.line) {
            (Some(f), Some(l)) => {
                format!("{} ({}:{l})", s.function, f.rsplit('/').next().unwrap_or(f))
            }
            _ => s.function.clone(),
        };
        t.add_row(vec![
            s.blocks.to_string(),
            s.bytes.to_string(),
            s.type_name.clone(),
            place,
        ]);
    }
    let mut out = String::new();
    for line in finish(&t).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Bytes with a binary unit: `12.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `stats()`: leakscope's counters and jemalloc's figures.
pub fn stats(s: &Stats) -> String {
    let mut t = table(&["Figure", "Bytes", "", "Blocks"], &[1, 3]);
    let mode = s.mode.map_or("?", |m| m.name());
    let mut row = |name: &str, shown: String, n: u64, blocks: Option<u64>| {
        t.add_row(vec![
            name.to_string(),
            shown,
            bytes(n),
            blocks.map_or_else(String::new, |b| b.to_string()),
        ]);
    };
    row(
        "live",
        s.live_bytes.to_string(),
        s.live_bytes,
        Some(s.live_blocks),
    );
    let peak = s.peak_live_bytes;
    let approx = if s.peak_tolerance == 0 { "" } else { "~" };
    row("peak live", format!("{approx}{peak}"), peak, None);
    row(
        "allocated since start",
        s.total_bytes.to_string(),
        s.total_bytes,
        Some(s.total_blocks),
    );
    row(
        "freed since start",
        s.freed_bytes.to_string(),
        s.freed_bytes,
        Some(s.freed_blocks),
    );
    let j = &s.jemalloc;
    for (name, n) in [
        ("jemalloc allocated", j.allocated),
        ("jemalloc active", j.active),
        ("jemalloc resident", j.resident),
        ("jemalloc mapped", j.mapped),
        ("jemalloc retained", j.retained),
        ("jemalloc metadata", j.metadata),
    ] {
        row(name, n.to_string(), n, None);
    }
    let mut out = format!("Allocator ({mode} mode, {} threads)\n", s.threads);
    out.push_str(&finish(&t));
    out.push('\n');
    out.push_str(&format!(
        "Longest wait for leakscope's lock: {:.3} ms\n",
        s.longest_tracker_wait.as_secs_f64() * 1e3
    ));
    if s.jemalloc.resident > s.jemalloc.allocated.saturating_mul(2)
        && s.jemalloc.resident > 64 << 20
    {
        out.push_str("Resident is far above allocated: purge() may give memory back.\n");
    }
    out
}

/// `purge()`'s report.
pub fn purge(r: &PurgeReport) -> String {
    format!(
        "Purged: resident {} -> {} ({} returned to the OS); allocated {}.\n",
        bytes(r.before.resident),
        bytes(r.after.resident),
        bytes(r.freed_resident()),
        bytes(r.after.allocated)
    )
}

/// The top `n` stacks of a heap, frame by frame.
pub fn stacks(list: &[(Vec<Frame>, Totals)], n: usize) -> String {
    let mut out = String::new();
    for (i, (frames, t)) in list.iter().take(n).enumerate() {
        out.push_str(&format!(
            "Stack {i}: {} objects, {} bytes\n",
            t.count, t.size
        ));
        for f in frames {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    format!(" ({}:{line})", file.rsplit('/').next().unwrap_or(file))
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "    {}{}{place}\n",
                if f.inlined { "(inlined) " } else { "" },
                f.function
            ));
        }
    }
    if list.len() > n {
        out.push_str(&format!("<{} more stacks>\n", list.len() - n));
    }
    out
}

/// `leakscope report`: the top program points of a DHAT file.
pub fn dhat_report(
    file: &crate::export::dhat::DhatFile,
    rows: &[crate::export::dhat::PointSummary],
    n: usize,
) -> String {
    let mut out = format!(
        "{} — {} program points, mode {}, pid {}, written at {:.1} s, global peak at {:.1} s\n",
        file.cmd,
        file.pps.len(),
        file.mode,
        file.pid,
        file.te as f64 / 1e6,
        file.tg as f64 / 1e6
    );
    let mut t = table(
        &[
            "Live B",
            "Live",
            "At peak B",
            "Total B",
            "Total",
            "Short-lived",
            "Type",
            "Allocated at",
        ],
        &[0, 1, 2, 3, 4],
    );
    for r in rows.iter().take(n) {
        t.add_row(vec![
            r.live.0.to_string(),
            r.live.1.to_string(),
            r.at_peak.0.to_string(),
            r.total.0.to_string(),
            r.total.1.to_string(),
            if r.avg_lifetime_us <= file.tuth {
                "yes".to_string()
            } else {
                String::new()
            },
            r.type_name.clone(),
            r.site.clone(),
        ]);
    }
    out.push_str(&finish(&t));
    out.push('\n');
    if rows.len() > n {
        out.push_str(&format!("<{} more program points>\n", rows.len() - n));
    }
    out
}

/// `leakscope diff`: what grew, by program point and by type.
pub fn dhat_diff(
    by_point: &[crate::export::dhat::PointSummary],
    by_type: &[crate::export::dhat::PointSummary],
    n: usize,
) -> String {
    if by_point.is_empty() {
        return "No change.\n".to_string();
    }
    // The same columns for both, the program point's site last.
    let section = |title: &str, rows: &[crate::export::dhat::PointSummary], site: bool| {
        let mut header = vec!["Live B", "Live", "Total B", "Total", "Type"];
        if site {
            header.push("Allocated at");
        }
        let mut t = table(&header, &[0, 1, 2, 3]);
        for r in rows.iter().take(n) {
            let mut row = vec![
                change(r.live.0),
                change(r.live.1),
                change(r.total.0),
                change(r.total.1),
                r.type_name.clone(),
            ];
            if site {
                row.push(r.site.clone());
            }
            t.add_row(row);
        }
        format!("{title}:\n{}", finish(&t))
    };
    format!(
        "{}\n\n{}\n",
        section("By type", by_type, false),
        section("By program point", by_point, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_left_drops_whole_segments() {
        assert_eq!(shorten_left("Box<app::Widget>", 40), "Box<app::Widget>");
        assert_eq!(
            shorten_left("alloc::vec::Vec<app::Request>", 20),
            "…Vec<app::Request>"
        );
        assert_eq!(
            shorten_left("alloc::vec::Vec<app::Request>", 16),
            "…app::Request>"
        );
        assert_eq!(
            shorten_left("a_very_long_single_word", 5),
            "a_very_long_single_word"
        );
        assert_eq!(
            shorten_left("app::a_very_long_single_word", 5),
            "…a_very_long_single_word"
        );
    }
}
