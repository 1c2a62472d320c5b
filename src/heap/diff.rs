//! The difference between two heaps.

use std::collections::HashMap;

use super::{Heap, Kind};

impl Heap {
    /// What changed from `before` to this heap, partitioned by `kind`:
    /// signed counts and sizes, largest absolute size change first.
    pub fn diff(&self, before: &Heap, kind: Kind) -> HeapDiff {
        let now = self.partition(kind);
        let then = before.partition(kind);
        let mut changes: HashMap<&str, (i64, i64)> = HashMap::new();
        for r in now.rows.iter() {
            let e = changes.entry(&r.label).or_default();
            e.0 += r.count as i64;
            e.1 += r.size as i64;
        }
        for r in then.rows.iter() {
            let e = changes.entry(&r.label).or_default();
            e.0 -= r.count as i64;
            e.1 -= r.size as i64;
        }
        let mut rows: Vec<DiffRow> = changes
            .into_iter()
            .filter(|(_, (c, s))| *c != 0 || *s != 0)
            .map(|(label, (count, size))| DiffRow {
                label: label.to_string(),
                count,
                size,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.size
                .abs()
                .cmp(&a.size.abs())
                .then_with(|| a.label.cmp(&b.label))
        });
        let (n, b) = (self.totals(), before.totals());
        HeapDiff {
            kind,
            rows,
            count: n.count as i64 - b.count as i64,
            size: n.size as i64 - b.size as i64,
            estimated: self.estimated() || before.estimated(),
        }
    }
}
/// One row of a [`HeapDiff`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffRow {
    /// What the row's blocks share.
    pub label: String,
    /// Change in the number of blocks.
    pub count: i64,
    /// Change in bytes.
    pub size: i64,
}

/// What changed between two heaps, by one [`Kind`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HeapDiff {
    /// How the heaps were split.
    pub kind: Kind,
    /// Rows that changed, largest absolute size change first.
    pub rows: Vec<DiffRow>,
    /// Change in the total number of blocks.
    pub count: i64,
    /// Change in total bytes.
    pub size: i64,
    /// True when either side is an estimate.
    pub estimated: bool,
}
