//! Heap views: Guppy's `hpy().heap()` for a Rust program.
//!
//! [`hpy()`](fn@hpy)`.heap()` takes a snapshot of the live blocks the recorder knows
//! (every block in exact mode, a weighted sample in sampled mode) and
//! partitions it by Rust type, allocation site, whole stack, size class,
//! age or thread. A row of a [`Partition`] selects a sub-[`Heap`] that can be
//! partitioned again (type → the sites that allocate it → their stacks).
//! Two heaps subtract into a [`HeapDiff`]; the [leak report](mod@crate::leaks)
//! keeps a bounded history of them and names the kinds that keep growing.
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! struct Page([u8; 32]);
//!
//! leakscope::set_mode(leakscope::Mode::Exact);
//! let kept: Vec<Box<Page>> = (0..100).map(|_| Box::new(Page([0; 32]))).collect();
//! let by_type = leakscope::hpy().heap().bytype();
//! println!("{by_type}"); // Partition of a set of … objects. Total size = … bytes.
//! let pages = by_type.rows().iter().position(|r| r.label.ends_with("::Page>")).unwrap();
//! assert_eq!(by_type.row(pages).count(), 100);
//! println!("{}", by_type.row(pages).bysite()); // where they were allocated
//! # drop(kept);
//! # }
//! ```
//!
//! Data types here carry no formatting of their own: their `Display` is
//! the console's views (Guppy's tables).

mod diff;
mod holders;
mod hpy;
mod partition;

pub use diff::{DiffRow, HeapDiff};
pub use holders::{GraphError, MAX_RETAINER_ROWS, PathRow, Paths, RetainerRow, Retainers};
pub use hpy::{Hpy, hpy};
pub use partition::{Partition, Row, age_bucket, size_class};

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::symbols::{self, BlockType, Frame};
use crate::sys::cancel::point;
use crate::tracker::{LiveBlock, Snapshot};

/// Rows shown per page of a partition (as Guppy).
pub(crate) const PAGE_ROWS: usize = 10;

/// The ways a heap can be partitioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// By Rust type (`Box<app::Widget>`), from the stack.
    Type,
    /// By allocation site: the first frame of the program's own code.
    Site,
    /// By whole stack.
    Stack,
    /// By size class (powers of two).
    Size,
    /// By age bucket (<1 s, 1–10 s, 10–60 s, 1–10 min, older).
    Age,
    /// By allocating thread.
    Thread,
    /// By the reference that holds each block (a block held by several is
    /// counted under each): Guppy's `byvia`.
    Via,
    /// By the types of each block's referrers: Guppy's `byrcs`.
    Referrers,
}

impl Kind {
    /// The column heading of this kind's labels.
    pub fn heading(self) -> &'static str {
        match self {
            Kind::Type => "Type",
            Kind::Site => "Allocation site",
            Kind::Stack => "Stack",
            Kind::Size => "Individual size",
            Kind::Age => "Age",
            Kind::Thread => "Thread",
            Kind::Via => "Referred to via",
            Kind::Referrers => "Referrers",
        }
    }

    /// True when a block may be in several rows (the rows' totals can
    /// exceed the heap's).
    pub fn overlapping(self) -> bool {
        self == Kind::Via
    }
}

/// Resolved facts about one stack, computed once per heap.
struct StackFacts {
    frames: Vec<Frame>,
    ty: BlockType,
    site: String,
    stack_label: String,
    /// Allocated by leakscope's own analysis (snapshots, heaps, symbols,
    /// tables) on the program's behalf: left out of heaps, as Guppy leaves
    /// out heapy's own objects.
    tool_owned: bool,
}

