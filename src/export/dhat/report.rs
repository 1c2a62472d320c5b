//! The tables `leakscope report` and `leakscope diff` print: a DHAT
//! file's program points summed per site, and the change between two.

use std::collections::HashMap;

use super::{DhatFile, ProgramPoint};

/// A frame of a DHAT file, parsed back: `0xADDR: function (file:line:col)`.
fn parse_frame(text: &str, inlined: bool) -> crate::symbols::Frame {
    let (addr, rest) = match text.split_once(": ") {
        Some((a, r)) if a.starts_with("0x") => (usize::from_str_radix(&a[2..], 16).unwrap_or(0), r),
        _ => (0, text),
    };
    let (function, place) = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
        _ => (rest, ""),
    };
    let mut parts = place.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse().ok());
    let line = parts.next().and_then(|l| l.parse().ok());
    let file = parts
        .next()
        .filter(|f| !f.is_empty() && *f != "???")
        .map(str::to_string);
    crate::symbols::Frame {
        addr,
        function: function.to_string(),
        file,
        line: line.filter(|l| *l != 0),
        column: column.filter(|c| *c != 0),
        inlined,
        v0: true,
    }
}

/// A program point's frames, parsed back (inlined where the next frame has
/// the same address).
pub fn frames_of(file: &DhatFile, pp: &ProgramPoint) -> Vec<crate::symbols::Frame> {
    let texts: Vec<&str> = pp
        .fs
        .iter()
        .map(|&i| file.ftbl.get(i).map_or("???", String::as_str))
        .collect();
    let addr = |t: &str| t.split_once(": ").map(|(a, _)| a.to_string());
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let inlined = texts
                .get(i + 1)
                .is_some_and(|n| addr(n).is_some() && addr(n) == addr(t));
            parse_frame(t, inlined)
        })
        .collect()
}

/// One row of a report or a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PointSummary {
    /// The allocation site (first frame of the program's own code).
    pub site: String,
    /// The block type.
    pub type_name: String,
    /// Live bytes and blocks at the end (or their change).
    pub live: (i64, i64),
    /// Bytes and blocks at the global peak (or their change).
    pub at_peak: (i64, i64),
    /// Total bytes and blocks (or their change).
    pub total: (i64, i64),
    /// Average lifetime in µs of this point's blocks (new file's, in a diff).
    pub avg_lifetime_us: u64,
}

fn summarize(file: &DhatFile, pp: &ProgramPoint) -> PointSummary {
    let frames = frames_of(file, pp);
    let site = crate::symbols::site_label(&frames);
    PointSummary {
        site,
        type_name: crate::symbols::block_type(&frames).name,
        live: (pp.eb as i64, pp.ebk as i64),
        at_peak: (pp.gb as i64, pp.gbk as i64),
        total: (pp.tb as i64, pp.tbk as i64),
        avg_lifetime_us: pp.tl.checked_div(pp.tbk).unwrap_or(0),
    }
}

/// The allocation sites of a file, one row per site and type (program
/// points whose stacks differ below the site are one row), most live bytes
/// first, then most bytes in total, then by site.
pub fn report(file: &DhatFile) -> Vec<PointSummary> {
    let mut by_site: HashMap<(String, String), (PointSummary, u128)> = HashMap::new();
    for pp in &file.pps {
        let s = summarize(file, pp);
        let lifetimes = u128::from(pp.tl);
        let key = (s.site.clone(), s.type_name.clone());
        match by_site.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((s, lifetimes));
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (e, tl) = o.get_mut();
                add(e, &s, 1);
                *tl += lifetimes;
            }
        }
    }
    let mut rows: Vec<PointSummary> = by_site
        .into_values()
        .map(|(mut s, tl)| {
            s.avg_lifetime_us = tl
                .checked_div(s.total.1.max(0) as u128)
                .map_or(0, |v| v.min(u64::MAX as u128) as u64);
            s
        })
        .collect();
    rows.sort_by(|a, b| {
        b.live
            .0
            .cmp(&a.live.0)
            .then_with(|| b.total.0.cmp(&a.total.0))
            .then_with(|| a.site.cmp(&b.site))
            .then_with(|| a.type_name.cmp(&b.type_name))
    });
    rows
}

