//! `leakscope report` and `leakscope diff`: tables of DHAT files.

use std::fmt;

use super::heap::{legend, shown_label};
use super::table::{WIDTH, change, finish, label_width, table, wrap};
use crate::export::dhat::{DhatDiff, DhatReport, PointSummary};
use crate::heap::Kind;

/// `leakscope report`: the top allocation sites of a DHAT file.
impl fmt::Display for DhatReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

impl DhatReport<'_> {
    /// The report for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        report(self.file, &self.rows, self.top, width)
    }
}

/// The rows of a table with the type last, each followed by its site on
/// a line of its own (`    at …`), `width` columns wide.
fn rows_with_sites<const N: usize>(
    header: &[&str],
    cells: Vec<[String; N]>,
    rows: &[PointSummary],
    sites: bool,
    width: usize,
) -> String {
    let room = label_width(&cells, header, width);
    let right: Vec<usize> = (0..N).collect();
    let mut t = table(header, &right);
    // A type shortened to fit its cell is shown whole on a line of its own
    // under the row (`    type …`), before its site.
    let mut whole: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for (c, r) in cells.into_iter().zip(rows) {
        let mut row: Vec<String> = c.into_iter().collect();
        let cell = shown_label(Kind::Type, &r.type_name, room);
        let full = crate::symbols::short_type(&r.type_name);
        whole.push((sites && cell != full).then_some(full));
        row.push(cell);
        t.add_row(row);
    }
    let text = finish(&t);
    let mut out = String::with_capacity(text.len() * 2);
    let lead = "    at ";
    let site_room = width
        .saturating_sub(lead.len())
        .max(super::table::MIN_LABEL);
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if sites && let Some(k) = i.checked_sub(2).filter(|&k| k < rows.len()) {
            let r = &rows[k];
            if let Some(full) = &whole[k] {
                out.push_str("    type ");
                out.push_str(&wrap(full, width.saturating_sub(9), 9));
                out.push('\n');
            }
            out.push_str(lead);
            out.push_str(&shown_label(Kind::Site, &r.site, site_room));
            out.push('\n');
        }
    }
    out.push_str(&legend(&text, width));
    out
}

fn report(
    file: &crate::export::dhat::DhatFile,
    rows: &[PointSummary],
    n: usize,
    width: usize,
) -> String {
    let mut out = wrap(
        &format!(
            "{} — {} program points at {} sites, mode {}, pid {}, written at {:.1} s, \
             global peak at {:.1} s",
            file.cmd,
            file.pps.len(),
            rows.len(),
            file.mode,
            file.pid,
            file.te as f64 / 1e6,
            file.tg as f64 / 1e6
        ),
        width,
        0,
    );
    out.push('\n');
    let shown = &rows[..rows.len().min(n)];
    let cells: Vec<[String; 6]> = shown
        .iter()
        .map(|r| {
            [
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
            ]
        })
        .collect();
    let header = [
        "Live B",
        "Live",
        "At peak B",
        "Total B",
        "Total",
        "Short-lived",
        "Type",
    ];
    out.push_str(&rows_with_sites(&header, cells, shown, true, width));
    if rows.len() > n {
        out.push_str(&format!("<{} more sites>\n", rows.len() - n));
    }
    out
}

/// `leakscope diff`: what changed, by type and by allocation site.
impl fmt::Display for DhatDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

impl DhatDiff {
    /// The difference for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            out.push_str(&wrap(w, width, 0));
            out.push('\n');
        }
        out.push_str(&diff(&self.by_point, &self.by_type, self.top, width));
        out
    }
}

fn diff(by_point: &[PointSummary], by_type: &[PointSummary], n: usize, width: usize) -> String {
    if by_point.is_empty() {
        return "No change.\n".to_string();
    }
    // The same columns for both; each site under its row.
    let section = |title: &str, rows: &[PointSummary], sites: bool| {
        let shown = &rows[..rows.len().min(n)];
        let cells: Vec<[String; 4]> = shown
            .iter()
            .map(|r| {
                [
                    change(r.live.0),
                    change(r.live.1),
                    change(r.total.0),
                    change(r.total.1),
                ]
            })
            .collect();
        let header = ["Live B", "Live", "Total B", "Total", "Type"];
        format!(
            "{title}:\n{}",
            rows_with_sites(&header, cells, shown, sites, width)
        )
    };
    format!(
        "{}\n{}",
        section("By type", by_type, false),
        section("By allocation site", by_point, true)
    )
}
