//! Text for people: every table leakscope prints is built here (with
//! comfy-table), from data types that carry no formatting of their own.

use std::time::Duration;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::trackref::ClassLive;

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
