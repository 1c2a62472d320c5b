//! The growth watch: a bounded history of heap totals taken in the
//! background, and the kinds of blocks that keep growing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Hpy, Kind, Partition, hpy};
use crate::sys::fork::{ForkSafe, InChild};

/// Points the growth watch keeps.
pub(crate) const WATCH_POINTS: usize = 240;

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

/// The running watch. A forked child has no watch thread: it starts with
/// none.
static WATCH: ForkSafe<Option<Watcher>> = ForkSafe::new(None, InChild::Empty);

fn sizes(p: &Partition) -> HashMap<String, u64> {
    p.rows.iter().map(|r| (r.label.clone(), r.size)).collect()
}

impl Watcher {
    fn start(interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(VecDeque::new()));
        let thread = {
            let (stop, history) = (stop.clone(), history.clone());
            crate::tracker::spawn_own(
                std::thread::Builder::new().name("leakscope-watch".into()),
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
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
                        // Taking the heap is at most a tenth of the watch's
                        // time, whatever the interval asked.
                        let until = Instant::now() + interval.max(began.elapsed() * 9);
                        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(10).min(interval));
                        }
                    }
                },
            )
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

/// The suspects of the growth watch, fastest growth first (a slice of
/// [`Suspect`]s; its `Display` is the console's table).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Suspects {
    /// The suspects, fastest growth first.
    pub rows: Vec<Suspect>,
    /// Whether a watch is running (without one there can be none).
    pub watching: bool,
}

impl std::ops::Deref for Suspects {
    type Target = [Suspect];
    fn deref(&self) -> &[Suspect] {
        &self.rows
    }
}

/// A kind of block that keeps growing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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

impl Hpy {
    /// Starts (or restarts with a new interval) the growth watch: a
    /// background thread that takes a heap every `interval` and keeps the
    /// live size per type and per site, for the last 240
    /// intervals. It waits at least nine times as long as a heap took
    /// between two heaps, so that it takes at most a tenth of one core
    /// however short the interval. It runs until [`Hpy::unwatch`] (or a
    /// new `watch`), not only while the session that started it lasts.
    pub fn watch(&self, interval: Duration) {
        let mut w = WATCH.lock();
        if let Some(old) = w.take() {
            old.stop();
        }
        *w = Some(Watcher::start(interval.max(Duration::from_millis(10))));
    }

    /// Stops the growth watch (its history is dropped).
    pub fn unwatch(&self) {
        if let Some(old) = WATCH.lock().take() {
            old.stop();
        }
    }

    /// Kinds (types and sites) whose live size grew in most intervals of the
    /// watch, fastest growth first. Empty until the watch has three points.
    pub fn suspects(&self) -> Suspects {
        let w = WATCH.lock();
        Suspects {
            rows: match w.as_ref() {
                Some(w) => suspects(&w.history.lock().unwrap_or_else(|e| e.into_inner())),
                None => Vec::new(),
            },
            watching: w.is_some(),
        }
    }
}
