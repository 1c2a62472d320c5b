//! The live-references report (`prefs()`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::registry::{CLASSES, Class, SHARDS, created_ns, now_ns};

/// The live figures of one class.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClassLive {
    /// The class name.
    pub name: &'static str,
    /// Its base names.
    pub bases: &'static [&'static str],
    /// Live instances.
    pub live: usize,
    /// Age of the oldest live instance.
    pub oldest: Option<Duration>,
    /// Change in live instances since the previous printed report.
    pub change: i64,
}

/// Live instances per class, sorted by name, classes with none left out.
pub fn live_refs() -> Vec<ClassLive> {
    let classes: Vec<&'static Class> = CLASSES.lock().clone();
    let now = now_ns();
    let mut out: Vec<ClassLive> = classes
        .into_iter()
        .filter_map(|c| {
            let mut live = 0;
            let mut oldest = u64::MAX;
            for i in 0..SHARDS {
                let s = c.shard(i);
                if s.live == 0 {
                    continue;
                }
                live += s.live;
                if let Some(min) = s
                    .entries
                    .iter()
                    .filter(|e| e.created != 0)
                    .map(|e| e.created)
                    .min()
                {
                    oldest = oldest.min(min);
                }
            }
            (live > 0).then(|| ClassLive {
                name: c.name,
                bases: c.bases,
                live,
                oldest: Some(Duration::from_nanos(now.saturating_sub(created_ns(oldest)))),
                change: live as i64 - c.reported.load(Ordering::Relaxed),
            })
        })
        .collect();
    out.sort_by_key(|c| c.name);
    out
}

/// Whether class `name` (with base names `bases`) is one of `ignore` or has
/// one of them as a base.
fn ignored(name: &str, bases: &[&str], ignore: &[&str]) -> bool {
    ignore.iter().any(|i| *i == name || bases.contains(i))
}

/// The live-references report: its `Display` is Scrapy's (heading `Live
/// References`, then a table of Class, Live, Oldest, Change).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveRefs {
    /// The classes shown, sorted by name.
    pub rows: Vec<ClassLive>,
}

/// The live-references report, skipping classes named in `ignore` and
/// their subclasses. Records the counts, so the next report's Change column
/// shows what happened in between.
pub fn report(ignore: &[&str]) -> LiveRefs {
    let rows: Vec<ClassLive> = live_refs()
        .into_iter()
        .filter(|c| !ignored(c.name, c.bases, ignore))
        .collect();
    mark_reported(&rows, ignore);
    LiveRefs { rows }
}

/// What one reader (a console session) last saw of each class: the
/// baseline of its own Change column.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    live: std::collections::HashMap<&'static str, usize>,
}

/// The live-references report against `baseline` instead of the process's
/// shared one: the Change column says what changed since this reader's
/// previous report. Records the counts shown (0 for classes that went)
/// in `baseline`.
pub fn report_since(ignore: &[&str], baseline: &mut Baseline) -> LiveRefs {
    let all = live_refs();
    // Classes with no instance left are at 0 for the next report; ignored
    // ones keep their baseline, as in the shared report.
    for (name, live) in baseline.live.iter_mut() {
        if !all.iter().any(|r| r.name == *name) {
            *live = 0;
        }
    }
    let mut rows: Vec<ClassLive> = all
        .into_iter()
        .filter(|c| !ignored(c.name, c.bases, ignore))
        .collect();
    for r in &mut rows {
        r.change = r.live as i64 - baseline.live.get(r.name).copied().unwrap_or(0) as i64;
        baseline.live.insert(r.name, r.live);
    }
    LiveRefs { rows }
}

/// [`report`] as text (Scrapy's `format_live_refs`).
pub fn format_live_refs(ignore: &[&str]) -> String {
    report(ignore).to_string()
}

/// Prints [`format_live_refs`] to stdout (Scrapy's `print_live_refs`, the
/// console's `prefs()`).
pub fn print_live_refs(ignore: &[&str]) {
    println!("{}", format_live_refs(ignore));
}

/// Remembers the counts shown (0 for a class with none left), leaving the
/// ignored classes' baselines as they were.
fn mark_reported(shown: &[ClassLive], ignore: &[&str]) {
    let classes = CLASSES.lock();
    for c in classes.iter() {
        if ignored(c.name, c.bases, ignore) {
            continue;
        }
        let live = shown
            .iter()
            .find(|r| r.name == c.name)
            .map_or(0, |r| r.live);
        c.reported.store(live as i64, Ordering::Relaxed);
    }
}
