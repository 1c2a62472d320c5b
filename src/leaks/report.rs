//! The leak report and the growth history's view, read from the history's
//! store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::history::{self, Point, Store};
use super::trend::{self, MIN_POINTS};
use crate::Mode;
use crate::heap::{Heap, Kind, Partition, Retainers, hpy};

/// Suspects a report lists at most.
pub const MAX_SUSPECTS: usize = 12;
/// Suspects whose holder exact mode looks up (each needs a `byvia`).
const HOLDERS_LOOKED_UP: usize = MAX_SUSPECTS;
/// The most blocks of a suspect whose holders are looked up (an even
/// spread of them).
const LOOKED_AT: usize = 2000;
/// Suspects whose dominator row is looked up (the first also gets its
/// path from a root).
const DEEPER_LOOKED_UP: usize = 3;
/// References named from a suspect's blocks up towards a root: the one
/// that holds them, and what holds that.
const HOLDER_STEPS: usize = 3;
/// Rows per kind in [`GrowthHistory`].
const HISTORY_ROWS: usize = 8;

/// What `leaks()` found: the types and sites whose live bytes keep growing
/// (its `Display` is the console's report).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LeakReport {
    /// Whether a growth history runs (without one there is nothing to
    /// judge).
    pub running: bool,
    /// The mode the figures come from.
    #[serde(serialize_with = "mode_name")]
    pub mode: Mode,
    /// Whether the figures are estimates from samples.
    pub estimated: bool,
    /// Seconds between points, as asked.
    pub interval_seconds: f64,
    /// Points judged: in exact mode those since the switch to it, from
    /// samples those at the current sampling mean (figures from two modes
    /// do not compare).
    pub points: usize,
    /// Points needed before any row can be judged.
    pub points_needed: usize,
    /// Seconds from the first point judged to the last.
    pub watched_seconds: f64,
    /// The suspects, fastest growth first (at most [`MAX_SUSPECTS`]).
    pub suspects: Vec<LeakSuspect>,
    /// Bytes the growth history takes.
    pub history_bytes: usize,
    /// With [`deep`](super::deep_report): the seconds exact mode was on
    /// to find the holders.
    pub deep_seconds: Option<f64>,
    /// Whether a deep report was asked for while another was running (one
    /// runs at a time: this one is the plain report).
    pub deep_busy: bool,
}

/// A type and site whose live bytes grew in a sustained way.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LeakSuspect {
    /// Its type (`Vec<app::Body>`); when it was found by its site, the
    /// type that takes most of the site's bytes.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The allocation site in the program's code; when it was found by its
    /// type, the site of most of the type's growing bytes.
    pub site: String,
    /// Whether the growth was found in the site's figures or the type's
    /// (`"site"` or `"type"`): the figures below are that row's (a site's
    /// blocks of every type, or a type's at every site).
    pub found_by: &'static str,
    /// Live bytes now, at the history's last point (an estimate in sampled
    /// mode).
    pub bytes: u64,
    /// Live blocks now.
    pub blocks: u64,
    /// The fitted growth, in bytes per minute.
    pub bytes_per_minute: f64,
    /// Seconds it has grown: since its last lowest point in the window.
    pub growing_seconds: f64,
    /// Its live bytes at each point judged (0 where it was not among the
    /// largest rows).
    pub history: Vec<u64>,
    /// In exact mode, the reference that holds most of its blocks.
    pub held_by: Option<Holder>,
}