/// Adds `sign` times `s`'s figures to `e`'s.
fn add(e: &mut PointSummary, s: &PointSummary, sign: i64) {
    e.live.0 += sign * s.live.0;
    e.live.1 += sign * s.live.1;
    e.at_peak.0 += sign * s.at_peak.0;
    e.at_peak.1 += sign * s.at_peak.1;
    e.total.0 += sign * s.total.0;
    e.total.1 += sign * s.total.1;
}

/// What changed from `old` to `new`: allocation sites (with their type)
/// matched by name, so two runs compare, and the same grouped by type; changes only, largest change of live bytes (either way) first.
pub fn diff(old: &DhatFile, new: &DhatFile) -> (Vec<PointSummary>, Vec<PointSummary>) {
    let mut points: HashMap<(String, String), PointSummary> = HashMap::new();
    for (file, sign) in [(old, -1i64), (new, 1i64)] {
        for pp in &file.pps {
            let s = summarize(file, pp);
            let e = points
                .entry((s.site.clone(), s.type_name.clone()))
                .or_insert_with(|| PointSummary {
                    live: (0, 0),
                    at_peak: (0, 0),
                    total: (0, 0),
                    avg_lifetime_us: 0,
                    ..s.clone()
                });
            add(e, &s, sign);
            if sign > 0 {
                e.avg_lifetime_us = s.avg_lifetime_us;
            }
        }
    }
    let changed = |p: &PointSummary| p.live != (0, 0) || p.total != (0, 0);
    let mut by_point: Vec<PointSummary> = points.into_values().filter(changed).collect();
    let mut types: HashMap<String, PointSummary> = HashMap::new();
    for p in &by_point {
        let e = types
            .entry(p.type_name.clone())
            .or_insert_with(|| PointSummary {
                site: String::new(),
                type_name: p.type_name.clone(),
                live: (0, 0),
                at_peak: (0, 0),
                total: (0, 0),
                avg_lifetime_us: 0,
            });
        add(e, p, 1);
    }
    let mut by_type: Vec<PointSummary> = types.into_values().filter(changed).collect();
    // Largest change of live bytes either way first, then of bytes in
    // total, then by name: the same files always give the same table.
    for v in [&mut by_point, &mut by_type] {
        v.sort_by(|a, b| {
            b.live
                .0
                .abs()
                .cmp(&a.live.0.abs())
                .then_with(|| b.total.0.abs().cmp(&a.total.0.abs()))
                .then_with(|| a.type_name.cmp(&b.type_name))
                .then_with(|| a.site.cmp(&b.site))
        });
    }
    (by_point, by_type)
}

/// A DHAT file's top program points, as `leakscope report` prints them
/// (its `Display`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DhatReport<'a> {
    /// The file.
    pub file: &'a DhatFile,
    /// Its program points, most live bytes first ([`report`]).
    pub rows: Vec<PointSummary>,
    /// How many rows to print.
    pub top: usize,
}

impl<'a> DhatReport<'a> {
    /// The report of `file`'s top `top` program points.
    pub fn new(file: &'a DhatFile, top: usize) -> Self {
        DhatReport {
            file,
            rows: report(file),
            top,
        }
    }
}

/// What grew between two DHAT files, as `leakscope diff` prints it (its
/// `Display`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DhatDiff {
    /// Changed program points ([`diff`]).
    pub by_point: Vec<PointSummary>,
    /// The same, grouped by type.
    pub by_type: Vec<PointSummary>,
    /// How many rows of each to print.
    pub top: usize,
    /// What makes the two files less comparable than two dumps of one
    /// process in one mode.
    pub warnings: Vec<String>,
}

impl DhatDiff {
    /// The difference from `old` to `new`.
    pub fn new(old: &DhatFile, new: &DhatFile, top: usize) -> Self {
        let (by_point, by_type) = diff(old, new);
        let mut warnings = Vec::new();
        if old.pid != new.pid || old.cmd != new.cmd {
            let which = if old.cmd == new.cmd {
                format!("pid {} and pid {}", old.pid, new.pid)
            } else {
                format!("pid {}, {}; pid {}, {}", old.pid, old.cmd, new.pid, new.cmd)
            };
            warnings.push(format!(
                "warning: the files come from different processes ({which}): \
                 the change is between two runs, not growth within one"
            ));
        }
        if old.mode != new.mode {
            warnings.push(format!(
                "warning: the files were written in different modes ({}; {}): \
                 sampled figures are estimates, exact ones are not",
                old.mode, new.mode
            ));
        }
        DhatDiff {
            by_point,
            by_type,
            top,
            warnings,
        }
    }
}
