//! The leak report and the growth history: suspects with their site,
//! growth and sparkline, and the history's largest rows as sparklines.

use std::fmt;

use super::heap::shown_label;
use super::table::{WIDTH, bytes, percent, wrap};
use crate::heap::Kind;
use crate::leaks::{GrowthHistory, GrowthRow, LeakReport, LeakSuspect};

/// The bars of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// The widest sparkline.
const SPARK: usize = 32;

/// `values` as at most `width` bars from the lowest to the highest (each
/// bar the mean of the points it stands for).
pub(crate) fn sparkline(values: &[u64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let bars = values.len().min(width);
    let means: Vec<f64> = (0..bars)
        .map(|i| {
            let (a, b) = (i * values.len() / bars, (i + 1) * values.len() / bars);
            values[a..b.max(a + 1)]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / (b.max(a + 1) - a) as f64
        })
        .collect();
    let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    means
        .iter()
        .map(|&m| {
            if hi <= lo {
                BARS[0]
            } else {
                BARS[(((m - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// A span of seconds for people: `45 s`, `3 min 20 s`, `2 h 5 min`.
pub(super) fn span(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// `10 s`, or `0.5 s` for intervals under ten seconds with a fraction.
fn interval(seconds: f64) -> String {
    if seconds < 10.0 && seconds.fract() != 0.0 {
        format!("{seconds:.1} s")
    } else {
        span(seconds)
    }
}

fn watched(r: &LeakReport) -> String {
    format!(
        "{} point{} every {}, {} mode",
        r.points,
        if r.points == 1 { "" } else { "s" },
        interval(r.interval_seconds),
        r.mode.name()
    )
}

/// The report's opening sentence: why there is nothing to show, or how
/// many suspects over how long.
pub(super) fn summary(r: &LeakReport) -> String {
    if !r.running {
        return "No growth history runs, so there is nothing to judge: the console and the \
                HTTP endpoint start one; a program with neither calls \
                leakscope::leaks::start()."
            .to_string();
    }
    if r.points < r.points_needed {
        let wait = (r.points_needed - r.points) as f64 * r.interval_seconds;
        return format!(
            "Watched {} ({}): the report needs {} points; ask again in {}.",
            span(r.watched_seconds),
            watched(r),
            r.points_needed,
            span(wait)
        );
    }
    if r.suspects.is_empty() {
        return format!(
            "No suspects: nothing grew in a sustained way over {} ({}).",
            span(r.watched_seconds),
            watched(r)
        );
    }
    format!(
        "{} suspect{} over {} ({}), fastest growth first:",
        r.suspects.len(),
        if r.suspects.len() == 1 { "" } else { "s" },
        span(r.watched_seconds),
        watched(r)
    )
}

/// What the report's columns mean in its mode, and what another mode
/// would add (after the suspects).
pub(super) fn notes(r: &LeakReport) -> Vec<String> {
    let mut notes = Vec::new();
    if r.deep_busy {
        notes.push(
            "(Another deep=True report is running: this one is the plain report. Ask again \
             when it is done.)"
                .to_string(),
        );
    }
    if let Some(secs) = r.deep_seconds {
        notes.push(format!(
            "held by: the reference that holds most of each suspect's blocks allocated in \
             {} of exact mode (switched on for this report, then back to {}), and below it \
             (←) what holds that.",
            span(secs),
            r.mode.name()
        ));
    } else if r.mode == crate::Mode::Exact {
        notes.push(
            "held by: the reference that holds most of the suspect's blocks (byvia), and \
             below it (←) what holds that. path: the most common path from a root (sp). \
             kept by: the row of hpy().heap().dominators() that keeps most of them alive, \
             and all it retains."
                .to_string(),
        );
    } else {
        let approx = if r.estimated { "~" } else { "" };
        notes.push(format!(
            "{approx}: estimated from samples. leaks(deep=True) adds what holds each \
             suspect: exact mode for a few seconds, then back to {}.",
            r.mode.name()
        ));
    }
    notes
}

/// The leak report for a terminal `width` columns wide.
pub(crate) fn report(r: &LeakReport, width: usize) -> String {
    let para = |text: &str| wrap(text, width, 0) + "\n";
    let mut out = para(&summary(r));
    if !r.running || r.points < r.points_needed || r.suspects.is_empty() {
        return out;
    }
    let approx = if r.estimated { "~" } else { "" };
    for (i, s) in r.suspects.iter().enumerate() {
        out.push('\n');
        suspect(&mut out, i, s, approx, width);
    }
    out.push('\n');
    for note in notes(r) {
        out.push_str(&para(&note));
    }
    out
}

fn suspect(out: &mut String, i: usize, s: &LeakSuspect, approx: &str, width: usize) {
    const INDENT: usize = 4;
    let room = width.saturating_sub(INDENT + 9).max(20);
    let ty = if s.type_name.is_empty() {
        "(type unknown)".to_string()
    } else {
        shown_label(Kind::Type, &s.type_name, room)
    };
    out.push_str(&format!("Suspect {i}: {ty}\n"));
    let pad = " ".repeat(INDENT);
    if !s.site.is_empty() {
        out.push_str(&format!(
            "{pad}site     {}\n",
            shown_label(Kind::Site, &s.site, room)
        ));
    }
    let now = format!(
        "{pad}now      {approx}{} in {approx}{} blocks {}",
        bytes(s.bytes),
        s.blocks,
        if s.found_by == "site" {
            "at this site"
        } else {
            "of this type"
        }
    );
    out.push_str(&now);
    out.push('\n');
    out.push_str(&format!(
        "{pad}growth   {approx}+{}/min for {}\n",
        bytes(s.bytes_per_minute.max(0.0) as u64),
        span(s.growing_seconds)
    ));
    out.push_str(&format!(
        "{pad}history  {}\n",
        sparkline(&s.history, SPARK.min(room))
    ));
    if let Some(h) = &s.held_by {
        let counts = format!(" ({} of {} blocks looked at)", h.blocks, h.of_blocks);
        out.push_str(&format!(
            "{pad}held by  {}{counts}\n",
            shown_label(Kind::Via, &h.via, room.saturating_sub(counts.len()).max(20)),
        ));
        for step in &h.above {
            out.push_str(&format!(
                "{pad}         ← {}\n",
                shown_label(Kind::Via, step, room.saturating_sub(2))
            ));
        }
        if let Some((steps, n)) = &h.path {
            let line = format!("{} ({n} blocks)", steps.join(" → "));
            let room = width.saturating_sub(INDENT + 9).max(20);
            let under = format!("\n{}", " ".repeat(INDENT + 9));
            out.push_str(&format!(
                "{pad}path     {}\n",
                wrap(&line, room, 0).replace('\n', &under)
            ));
        }
        if let Some(k) = &h.kept_by {
            let tail = format!(
                " block{}, retaining {} ({}%)",
                if k.blocks == 1 { "" } else { "s" },
                bytes(k.retained),
                percent(k.retained, k.reachable)
            );
            let head = format!("{} ", k.blocks);
            let ty_room = room
                .saturating_sub(head.len() + tail.chars().count())
                .max(12);
            let ty = shown_label(Kind::Type, &k.type_name, ty_room);
            out.push_str(&format!("{pad}kept by  {head}{ty}{tail}\n"));
            out.push_str(&format!(
                "{pad}         (dominators() row {}: {} of these blocks under it)\n",
                k.row, k.dominates
            ));
        }
    }
}

/// One line for `stats()`: the whole heap's live bytes over the growth
/// history, as a sparkline from the first point to the last; empty without
/// two points.
pub(crate) fn live_over_time(h: &GrowthHistory, width: usize) -> String {
    let b = &h.total.bytes;
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return String::new();
    };
    if b.len() < 2 {
        return String::new();
    }
    let secs = h.times.last().unwrap_or(&0.0) - h.times.first().unwrap_or(&0.0);
    let head = format!("Live over the last {}: ", span(secs));
    let tail = format!(" {} → {}", bytes(*first), bytes(*last));
    let room = width
        .saturating_sub(head.chars().count() + tail.chars().count())
        .clamp(8, SPARK);
    format!("{head}{}{tail}\n", sparkline(b, room))
}

/// The growth history for a terminal `width` columns wide.
pub(crate) fn history(h: &GrowthHistory, width: usize) -> String {
    if !h.running {
        return wrap(
            "No growth history runs: hpy().watch(10) starts one (a heap every 10 s).",
            width,
            0,
        ) + "\n";
    }
    let n = h.times.len();
    let watched = match (h.times.first(), h.times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let mut out = wrap(
        &format!(
            "Growth history: {n} point{} every {} over {} (it keeps {}); {} in memory.",
            if n == 1 { "" } else { "s" },
            interval(h.interval_seconds),
            span(watched),
            crate::leaks::POINTS,
            bytes(h.history_bytes as u64)
        ),
        width,
        0,
    );
    out.push('\n');
    if h.skipped_points > 0 {
        out.push_str(&wrap(
            &format!(
                "{} points skipped: the process was near its address-space limit.",
                h.skipped_points
            ),
            width,
            0,
        ));
        out.push('\n');
    }
    let spark = SPARK.min(width / 3).min(n.max(1));
    let label_room = width.saturating_sub(spark + 14).max(16);
    let line = |out: &mut String, kind: Option<Kind>, r: &GrowthRow| {
        let now = r.bytes.last().copied().unwrap_or(0);
        let label = match kind {
            Some(kind) => shown_label(kind, &r.label, label_room),
            None => r.label.clone(),
        };
        out.push_str(&format!(
            "  {:<spark$} {:>9}  {label}\n",
            sparkline(&r.bytes, spark),
            bytes(now)
        ));
    };
    line(&mut out, None, &h.total);
    for (kind, title, rows) in [
        (Kind::Type, "Largest types now:", &h.types),
        (Kind::Site, "Largest sites now:", &h.sites),
    ] {
        if rows.is_empty() {
            continue;
        }
        out.push_str(title);
        out.push('\n');
        for r in rows {
            line(&mut out, Some(kind), r);
        }
    }
    out
}

impl LeakReport {
    /// The report for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        report(self, width)
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

impl GrowthHistory {
    /// The history for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        history(self, width)
    }
}

impl fmt::Display for GrowthHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_spans_the_lowest_to_the_highest_bar() {
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], 32), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5, 5, 5], 32), "▁▁▁");
        // Sixteen points in eight bars: each bar the mean of two.
        let v: Vec<u64> = (0..16).collect();
        assert_eq!(sparkline(&v, 8), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[], 8), "");
    }

    #[test]
    fn live_over_time_is_one_line_from_the_first_point_to_the_last() {
        let mut h = GrowthHistory {
            running: true,
            interval_seconds: 10.0,
            times: vec![0.0, 10.0, 20.0],
            modes: Vec::new(),
            total: GrowthRow {
                label: "(all)".into(),
                bytes: vec![1 << 20, 2 << 20, 4 << 20],
                blocks: vec![1, 2, 3],
            },
            types: Vec::new(),
            sites: Vec::new(),
            history_bytes: 0,
            last_point_seconds: 0.0,
            skipped_points: 0,
        };
        assert_eq!(
            live_over_time(&h, WIDTH),
            "Live over the last 20 s: ▁▃█ 1.0 MiB → 4.0 MiB\n"
        );
        h.times.truncate(1);
        h.total.bytes.truncate(1);
        assert_eq!(live_over_time(&h, WIDTH), "");
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(45.4), "45 s");
        assert_eq!(span(120.0), "2 min");
        assert_eq!(span(200.0), "3 min 20 s");
        assert_eq!(span(7500.0), "2 h 5 min");
        assert_eq!(interval(0.5), "0.5 s");
        assert_eq!(interval(10.0), "10 s");
    }
}