/// The reference that holds most of a suspect's blocks (`byvia`'s first
/// row).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Holder {
    /// The reference (`Request.meta`), or `[no reference]` when nothing in
    /// the graph points at the blocks (an `Rc` cycle, a `Box::leak`).
    pub via: String,
    /// The suspect's blocks it holds.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The suspect's blocks looked at: all of them in the heap taken when
    /// the report was asked for (a little after the history's last
    /// point), or an even spread of 2000 of them.
    pub of_blocks: u64,
    /// What holds the blocks that hold them, step by step up towards a
    /// root (`Request.meta` above `HtmlResponse.body`): each step the
    /// reference that holds most of the step below.
    pub above: Vec<String>,
    /// The most common shortest path from a root to the suspect's blocks
    /// (`sp`'s first row: the root, each reference, the blocks' type), and
    /// how many of those looked at it leads to; for the first suspect in
    /// exact mode.
    pub path: Option<(Vec<String>, u64)>,
    /// Where the suspect's blocks are kept alive from, in the dominator
    /// tree (for the first suspects, in exact mode with no samples left in
    /// the heap).
    pub kept_by: Option<KeptBy>,
}

/// The row of `dominators()` that dominates the most of a suspect's
/// blocks: the blocks whose freeing would free them, and all they retain.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeptBy {
    /// Its index in `hpy().heap().dominators()`.
    pub row: usize,
    /// The type of its blocks.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Their allocation site.
    pub site: String,
    /// How many blocks it has.
    pub blocks: u64,
    /// The bytes they retain.
    pub retained: u64,
    /// Of every block the roots reach, in bytes.
    pub reachable: u64,
    /// How many of the suspect's blocks it dominates.
    pub dominates: u64,
}

fn mode_name<S: serde::Serializer>(mode: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.name())
}

/// The growth history as it stands (its `Display` is the console's
/// `hpy().watch()`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrowthHistory {
    /// Whether a growth history runs.
    pub running: bool,
    /// Seconds between points, as asked.
    pub interval_seconds: f64,
    /// Each point's time, in seconds since the recorder started.
    pub times: Vec<f64>,
    /// The mode of each point.
    #[serde(skip)]
    pub modes: Vec<Mode>,
    /// The whole recorded heap.
    pub total: GrowthRow,
    /// The largest types now, largest first.
    pub types: Vec<GrowthRow>,
    /// The largest sites now, largest first.
    pub sites: Vec<GrowthRow>,
    /// Bytes the growth history takes.
    pub history_bytes: usize,
    /// Seconds the last point took to take.
    pub last_point_seconds: f64,
    /// Points skipped because the process was near its address-space
    /// limit (taking one could have made it run out).
    pub skipped_points: u64,
}

/// One row of the growth history: a label and its figures at each point.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrowthRow {
    /// The type or site (`(all)` for the whole heap).
    pub label: String,
    /// Live bytes at each point (0 where it was not among the largest).
    pub bytes: Vec<u64>,
    /// Live blocks at each point.
    pub blocks: Vec<u64>,
}

/// A label's figures at each point of a window: (bytes, blocks, present).
fn series(store: &Store, window: &[&Point], kind: Kind, label: &str) -> Vec<(u64, u64, bool)> {
    window
        .iter()
        .map(|p| {
            p.cells(kind)
                .iter()
                .filter(|c| &**store.label(c) == label)
                .fold((0, 0, false), |(b, n, _), c| {
                    (b + c.bytes, n + c.blocks, true)
                })
        })
        .collect()
}

/// The points judged together: in exact mode those since the switch to
/// it; from samples, those at the same sampling mean.
fn window(store: &Store) -> Vec<&Point> {
    let Some(last) = store.points.back() else {
        return Vec::new();
    };
    if last.sample_bytes > 0 {
        // Estimates at one sampling mean compare across a switch to exact
        // mode and back (blocks recorded exactly meanwhile count as they
        // are): the points of a window in exact mode are left out.
        return store
            .points
            .iter()
            .filter(|p| p.sample_bytes == last.sample_bytes)
            .collect();
    }
    let mut w: Vec<&Point> = store
        .points
        .iter()
        .rev()
        .take_while(|p| p.mode == last.mode && p.sample_bytes == last.sample_bytes)
        .collect();
    w.reverse();
    w
}

/// A row the trend test found growing.
struct Found {
    kind: Kind,
    label: Arc<str>,
    bytes: u64,
    blocks: u64,
    per_minute: f64,
    growing: f64,
    history: Vec<u64>,
}