fn facts(addrs: &[usize]) -> StackFacts {
    let frames = symbols::resolve_stack(addrs);
    let mut ty = symbols::block_type(&frames);
    if ty.ambiguous {
        ty.name.push_str(" (?)");
    }
    let site = symbols::site_label(&frames);
    // A stack reads as the program's own frames when it has any (a tokio
    // poll between them is not what the user looks for), else as the
    // frames past the runtime's.
    let program: Vec<&Frame> = frames.iter().filter(|f| f.is_program()).take(4).collect();
    let own: Vec<&Frame> = if program.is_empty() {
        frames.iter().filter(|f| !f.is_runtime()).take(4).collect()
    } else {
        program
    };
    // The first frame with its place: two stacks through the same
    // functions from different lines are different rows.
    let stack_label = if own.is_empty() {
        site.clone()
    } else {
        own.iter()
            .enumerate()
            .map(|(k, f)| {
                if k == 0 {
                    f.label()
                } else {
                    f.function.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ← ")
    };
    let tool_owned = symbols::tool_owned(&frames);
    StackFacts {
        frames,
        ty,
        site,
        stack_label,
        tool_owned,
    }
}

/// One snapshot, shared by every heap and partition cut from it.
struct HeapData {
    snapshot: Snapshot,
    facts: Vec<OnceLock<StackFacts>>,
    graph: OnceLock<Arc<crate::graph::Graph>>,
    dominators: OnceLock<Arc<crate::graph::Dominators>>,
}

impl HeapData {
    /// A snapshot's data, with every live block's stack resolved.
    fn of(snapshot: Snapshot) -> Result<Arc<HeapData>, crate::tracker::OutOfMemory> {
        let oom = |bytes: usize| crate::tracker::OutOfMemory { bytes };
        let mut facts: Vec<OnceLock<StackFacts>> = Vec::new();
        let stacks = snapshot.stacks.len();
        facts
            .try_reserve_exact(stacks)
            .map_err(|_| oom(stacks * size_of::<OnceLock<StackFacts>>()))?;
        facts.extend((0..stacks).map(|_| OnceLock::new()));
        // Every live block's stack resolved in one batch.
        symbols::prefetch(
            snapshot
                .stacks
                .iter()
                .filter(|s| s.stats.live_blocks > 0)
                .map(|s| &s.frames[..]),
        );
        Ok(Arc::new(HeapData {
            snapshot,
            facts,
            graph: OnceLock::new(),
            dominators: OnceLock::new(),
        }))
    }

    /// Bytes the snapshot, the facts resolved so far and the graph (once
    /// built) take.
    fn memory(&self) -> usize {
        let snap = &self.snapshot;
        let blocks = snap.blocks.capacity() * size_of::<crate::tracker::LiveBlock>();
        let stacks: usize = snap
            .stacks
            .iter()
            .map(|s| size_of::<crate::tracker::StackRecord>() + s.frames.capacity() * 8)
            .sum();
        let facts: usize = self
            .facts
            .iter()
            .map(|f| {
                size_of::<OnceLock<StackFacts>>()
                    + f.get().map_or(0, |f| {
                        f.frames
                            .iter()
                            .map(|fr| {
                                size_of::<Frame>()
                                    + fr.function.len()
                                    + fr.file.as_ref().map_or(0, String::len)
                            })
                            .sum::<usize>()
                            + f.ty.name.len()
                            + f.site.len()
                            + f.stack_label.len()
                    })
            })
            .sum();
        let graph = self.graph.get().map_or(0, |g| g.stats().memory as usize);
        let tree = self.dominators.get().map_or(0, |d| d.memory() as usize);
        blocks + stacks + facts + graph + tree
    }

    fn facts(&self, stack: u32) -> &StackFacts {
        self.facts[stack as usize]
            .get_or_init(|| facts(&self.snapshot.stacks[stack as usize].frames))
    }
}

/// Rows from (label → estimated blocks, bytes, members), largest first
/// (ties by label, so that a partition reads the same every time).
fn largest_first(groups: HashMap<String, (f64, u64, Vec<u32>)>) -> Vec<Row> {
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(label, (c, s, members))| Row {
            label,
            count: c.round() as u64,
            size: s,
            members: members.into(),
        })
        .collect();
    rows.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.label.cmp(&b.label)));
    rows
}

