//! MAT's dominator tree as a table: the blocks that retain the most, by
//! type and allocation site, with their own and their retained bytes.

use std::fmt;

use super::heap::shown_label;
use super::table::{MIN_LABEL, WIDTH, finish, label_width, percent, table, wrap};
use crate::heap::{Kind, Retainers};

/// Rows shown of a dominators view.
const SHOWN: usize = 10;

/// The dominators view for a terminal `width` columns wide.
pub(crate) fn retainers(r: &Retainers, width: usize) -> String {
    let mut out = match &r.of {
        None => wrap(
            &format!(
                "Dominator tree: the blocks that retain the most, by type and site, of {} \
                 bytes that the roots reach. Retained: what would be freed with them.",
                r.reachable
            ),
            width,
            0,
        ),
        Some((ty, _)) if ty.is_empty() => "No such row.".to_string(),
        Some((ty, site)) => wrap(
            &format!(
                "What {} at {} retains, by type and site:",
                shown_label(Kind::Type, ty, width / 2),
                shown_label(Kind::Site, site, width / 2)
            ),
            width,
            0,
        ),
    };
    out.push('\n');
    let rows = r.rows();
    if rows.is_empty() {
        out.push_str("Nothing.\n");
        return out;
    }
    let cells: Vec<[String; 5]> = rows
        .iter()
        .take(SHOWN)
        .enumerate()
        .map(|(i, row)| {
            [
                i.to_string(),
                row.count.to_string(),
                row.shallow.to_string(),
                row.retained.to_string(),
                percent(row.retained, r.reachable),
            ]
        })
        .collect();
    let header = ["Index", "Count", "Shallow", "Retained", "%", "Type at site"];
    let room = label_width(&cells, &header, width).max(MIN_LABEL);
    let mut t = table(&header, &[0, 1, 2, 3, 4]);
    for (row, c) in rows.iter().zip(cells) {
        let ty = shown_label(Kind::Type, &row.ty, room.saturating_sub(4).max(MIN_LABEL));
        let site_room = room.saturating_sub(ty.chars().count() + 4);
        let label = if site_room >= MIN_LABEL {
            format!("{ty} at {}", shown_label(Kind::Site, &row.site, site_room))
        } else {
            ty
        };
        let mut line: Vec<String> = c.into_iter().collect();
        line.push(label);
        t.add_row(line);
    }
    out.push_str(&finish(&t));
    out.push('\n');
    let more = rows.len().saturating_sub(SHOWN) + r.more_rows;
    if more > 0 {
        out.push_str(&format!("<{more} more rows>\n"));
    }
    if r.unreachable > 0 {
        out.push_str(&wrap(
            &format!(
                "{} blocks of this heap no root reaches are not in the tree: \
                 hpy().unreachable() lists them.",
                r.unreachable
            ),
            width,
            0,
        ));
        out.push('\n');
    }
    out.push_str(&wrap(
        "d[i] shows what row i retains; d.heap(i) is its blocks as a heap.",
        width,
        0,
    ));
    out.push('\n');
    out
}

impl Retainers {
    /// The table for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        retainers(self, width)
    }
}

impl fmt::Display for Retainers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}