/// The rows of the window's last point that grew in a sustained way.
fn growing_rows(store: &Store, window: &[&Point]) -> Vec<Found> {
    let Some(last) = window.last() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for kind in [Kind::Type, Kind::Site] {
        let mut seen: Vec<&Arc<str>> = Vec::new();
        for c in last.cells(kind) {
            let label = store.label(c);
            if seen.contains(&label) {
                continue;
            }
            seen.push(label);
            let s = series(store, window, kind, label);
            let (t, y): (Vec<f64>, Vec<f64>) = window
                .iter()
                .zip(&s)
                .filter(|(_, v)| v.2)
                .map(|(p, v)| (p.at, v.0 as f64))
                .unzip();
            if let Some(g) = trend::growth(&t, &y, last.sample_bytes as f64) {
                let (bytes, blocks, _) = s[s.len() - 1];
                found.push(Found {
                    kind,
                    label: label.clone(),
                    bytes,
                    blocks,
                    per_minute: g.per_second * 60.0,
                    growing: last.at - g.since,
                    history: s.iter().map(|v| v.0).collect(),
                });
            }
        }
    }
    found.sort_by(|a, b| b.per_minute.total_cmp(&a.per_minute));
    found
}

/// The row of `p` labelled `label`, as a heap.
fn row_named(p: &Partition, label: &str) -> Option<Heap> {
    p.rows()
        .iter()
        .position(|r| r.label == label)
        .map(|i| p.row(i))
}

/// The first row of `p` whose label is in `prefer`, else its first row:
/// (label, heap).
fn preferred_row(p: &Partition, prefer: &[&str]) -> Option<(String, Heap)> {
    let rows = p.rows();
    let i = rows
        .iter()
        .position(|r| prefer.contains(&r.label.as_str()))
        .or((!rows.is_empty()).then_some(0))?;
    Some((rows[i].label.clone(), p.row(i)))
}

/// The reference that holds most of `blocks`, the ones above it, and
/// (with the heap's dominator tree) where they are kept alive from, and
/// (`with_path`) the most common path from a root.
fn holder(all: &Heap, tree: Option<&Retainers>, with_path: bool) -> Option<Holder> {
    // What holds a few thousand of them says what holds them all, at a
    // cost that does not grow with the leak.
    let blocks = &all.spread(LOOKED_AT);
    let path = with_path
        .then(|| blocks.sp().ok())
        .flatten()
        .and_then(|sp| sp.rows.first().map(|r| (r.steps.clone(), r.count)));
    let via = blocks.byvia();
    let first = via.rows().first()?;
    let mut above = Vec::new();
    let mut held = via.row(0);
    let mut label = first.label.clone();
    // A label in brackets is no reference (`[no reference]`): nothing
    // above it.
    while !label.starts_with('[') {
        let up = held.referrers();
        if up.count() == 0 || above.len() + 1 >= HOLDER_STEPS {
            break;
        }
        let via = up.byvia();
        let Some(r) = via.rows().first() else {
            break;
        };
        // A chain of the same reference (a list through `next`, requests
        // through `meta`) is named once.
        if r.label == label {
            above.push(format!("{label} (repeated)"));
            break;
        }
        label = r.label.clone();
        above.push(label.clone());
        held = via.row(0);
    }
    let kept_by = match tree {
        Some(tree) => tree.dominating_row(all).map(|(row, dominates)| {
            let r = &tree.rows()[row];
            KeptBy {
                row,
                type_name: r.ty.clone(),
                site: r.site.clone(),
                blocks: r.count,
                retained: r.retained,
                reachable: tree.reachable,
                dominates,
            }
        }),
        None => None,
    };
    Some(Holder {
        via: first.label.clone(),
        blocks: first.count,
        bytes: first.size,
        of_blocks: blocks.count(),
        above,
        path,
        kept_by,
    })
}