/// A set of live blocks: the whole recorded heap (without leakscope's own
/// analysis data), or a row selected from a partition of one.
#[derive(Clone)]
pub struct Heap {
    data: Arc<HeapData>,
    /// Indices into the snapshot's blocks.
    members: Arc<[u32]>,
}

/// The figures of a set of blocks (estimates when sampled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Number of blocks.
    pub count: u64,
    /// Bytes in them.
    pub size: u64,
}

impl Heap {
    /// What this heap keeps alive: its own list of blocks, and the
    /// snapshot it shares with every heap cut from it, as (an id of the
    /// snapshot, its bytes). For the console's budget.
    pub(crate) fn memory(&self) -> (usize, (usize, usize)) {
        (
            self.members.len() * size_of::<u32>(),
            (Arc::as_ptr(&self.data) as usize, self.data.memory()),
        )
    }

    /// The heap of `snapshot`'s blocks that `keep` accepts. Its two large
    /// allocations (a fact per stack, an index per block) are made at
    /// their exact size and may fail: [`crate::tracker::OutOfMemory`], as
    /// for the copy, rather than an abort near the memory limit.
    fn from_snapshot(
        snapshot: Snapshot,
        keep: impl Fn(&LiveBlock) -> bool,
    ) -> Result<Heap, crate::tracker::OutOfMemory> {
        Heap::over(HeapData::of(snapshot)?, keep)
    }

