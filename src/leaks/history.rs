//! The growth history: a background thread that takes the heap at an
//! interval and keeps, for the last [`POINTS`] points, the live bytes and
//! blocks of the [`ROWS_PER_KIND`] largest types and sites, in a store of
//! bounded size.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Mode;
use crate::heap::{Heap, Kind, hpy};
use crate::sys::fork::{ForkSafe, InChild};

/// Points the history keeps (40 minutes at the default interval).
pub const POINTS: usize = 240;
/// Rows kept per point, of types and of sites each: the largest.
pub const ROWS_PER_KIND: usize = 64;
/// The interval when `LEAKSCOPE_WATCH_INTERVAL` is not set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval the history takes points at.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// The history waits at least this many times as long as a point took
/// before the next: it takes at most a tenth of one core however short
/// the interval asked (at the default interval, far less: see
/// `benches/leaks.rs`). A point's time includes resolving the stacks
/// seen for the first time, once: the wait follows the cheaper of the
/// last two points, and the first two points (the first reads the
/// program's symbols) wait only the interval.
const IDLE_FACTOR: u32 = 9;
/// Room under the address-space limit a point needs beyond twice its
/// heap's size.
const NEED_MARGIN: u64 = 64 << 20;
/// Labels the store holds at most: when points still name that many, a
/// row with a new label is left out of the next point.
const MAX_LABELS: usize = 3072;
/// The longest label kept (bytes); longer ones are cut.
const MAX_LABEL_BYTES: usize = 256;

/// A point's figures other than its rows.
struct Head {
    at: f64,
    mode: Mode,
    sample_bytes: u64,
    bytes: u64,
    blocks: u64,
}

/// One row of a point: a label (an index into the store's labels), its
/// live bytes and blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell {
    label: u32,
    pub(crate) bytes: u64,
    pub(crate) blocks: u64,
}

/// The heap at one moment, as far as the history keeps it.
#[derive(Debug)]
pub(crate) struct Point {
    /// Seconds since the recorder started.
    pub(crate) at: f64,
    /// The mode its figures come from.
    pub(crate) mode: Mode,
    /// The mean gap between samples of its figures, 0 when exact.
    pub(crate) sample_bytes: u64,
    /// Live bytes and blocks of the whole recorded heap.
    pub(crate) bytes: u64,
    pub(crate) blocks: u64,
    types: Box<[Cell]>,
    sites: Box<[Cell]>,
}

impl Point {
    /// Its rows of `kind` (types or sites).
    pub(crate) fn cells(&self, kind: Kind) -> &[Cell] {
        if kind == Kind::Site {
            &self.sites
        } else {
            &self.types
        }
    }
}

/// The points, and the labels they name by index.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) points: VecDeque<Point>,
    labels: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
    /// The interval asked for.
    pub(crate) interval: Duration,
    /// How long the last point took to take.
    pub(crate) last_cost: Duration,
    /// Points skipped because the process was near its memory limit.
    pub(crate) skipped: u64,
}

impl Store {
    fn new(interval: Duration) -> Store {
        Store {
            interval,
            ..Store::default()
        }
    }

    /// The label a cell names.
    pub(crate) fn label(&self, c: &Cell) -> &Arc<str> {
        &self.labels[c.label as usize]
    }

    /// The index of `label` (cut to [`MAX_LABEL_BYTES`]), or `None` when
    /// the store holds [`MAX_LABELS`] labels that points still name.
    fn intern(&mut self, label: &str) -> Option<u32> {
        let mut end = label.len().min(MAX_LABEL_BYTES);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        let label = &label[..end];
        if let Some(&i) = self.index.get(label) {
            return Some(i);
        }
        if self.labels.len() >= MAX_LABELS {
            return None;
        }
        let label: Arc<str> = label.into();
        let i = self.labels.len() as u32;
        self.labels.push(label.clone());
        self.index.insert(label, i);
        Some(i)
    }