pub(super) fn build() -> LeakReport {
    let mode = crate::tracker::mode();
    let Some(store) = history::store() else {
        return LeakReport {
            running: false,
            mode,
            estimated: mode != Mode::Exact,
            interval_seconds: 0.0,
            points: 0,
            points_needed: MIN_POINTS,
            watched_seconds: 0.0,
            suspects: Vec::new(),
            history_bytes: 0,
            deep_seconds: None,
            deep_busy: false,
        };
    };
    let (mut report, found) = {
        let store = history::lock(&store);
        let window = window(&store);
        let watched = match (window.first(), window.last()) {
            (Some(a), Some(b)) => b.at - a.at,
            _ => 0.0,
        };
        let report = LeakReport {
            running: true,
            mode: window.last().map_or(mode, |p| p.mode),
            estimated: window.last().is_some_and(|p| p.sample_bytes > 0),
            interval_seconds: store.interval.as_secs_f64(),
            points: window.len(),
            points_needed: MIN_POINTS,
            watched_seconds: watched,
            suspects: Vec::new(),
            history_bytes: store.memory(),
            deep_seconds: None,
            deep_busy: false,
        };
        let found = growing_rows(&store, &window);
        (report, found)
    };
    if found.is_empty() {
        return report;
    }
    // The other half of each suspect (the site of a type, the type of a
    // site) comes from the heap now.
    let Ok(heap) = hpy().try_whole_heap() else {
        report.suspects = found.into_iter().map(alone).take(MAX_SUSPECTS).collect();
        return report;
    };
    let (bytype, bysite) = (heap.bytype(), heap.bysite());
    let growing_sites: Vec<&str> = found
        .iter()
        .filter(|f| f.kind == Kind::Site)
        .map(|f| &*f.label)
        .collect();
    let growing_types: Vec<&str> = found
        .iter()
        .filter(|f| f.kind == Kind::Type)
        .map(|f| &*f.label)
        .collect();
    // Sites first: a site names the program's code, and a type that grows
    // at a growing site is that site's suspect already. A type is listed
    // on its own when no growing site explains it.
    let mut order: Vec<&Found> = found.iter().collect();
    order.sort_by_key(|f| f.kind != Kind::Site);
    let mut suspects: Vec<(LeakSuspect, Option<Heap>)> = Vec::new();
    for f in order {
        let (other, blocks) = match f.kind {
            Kind::Site => row_named(&bysite, &f.label)
                .and_then(|h| preferred_row(&h.bytype(), &growing_types)),
            _ => row_named(&bytype, &f.label)
                .and_then(|h| preferred_row(&h.bysite(), &growing_sites)),
        }
        .map_or((String::new(), None), |(l, h)| (l, Some(h)));
        let (type_name, site) = match f.kind {
            Kind::Site => (other, f.label.to_string()),
            _ => (f.label.to_string(), other),
        };
        if suspects
            .iter()
            .any(|(s, _)| s.type_name == type_name && s.site == site)
        {
            continue;
        }
        let s = alone_named(f, type_name, site);
        suspects.push((s, blocks));
    }
    suspects.sort_by(|a, b| b.0.bytes_per_minute.total_cmp(&a.0.bytes_per_minute));
    suspects.truncate(MAX_SUSPECTS);
    if report.mode == Mode::Exact && !report.estimated {
        let tree = heap.dominators().ok();
        for (i, (s, blocks)) in suspects.iter_mut().take(HOLDERS_LOOKED_UP).enumerate() {
            // Paths and the tree for the first suspects, references for
            // all.
            let tree = tree.as_ref().filter(|_| i < DEEPER_LOOKED_UP);
            s.held_by = blocks.as_ref().and_then(|b| holder(b, tree, i == 0));
        }
    }
    report.suspects = suspects.into_iter().map(|(s, _)| s).collect();
    report
}

