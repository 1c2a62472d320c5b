//! Partitions of a heap: rows of blocks that share a type, site, stack,
//! size class, age or thread, paged Guppy's way.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Heap, Kind, PAGE_ROWS};

/// Power-of-two size classes: `17..32 B`.
pub fn size_class(size: u64) -> String {
    if size <= 16 {
        return "1..16 B".to_string();
    }
    let hi = size.next_power_of_two();
    let lo = hi / 2 + 1;
    // `hi` is a power of two: a whole number of the largest unit it reaches.
    let unit = |n: u64| {
        if n >= 1 << 30 {
            format!("{} GiB", n >> 30)
        } else if n >= 1 << 20 {
            format!("{} MiB", n >> 20)
        } else if n >= 1 << 10 {
            format!("{} KiB", n >> 10)
        } else {
            format!("{n} B")
        }
    };
    format!("{}..{}", lo, unit(hi))
}

/// The age bucket of a block.
pub fn age_bucket(age: Duration) -> &'static str {
    match age.as_secs() {
        0 => "< 1 s",
        1..=9 => "1-10 s",
        10..=59 => "10-60 s",
        60..=599 => "1-10 min",
        _ => "> 10 min",
    }
}

/// One row of a partition.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Row {
    /// What the row's blocks share (a type, a site, a size class …).
    pub label: String,
    /// Number of blocks (an estimate when sampled).
    pub count: u64,
    /// Bytes in them.
    pub size: u64,
    pub(super) members: Arc<[u32]>,
}

/// A heap split into rows by one [`Kind`], largest first, shown a page of
/// ten rows at a time.
#[derive(Clone)]
pub struct Partition {
    pub(super) heap: Heap,
    pub(super) kind: Kind,
    pub(super) rows: Arc<[Row]>,
    pub(super) start: usize,
    pub(super) all: bool,
}

impl Partition {
    /// What this partition keeps alive, as [`Heap::memory`] says it: its
    /// rows and its heap's blocks, and the snapshot it shares.
    pub(crate) fn memory(&self) -> (usize, (usize, usize)) {
        let (own, shared) = self.heap.memory();
        let rows: usize = self
            .rows
            .iter()
            .map(|r| size_of::<Row>() + r.label.len() + r.members.len() * size_of::<u32>())
            .sum();
        (own + rows, shared)
    }

    /// How the heap was split.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Every row, largest first.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The heap this partition splits.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// The rows this page shows: (index, row).
    pub fn page(&self) -> impl Iterator<Item = (usize, &Row)> + '_ {
        let end = if self.all {
            self.rows.len()
        } else {
            (self.start + PAGE_ROWS).min(self.rows.len())
        };
        (self.start.min(end)..end).map(move |i| (i, &self.rows[i]))
    }

    /// Rows after this page.
    pub fn rows_after_page(&self) -> usize {
        if self.all {
            0
        } else {
            self.rows.len().saturating_sub(self.start + PAGE_ROWS)
        }
    }

    /// The next page (Guppy's `_.more`).
    pub fn more(&self) -> Partition {
        let mut p = self.clone();
        if !p.all && p.start + PAGE_ROWS < p.rows.len() {
            p.start += PAGE_ROWS;
        }
        p
    }

    /// Every row on one page (Guppy's `.all`).
    pub fn all(&self) -> Partition {
        let mut p = self.clone();
        p.start = 0;
        p.all = true;
        p
    }

    /// The blocks of row `i` as a heap of their own, to partition again;
    /// an empty heap when there is no such row.
    pub fn row(&self, i: usize) -> Heap {
        Heap {
            data: self.heap.data.clone(),
            members: self
                .rows
                .get(i)
                .map_or_else(|| Arc::from(Vec::new()), |r| r.members.clone()),
        }
    }
}

impl Partition {
    /// The rows `text` names, and their blocks as one heap: the rows whose
    /// label is `text` (whole, or without module paths, or without the
    /// ` (?)` of a type guessed: `Arc<TrackedInner<Page>>` is
    /// `Arc<leakscope::trackref::tracked::TrackedInner<app::Page>> (?)`'s
    /// row) when there are such, else every row whose label contains it.
    /// `None` when no row does.
    pub fn rows_named(&self, text: &str) -> Option<(Vec<usize>, Heap)> {
        let whole = |r: &Row| {
            let label = r.label.strip_suffix(" (?)").unwrap_or(&r.label);
            r.label == text
                || label == text
                || (self.kind == Kind::Type && crate::symbols::short_type(label) == text)
        };
        let mut picked: Vec<usize> = (0..self.rows.len())
            .filter(|&i| whole(&self.rows[i]))
            .collect();
        if picked.is_empty() {
            picked = (0..self.rows.len())
                .filter(|&i| self.rows[i].label.contains(text))
                .collect();
        }
        if picked.is_empty() {
            return None;
        }
        let mut members: Vec<u32> = picked
            .iter()
            .flat_map(|&i| self.rows[i].members.iter().copied())
            .collect();
        // A block under several rows (byvia) is one block of the set.
        members.sort_unstable();
        members.dedup();
        let heap = Heap {
            data: self.heap.data.clone(),
            members: members.into(),
        };
        Some((picked, heap))
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Partition({:?}, {} rows)", self.kind, self.rows.len())
    }
}
