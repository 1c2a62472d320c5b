//! Heap views: Guppy's `hpy().heap()` for a Rust program.
//!
//! [`hpy`]`().heap()` takes a snapshot of the live blocks the recorder knows
//! (every block in exact mode, a weighted sample in sampled mode) and
//! partitions it by Rust type, allocation site, whole stack, size class,
//! age or thread. A row of a [`Partition`] selects a sub-[`Heap`] that can be
//! partitioned again (type → the sites that allocate it → their stacks).
//! Two heaps subtract into a [`HeapDiff`]; [`Hpy::watch`] keeps a bounded
//! history of totals and [`Hpy::suspects`] names the kinds that keep growing.
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
//! Data types here carry no formatting: `Display` delegates to
//! [`crate::render`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::recorder::{self, LiveBlock, Snapshot};
use crate::symbols::{self, BlockType, Frame};

/// Rows shown per page of a partition (as Guppy).
pub const PAGE_ROWS: usize = 10;

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
        }
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

fn frame_label(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{} ({file}:{line})", f.function)
        }
        _ => f.function.clone(),
    }
}

fn facts(addrs: &[usize]) -> StackFacts {
    let frames = symbols::resolve_stack(addrs);
    let mut ty = symbols::block_type(&frames);
    if ty.ambiguous {
        ty.name.push_str(" (?)");
    }
    let site = symbols::allocation_site(&frames).map_or_else(|| "?".to_string(), frame_label);
    let own: Vec<&Frame> = frames.iter().filter(|f| !f.is_runtime()).take(4).collect();
    let stack_label = if own.is_empty() {
        site.clone()
    } else {
        own.iter()
            .map(|f| f.function.as_str())
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
}

impl HeapData {
    fn facts(&self, stack: u32) -> &StackFacts {
        self.facts[stack as usize]
            .get_or_init(|| facts(&self.snapshot.stacks[stack as usize].frames))
    }
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
pub struct Totals {
    /// Number of blocks.
    pub count: u64,
    /// Bytes in them.
    pub size: u64,
}

impl Heap {
    fn from_snapshot(snapshot: Snapshot, keep: impl Fn(&LiveBlock) -> bool) -> Heap {
        let facts = (0..snapshot.stacks.len())
            .map(|_| OnceLock::new())
            .collect();
        let data = Arc::new(HeapData { snapshot, facts });
        let members: Arc<[u32]> = data
            .snapshot
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| keep(b) && !data.facts(b.stack).tool_owned)
            .map(|(i, _)| i as u32)
            .collect();
        Heap { data, members }
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
        }
    }

    /// Partitions the blocks by `kind`, rows largest first.
    pub fn partition(&self, kind: Kind) -> Partition {
        // Group by stack first: every block of a stack has the same type,
        // site and stack label, so symbols are looked at once per stack.
        let mut groups: HashMap<String, (f64, u64, Vec<u32>)> = HashMap::new();
        if matches!(kind, Kind::Type | Kind::Site | Kind::Stack) {
            let mut by_stack: HashMap<u32, Vec<u32>> = HashMap::new();
            for &i in self.members.iter() {
                by_stack
                    .entry(self.data.snapshot.blocks[i as usize].stack)
                    .or_default()
                    .push(i);
            }
            for members in by_stack.into_values() {
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
                let b = &self.data.snapshot.blocks[i as usize];
                let e = groups.entry(self.label(kind, b)).or_default();
                e.0 += b.est_blocks;
                e.1 += b.est_bytes;
                e.2.push(i);
            }
        }
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
        Partition {
            heap: self.clone(),
            kind,
            rows: rows.into(),
            start: 0,
            all: false,
        }
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

impl fmt::Display for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::render::partition(
            &self.bytype(),
            crate::render::WIDTH,
        ))
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        write!(f, "Heap({} blocks, {} bytes)", t.count, t.size)
    }
}

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
pub struct Row {
    /// What the row's blocks share (a type, a site, a size class …).
    pub label: String,
    /// Number of blocks (an estimate when sampled).
    pub count: u64,
    /// Bytes in them.
    pub size: u64,
    members: Arc<[u32]>,
}

/// A heap split into rows by one [`Kind`], largest first, shown a page of
/// ten rows at a time.
#[derive(Clone)]
pub struct Partition {
    heap: Heap,
    kind: Kind,
    rows: Arc<[Row]>,
    start: usize,
    all: bool,
}

impl Partition {
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

    /// Renders the current page for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        crate::render::partition(self, width)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(crate::render::WIDTH))
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Partition({:?}, {} rows)", self.kind, self.rows.len())
    }
}

/// One row of a [`HeapDiff`].
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl fmt::Display for HeapDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::render::diff(self, crate::render::WIDTH))
    }
}

/// Blocks live when [`Hpy::setrelheap`] was called: (address, birth).
static RELHEAP: Mutex<Option<HashSet<(usize, Duration)>>> = Mutex::new(None);

/// The entry point, as Guppy's `hpy()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hpy;

/// Guppy's `hpy()`: heaps, baselines and the growth watch.
pub fn hpy() -> Hpy {
    Hpy
}