/// The report, with the holders of its suspects found in exact mode: on
/// for `window`, then back to the mode before (see
/// [`deep_report`](super::deep_report)).
pub(super) fn deep(window: Duration) -> LeakReport {
    // One deep report at a time: two would each switch back to what the
    // other switched to.
    static DEEP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let mut report = build();
    // (A report stopped half-way, at its console line's limit, leaves the
    // lock poisoned: it is free all the same.)
    let _one = match DEEP.try_lock() {
        Ok(one) => one,
        Err(std::sync::TryLockError::Poisoned(one)) => one.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            report.deep_busy = true;
            return report;
        }
    };
    if report.mode == Mode::Exact || report.suspects.is_empty() {
        return report;
    }
    let before = crate::tracker::mode();
    let started = Instant::now();
    crate::tracker::set_mode(Mode::Exact);
    std::thread::sleep(window);
    let heap = hpy().try_whole_heap();
    crate::tracker::set_mode(before);
    report.deep_seconds = Some(started.elapsed().as_secs_f64());
    let Ok(heap) = heap else {
        return report;
    };
    // The suspects' blocks allocated in the window, and what holds them
    // (blocks from before are known only by their samples).
    let bytype = heap.recorded_exactly().bytype();
    for s in report.suspects.iter_mut().take(HOLDERS_LOOKED_UP) {
        let blocks = row_named(&bytype, &s.type_name)
            .and_then(|h| row_named(&h.bysite(), &s.site))
            .filter(|h| h.count() > 0);
        s.held_by = blocks.as_ref().and_then(|b| holder(b, None, false));
    }
    report
}

fn alone(f: Found) -> LeakSuspect {
    let label = f.label.to_string();
    match f.kind {
        Kind::Site => alone_named(&f, String::new(), label),
        _ => alone_named(&f, label, String::new()),
    }
}

fn alone_named(f: &Found, type_name: String, site: String) -> LeakSuspect {
    LeakSuspect {
        type_name,
        site,
        found_by: if f.kind == Kind::Site { "site" } else { "type" },
        bytes: f.bytes,
        blocks: f.blocks,
        bytes_per_minute: f.per_minute,
        growing_seconds: f.growing,
        history: f.history.clone(),
        held_by: None,
    }
}

pub(super) fn history() -> GrowthHistory {
    let Some(store) = history::store() else {
        return GrowthHistory {
            running: false,
            interval_seconds: 0.0,
            times: Vec::new(),
            modes: Vec::new(),
            total: GrowthRow {
                label: "(all)".into(),
                bytes: Vec::new(),
                blocks: Vec::new(),
            },
            types: Vec::new(),
            sites: Vec::new(),
            history_bytes: 0,
            last_point_seconds: 0.0,
            skipped_points: 0,
        };
    };
    let store = history::lock(&store);
    let all: Vec<&Point> = store.points.iter().collect();
    let rows = |kind: Kind| -> Vec<GrowthRow> {
        let Some(last) = all.last() else {
            return Vec::new();
        };
        let mut labels: HashMap<&str, u64> = HashMap::new();
        for c in last.cells(kind) {
            *labels.entry(store.label(c)).or_default() += c.bytes;
        }
        let mut labels: Vec<(&str, u64)> = labels.into_iter().collect();
        labels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        labels
            .into_iter()
            .take(HISTORY_ROWS)
            .map(|(label, _)| {
                let s = series(&store, &all, kind, label);
                GrowthRow {
                    label: label.to_string(),
                    bytes: s.iter().map(|v| v.0).collect(),
                    blocks: s.iter().map(|v| v.1).collect(),
                }
            })
            .collect()
    };
    GrowthHistory {
        running: true,
        interval_seconds: store.interval.as_secs_f64(),
        times: all.iter().map(|p| p.at).collect(),
        modes: all.iter().map(|p| p.mode).collect(),
        total: GrowthRow {
            label: "(all)".into(),
            bytes: all.iter().map(|p| p.bytes).collect(),
            blocks: all.iter().map(|p| p.blocks).collect(),
        },
        types: rows(Kind::Type),
        sites: rows(Kind::Site),
        history_bytes: store.memory(),
        last_point_seconds: store.last_cost.as_secs_f64(),
        skipped_points: store.skipped,
    }
}