    /// The cells of the first [`ROWS_PER_KIND`] of `rows` (label, bytes,
    /// blocks); a row whose label finds no room in the store is left out.
    fn cells<'a>(&mut self, rows: impl Iterator<Item = (&'a str, u64, u64)>) -> Box<[Cell]> {
        rows.take(ROWS_PER_KIND)
            .filter_map(|(label, bytes, blocks)| {
                Some(Cell {
                    label: self.intern(label)?,
                    bytes,
                    blocks,
                })
            })
            .collect()
    }

    /// Adds the point of `heap`.
    fn push_heap(&mut self, heap: &Heap, mode: Mode, sample_bytes: u64) {
        let (types, sites) = (heap.partition(Kind::Type), heap.partition(Kind::Site));
        fn rows(p: &crate::heap::Partition) -> impl Iterator<Item = (&str, u64, u64)> {
            p.rows().iter().map(|r| (r.label.as_str(), r.size, r.count))
        }
        let head = Head {
            at: heap.taken_at().as_secs_f64(),
            mode,
            sample_bytes,
            bytes: heap.size(),
            blocks: heap.count(),
        };
        self.push(head, rows(&types), rows(&sites));
    }

    /// Adds a point, dropping the oldest beyond [`POINTS`] and, when the
    /// labels near their bound, the labels no point names any more.
    fn push<'a>(
        &mut self,
        head: Head,
        types: impl Iterator<Item = (&'a str, u64, u64)>,
        sites: impl Iterator<Item = (&'a str, u64, u64)>,
    ) {
        if self.points.len() == POINTS {
            self.points.pop_front();
        }
        if self.labels.len() + 2 * ROWS_PER_KIND > MAX_LABELS {
            self.drop_unused_labels();
        }
        let point = Point {
            at: head.at,
            mode: head.mode,
            sample_bytes: head.sample_bytes,
            bytes: head.bytes,
            blocks: head.blocks,
            types: self.cells(types),
            sites: self.cells(sites),
        };
        self.points.push_back(point);
    }

    fn drop_unused_labels(&mut self) {
        let mut renumber: HashMap<u32, u32> = HashMap::new();
        let mut labels = Vec::new();
        for p in self.points.iter_mut() {
            for c in p.types.iter_mut().chain(p.sites.iter_mut()) {
                let next = labels.len() as u32;
                let new = *renumber.entry(c.label).or_insert_with(|| {
                    labels.push(self.labels[c.label as usize].clone());
                    next
                });
                c.label = new;
            }
        }
        self.index = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i as u32))
            .collect();
        self.labels = labels;
    }

    /// The bytes the store takes (points, cells and labels).
    pub(crate) fn memory(&self) -> usize {
        let cells: usize = self
            .points
            .iter()
            .map(|p| (p.types.len() + p.sites.len()) * size_of::<Cell>())
            .sum();
        let labels: usize = self.labels.iter().map(|l| l.len() + 16).sum();
        self.points.capacity() * size_of::<Point>()
            + cells
            + labels
            + self.labels.capacity() * size_of::<Arc<str>>()
            + self.index.capacity() * (size_of::<(Arc<str>, u32)>() + 1)
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    store: Arc<Mutex<Store>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The running history. A forked child has no history thread: it starts
/// with none.
static RUNNING: ForkSafe<Option<Running>> = ForkSafe::new(None, InChild::Empty);

/// Locks a store, whatever a panicking holder left (a store is valid after
/// any of its steps).
pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the history at `interval` if none runs; with `restart`, a
/// running one is stopped first (its points dropped).
pub(crate) fn start(interval: Duration, restart: bool) {
    let mut running = RUNNING.lock();
    if running.is_some() && !restart {
        return;
    }
    if let Some(old) = running.take() {
        old.stop();
    }
    let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let stop = Arc::new(AtomicBool::new(false));
    let store = Arc::new(Mutex::new(Store::new(interval)));
    let thread = {
        let (stop, store) = (stop.clone(), store.clone());
        crate::tracker::spawn_own(
            std::thread::Builder::new().name("leakscope-history".into()),
            move || take_points(&stop, &store, interval),
        )
        .ok()
    };
    *running = Some(Running {
        stop,
        store,
        thread,
    });
}

/// Stops the history; its points are dropped.
pub(crate) fn stop() {
    let old = RUNNING.lock().take();
    if let Some(old) = old {
        old.stop();
    }
}

/// The running history's store, if one runs.
pub(crate) fn store() -> Option<Arc<Mutex<Store>>> {
    RUNNING.lock().as_ref().map(|r| r.store.clone())
}

fn take_points(stop: &AtomicBool, store: &Mutex<Store>, interval: Duration) {
    // The previous point's time; none before the second point.
    let mut previous: Option<Duration> = None;
    // The room a point needs under an address-space limit.
    let mut need = NEED_MARGIN;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let mode = crate::tracker::mode();
        // A failed allocation here would abort the program: near its
        // address-space limit a point is skipped, and a heap that cannot
        // be copied is a point missed, not a failure.
        let room = crate::sys::limit::address_space_room();
        if room.is_some_and(|r| r < need) {
            lock(store).skipped += 1;
        } else if let Ok(heap) = hpy().try_whole_heap() {
            // What the next point may need: its heap's snapshot and rows,
            // and as much again for the partitions.
            need = NEED_MARGIN + 2 * heap.memory().1.1 as u64;
            let sample_bytes = if heap.estimated() {
                crate::tracker::sample_bytes()
            } else {
                0
            };
            let mut s = lock(store);
            s.push_heap(&heap, mode, sample_bytes);
            s.last_cost = began.elapsed();
        }
        let took = began.elapsed();
        let cost = previous.map_or(Duration::ZERO, |p| p.min(took));
        previous = (!first).then_some(took);
        first = false;
        let until = Instant::now() + interval.max(cost * IDLE_FACTOR);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_stays_within_two_mib_when_every_point_names_new_rows() {
        // The worst case: every point's rows have labels never seen
        // before, longer than the longest kept.
        let mut s = Store::new(DEFAULT_INTERVAL);
        let long = "x".repeat(300);
        for p in 0..(POINTS * 3) {
            let names = |kind: usize| -> Vec<String> {
                (0..ROWS_PER_KIND * 2)
                    .map(|r| format!("{kind}{p:08}{r:04}{long}"))
                    .collect()
            };
            let (types, sites) = (names(0), names(1));
            let head = Head {
                at: p as f64,
                mode: Mode::Sampled,
                sample_bytes: 1,
                bytes: 0,
                blocks: 0,
            };
            s.push(
                head,
                types.iter().map(|l| (l.as_str(), 1, 1)),
                sites.iter().map(|l| (l.as_str(), 2, 1)),
            );
            assert!(s.labels.len() <= MAX_LABELS);
        }
        assert_eq!(s.points.len(), POINTS);
        // Every row kept names the label it was given with (rows with new
        // labels are left out while old points still name the maximum).
        for (p, point) in s.points.iter().enumerate() {
            let p = POINTS * 2 + p;
            for (kind, cells) in [(0, &point.types), (1, &point.sites)] {
                for c in cells.iter() {
                    let label = s.label(c);
                    assert!(label.starts_with(&format!("{kind}{p:08}")), "{label}");
                    assert_eq!(label.len(), MAX_LABEL_BYTES);
                }
            }
        }
        assert!(s.memory() <= 2 << 20, "{} bytes", s.memory());
    }
}