impl Hpy {
    /// A snapshot of the live blocks the recorder knows (only those
    /// allocated after [`Hpy::setrelheap`], if it was called).
    pub fn heap(&self) -> Heap {
        let snapshot = recorder::snapshot();
        let base = RELHEAP.lock().unwrap_or_else(|e| e.into_inner());
        match base.as_ref() {
            Some(old) => Heap::from_snapshot(snapshot, |b| !old.contains(&(b.addr, b.born))),
            None => Heap::from_snapshot(snapshot, |_| true),
        }
    }

    /// Later heaps show only blocks allocated after this call.
    pub fn setrelheap(&self) {
        let snapshot = recorder::snapshot();
        let set: HashSet<(usize, Duration)> =
            snapshot.blocks.iter().map(|b| (b.addr, b.born)).collect();
        *RELHEAP.lock().unwrap_or_else(|e| e.into_inner()) = Some(set);
    }

    /// Guppy's other name for [`Hpy::setrelheap`].
    pub fn setref(&self) {
        self.setrelheap()
    }

    /// Later heaps show every live block again.
    pub fn clear_relheap(&self) {
        *RELHEAP.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Starts (or restarts with a new interval) the growth watch: a
    /// background thread that takes a heap every `interval` and keeps the
    /// live size per type and per site, for the last [`WATCH_POINTS`]
    /// intervals.
    pub fn watch(&self, interval: Duration) {
        let mut w = WATCH.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = w.take() {
            old.stop();
        }
        *w = Some(Watcher::start(interval.max(Duration::from_millis(10))));
    }

    /// Stops the growth watch (its history is dropped).
    pub fn unwatch(&self) {
        if let Some(old) = WATCH.lock().unwrap_or_else(|e| e.into_inner()).take() {
            old.stop();
        }
    }

    /// Kinds (types and sites) whose live size grew in most intervals of the
    /// watch, fastest growth first. Empty until the watch has three points.
    pub fn suspects(&self) -> Vec<Suspect> {
        let w = WATCH.lock().unwrap_or_else(|e| e.into_inner());
        match w.as_ref() {
            Some(w) => suspects(&w.history.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }
}

/// Points the growth watch keeps.
pub const WATCH_POINTS: usize = 240;

struct Point {
    at: Instant,
    by_type: HashMap<String, u64>,
    by_site: HashMap<String, u64>,
}

struct Watcher {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<VecDeque<Point>>>,
    thread: Option<JoinHandle<()>>,
}

static WATCH: Mutex<Option<Watcher>> = Mutex::new(None);

fn sizes(p: &Partition) -> HashMap<String, u64> {
    p.rows.iter().map(|r| (r.label.clone(), r.size)).collect()
}

impl Watcher {
    fn start(interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(VecDeque::new()));
        let thread = {
            let (stop, history) = (stop.clone(), history.clone());
            std::thread::Builder::new()
                .name("leakscope-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let heap = hpy().heap();
                        let point = Point {
                            at: Instant::now(),
                            by_type: sizes(&heap.bytype()),
                            by_site: sizes(&heap.bysite()),
                        };
                        {
                            let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
                            if h.len() == WATCH_POINTS {
                                h.pop_front();
                            }
                            h.push_back(point);
                        }
                        let until = Instant::now() + interval;
                        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(10).min(interval));
                        }
                    }
                })
                .ok()
        };
        Watcher {
            stop,
            history,
            thread,
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A kind of block that keeps growing.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    /// [`Kind::Type`] or [`Kind::Site`].
    pub kind: Kind,
    /// The type or site.
    pub label: String,
    /// Intervals in which its live size grew.
    pub grew: usize,
    /// Intervals watched.
    pub intervals: usize,
    /// Live bytes now.
    pub size: u64,
    /// Growth over the watch, in bytes per minute.
    pub bytes_per_minute: f64,
}

fn suspects(history: &VecDeque<Point>) -> Vec<Suspect> {
    if history.len() < 3 {
        return Vec::new();
    }
    let first = &history[0];
    let last = &history[history.len() - 1];
    let minutes = last.at.duration_since(first.at).as_secs_f64() / 60.0;
    let intervals = history.len() - 1;
    let mut out = Vec::new();
    for (kind, get) in [
        (
            Kind::Type,
            (|p: &Point| &p.by_type) as fn(&Point) -> &HashMap<String, u64>,
        ),
        (Kind::Site, |p: &Point| &p.by_site),
    ] {
        for (label, &size) in get(last) {
            let series: Vec<u64> = history
                .iter()
                .map(|p| get(p).get(label).copied().unwrap_or(0))
                .collect();
            let grew = series.windows(2).filter(|w| w[1] > w[0]).count();
            let start = series[0];
            // Grew in most intervals, and overall.
            if grew * 3 >= intervals * 2 && size > start {
                out.push(Suspect {
                    kind,
                    label: label.clone(),
                    grew,
                    intervals,
                    size,
                    bytes_per_minute: (size - start) as f64 / minutes.max(1e-9),
                });
            }
        }
    }
    out.sort_by(|a, b| b.bytes_per_minute.total_cmp(&a.bytes_per_minute));
    out
}