    /// The heap of `data`'s blocks that `keep` accepts (leakscope's own
    /// left out).
    fn over(
        data: Arc<HeapData>,
        keep: impl Fn(&LiveBlock) -> bool,
    ) -> Result<Heap, crate::tracker::OutOfMemory> {
        let oom = |bytes: usize| crate::tracker::OutOfMemory { bytes };
        let kept = |b: &LiveBlock| keep(b) && !data.facts(b.stack).tool_owned;
        let count = data.snapshot.blocks.iter().filter(|b| kept(b)).count();
        let mut members: Vec<u32> = Vec::new();
        members
            .try_reserve_exact(count)
            .map_err(|_| oom(count * size_of::<u32>()))?;
        members.extend(
            data.snapshot
                .blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| kept(b))
                .map(|(i, _)| i as u32),
        );
        Ok(Heap {
            data,
            members: members.into(),
        })
    }

    fn blocks(&self) -> impl Iterator<Item = &LiveBlock> + '_ {
        self.members
            .iter()
            .map(|&i| &self.data.snapshot.blocks[i as usize])
    }

    fn totals_of(blocks: impl Iterator<Item = impl std::borrow::Borrow<LiveBlock>>) -> (f64, u64) {
        blocks.fold((0.0, 0), |(c, s), b| {
            let b = b.borrow();
            (c + b.est_blocks, s + b.est_bytes)
        })
    }

    /// Count and size of the blocks (estimates in sampled mode).
    pub fn totals(&self) -> Totals {
        let (c, s) = Self::totals_of(self.blocks());
        Totals {
            count: c.round() as u64,
            size: s,
        }
    }

    /// Number of blocks.
    pub fn count(&self) -> u64 {
        self.totals().count
    }

    /// Bytes in the blocks.
    pub fn size(&self) -> u64 {
        self.totals().size
    }

    /// True when the figures are estimates from sampled blocks.
    pub fn estimated(&self) -> bool {
        self.data.snapshot.estimated
    }

    /// When the snapshot was taken, since the recorder started.
    pub fn taken_at(&self) -> Duration {
        self.data.snapshot.taken_at
    }

    fn label(&self, kind: Kind, b: &LiveBlock) -> String {
        match kind {
            Kind::Type => self.data.facts(b.stack).ty.name.clone(),
            Kind::Site => self.data.facts(b.stack).site.clone(),
            Kind::Stack => self.data.facts(b.stack).stack_label.clone(),
            Kind::Size => size_class(b.size),
            Kind::Age => age_bucket(self.data.snapshot.taken_at.saturating_sub(b.born)).to_string(),
            Kind::Thread => format!("thread {}", b.thread),
            // Built from the heap graph (`holders`), never from one block.
            Kind::Via | Kind::Referrers => kind.heading().to_string(),
        }
    }

    fn partition_of(&self, kind: Kind, rows: Vec<Row>) -> Partition {
        Partition {
            heap: self.clone(),
            kind,
            rows: rows.into(),
            start: 0,
            all: false,
        }
    }

    /// Partitions the blocks by `kind`, rows largest first.
    pub fn partition(&self, kind: Kind) -> Partition {
        match kind {
            Kind::Via => return self.byvia(),
            Kind::Referrers => return self.byrcs(),
            _ => {}
        }
        let _doing = crate::sys::cancel::doing("grouping the heap's blocks");
        // Group by stack first: every block of a stack has the same type,
        // site and stack label, so symbols are looked at once per stack.
        let mut groups: HashMap<String, (f64, u64, Vec<u32>)> = HashMap::new();
        if matches!(kind, Kind::Type | Kind::Site | Kind::Stack) {
            let mut by_stack: HashMap<u32, Vec<u32>> = HashMap::new();
            for &i in self.members.iter() {
                point();
                by_stack
                    .entry(self.data.snapshot.blocks[i as usize].stack)
                    .or_default()
                    .push(i);
            }
            for members in by_stack.into_values() {
                point();
                let b = &self.data.snapshot.blocks[members[0] as usize];
                let label = self.label(kind, b);
                let (c, s) = Self::totals_of(
                    members
                        .iter()
                        .map(|&i| &self.data.snapshot.blocks[i as usize]),
                );
                let e = groups.entry(label).or_default();
                e.0 += c;
                e.1 += s;
                e.2.extend(members);
            }
        } else {
            for &i in self.members.iter() {
                point();
                let b = &self.data.snapshot.blocks[i as usize];
                let e = groups.entry(self.label(kind, b)).or_default();
                e.0 += b.est_blocks;
                e.1 += b.est_bytes;
                e.2.push(i);
            }
        }
        self.partition_of(kind, largest_first(groups))
    }

    /// By Rust type.
    pub fn bytype(&self) -> Partition {
        self.partition(Kind::Type)
    }

    /// By allocation site (function and line of the program's own code).
    pub fn bysite(&self) -> Partition {
        self.partition(Kind::Site)
    }

    /// By whole stack.
    pub fn bystack(&self) -> Partition {
        self.partition(Kind::Stack)
    }

    /// By size class.
    pub fn bysize(&self) -> Partition {
        self.partition(Kind::Size)
    }

    /// By age: leaks are old.
    pub fn byage(&self) -> Partition {
        self.partition(Kind::Age)
    }

    /// By allocating thread.
    pub fn bythread(&self) -> Partition {
        self.partition(Kind::Thread)
    }

    /// The resolved frames of the stacks of these blocks, most bytes first:
    /// (frames, count, size).
    pub fn stacks(&self) -> Vec<(Vec<Frame>, Totals)> {
        self.bystack()
            .rows
            .iter()
            .map(|r| {
                let first = &self.data.snapshot.blocks[r.members[0] as usize];
                (
                    self.data.facts(first.stack).frames.clone(),
                    Totals {
                        count: r.count,
                        size: r.size,
                    },
                )
            })
            .collect()
    }
}

impl std::ops::Sub for &Heap {
    type Output = HeapDiff;
    /// `now - before`: the difference by type.
    fn sub(self, before: &Heap) -> HeapDiff {
        self.diff(before, Kind::Type)
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        write!(f, "Heap({} blocks, {} bytes)", t.count, t.size)
    }
}
