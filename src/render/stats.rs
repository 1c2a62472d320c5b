//! `stats()` and `purge()`: the allocator's figures.

use std::fmt;

use super::table::{WIDTH, bytes, finish, table, wrap};
use crate::stats::{PurgeReport, Stats};

/// `stats()`: leakscope's counters and jemalloc's figures.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&stats(self))
    }
}

/// `purge()`'s report.
impl fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&purge(self, WIDTH))
    }
}

impl PurgeReport {
    /// The report in `width` columns.
    pub fn render(&self, width: usize) -> String {
        purge(self, width)
    }
}

fn stats(s: &Stats) -> String {
    let mut t = table(&["Figure", "Bytes", "", "Blocks"], &[1, 3]);
    let mode = s.mode.map_or("?", |m| m.name());
    // `n`: the figure in bytes, shown again with a unit (none when 0 and
    // `shown` is not a number).
    let mut row = |name: &str, shown: String, n: u64, blocks: Option<u64>| {
        let unit = if n == 0 && shown.parse::<u64>().is_err() {
            String::new()
        } else {
            bytes(n)
        };
        t.add_row(vec![
            name.to_string(),
            shown,
            unit,
            blocks.map_or_else(String::new, |b| b.to_string()),
        ]);
    };
    // Off counts nothing: zeros there would read as an empty heap.
    let off = s.mode == Some(crate::Mode::Off);
    if off {
        for name in [
            "live",
            "peak live",
            "allocated since start",
            "freed since start",
        ] {
            row(name, "not counted".to_string(), 0, None);
        }
    } else {
        row(
            "live",
            s.live_bytes.to_string(),
            s.live_bytes,
            Some(s.live_blocks),
        );
        let peak = s.peak_live_bytes;
        let approx = if s.peak_tolerance == 0 { "" } else { "~" };
        row("peak live", format!("{approx}{peak}"), peak, None);
        row(
            "allocated since start",
            s.total_bytes.to_string(),
            s.total_bytes,
            Some(s.total_blocks),
        );
        row(
            "freed since start",
            s.freed_bytes.to_string(),
            s.freed_bytes,
            Some(s.freed_blocks),
        );
    }
    row(
        "leakscope itself",
        s.own_bytes.to_string(),
        s.own_bytes,
        None,
    );
    row(
        "  of which the recorder",
        s.recorder_bytes.to_string(),
        s.recorder_bytes,
        None,
    );
    row(
        "  of which debug info",
        s.debug_info_bytes.to_string(),
        s.debug_info_bytes,
        None,
    );
    row(
        "  bound (16 MiB + 5% live)",
        s.own_bound.to_string(),
        s.own_bound,
        None,
    );
    row(
        "  views' budget",
        s.views_budget.to_string(),
        s.views_budget,
        None,
    );
    let j = &s.jemalloc;
    for (name, n) in [
        ("jemalloc allocated", j.allocated),
        ("jemalloc active", j.active),
        ("jemalloc resident", j.resident),
        ("jemalloc mapped", j.mapped),
        ("jemalloc retained", j.retained),
        ("jemalloc metadata", j.metadata),
    ] {
        row(name, n.to_string(), n, None);
    }
    let mut out = format!("Allocator ({mode} mode, {} threads)\n", s.threads);
    out.push_str(&finish(&t));
    out.push('\n');
    if off {
        out.push_str(&wrap(
            "Mode off counts nothing: set_mode('counters') counts from now on, \
             set_mode('sampled') also records where blocks were allocated.",
            WIDTH,
            0,
        ));
        out.push('\n');
    } else if s.peak_tolerance > 0 {
        out.push_str(&wrap(
            &format!(
                "~: each thread's counters join the peak as the thread allocates, not at \
                 every allocation, so the peak may be up to {} low; live, allocated and \
                 freed are exact.",
                bytes(s.peak_tolerance)
            ),
            WIDTH,
            0,
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "Longest wait for leakscope's lock: {:.3} ms\n",
        s.longest_tracker_wait.as_secs_f64() * 1e3
    ));
    if s.locked_copies > 0 {
        out.push_str(&format!(
            "Views copied {} parts of the recorder under its lock (copies without it kept being torn).\n",
            s.locked_copies
        ));
    }
    if s.jemalloc.resident > s.jemalloc.allocated.saturating_mul(2)
        && s.jemalloc.resident > 64 << 20
    {
        out.push_str("Resident is far above allocated: purge() may give memory back.\n");
    }
    out
}

fn purge(r: &PurgeReport, width: usize) -> String {
    let text = format!(
        "Purged: resident {} -> {} ({} returned to the OS); allocated {}.",
        bytes(r.before.resident),
        bytes(r.after.resident),
        bytes(r.freed_resident()),
        bytes(r.after.allocated)
    );
    wrap(&text, width, 0) + "\n"
}
