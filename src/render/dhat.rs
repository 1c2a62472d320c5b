//! `leakscope report` and `leakscope diff`: tables of DHAT files.

use std::fmt;

use super::table::{change, finish, table};
use crate::export::dhat::{DhatDiff, DhatReport, PointSummary};

/// `leakscope report`: the top program points of a DHAT file.
impl fmt::Display for DhatReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, rows, n) = (self.file, &self.rows, self.top);
        f.write_str(&report(file, rows, n))
    }
}

fn report(file: &crate::export::dhat::DhatFile, rows: &[PointSummary], n: usize) -> String {
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

/// `leakscope diff`: what grew, by type and by program point.
impl fmt::Display for DhatDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&diff(&self.by_point, &self.by_type, self.top))
    }
}

fn diff(by_point: &[PointSummary], by_type: &[PointSummary], n: usize) -> String {
    if by_point.is_empty() {
        return "No change.\n".to_string();
    }
    // The same columns for both, the program point's site last.
    let section = |title: &str, rows: &[PointSummary], site: bool| {
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
