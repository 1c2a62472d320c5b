//! trackref's `Live References` report.

use std::fmt;

use super::table::{age, change, finish, table};
use crate::trackref::LiveRefs;

/// The `Live References` report: heading only when nothing is alive.
impl fmt::Display for LiveRefs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&live_refs(self))
    }
}

fn live_refs(report: &LiveRefs) -> String {
    let rows = &report.rows;
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
