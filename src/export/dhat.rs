//! DHAT JSON (format version 2), the file Valgrind's `dh_view.html` loads.
//!
//! Every program point has `tb tbk tl mb mbk gb gbk eb ebk fs`; `ftbl[0]` is
//! `"[root]"`; frames read `0xADDR: function (file:line:col)`; and no two
//! program points have the same frames (the viewer refuses a file that
//! repeats a location), so stacks that become equal once leakscope's own
//! frames are trimmed are merged. In sampled mode the figures are the
//! unbiased estimates and `mode` says `rust-heap (sampled, mean N bytes)`.
//!
//! Setting `LEAKSCOPE_DHAT_OUT=path` writes one at exit as well.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Error;
use crate::tracker::{self, Snapshot};

/// One program point of a DHAT file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProgramPoint {
    /// Total bytes allocated here.
    pub tb: u64,
    /// Total blocks allocated here.
    pub tbk: u64,
    /// Total lifetime of those blocks (µs; live ones counted up to `te`).
    pub tl: u64,
    /// Live bytes at this point's own maximum.
    pub mb: u64,
    /// Live blocks at that maximum.
    pub mbk: u64,
    /// Live bytes at the global peak.
    pub gb: u64,
    /// Live blocks at the global peak.
    pub gbk: u64,
    /// Live bytes at the end (when the file was written).
    pub eb: u64,
    /// Live blocks at the end.
    pub ebk: u64,
    /// Indices into `ftbl`, allocation point first.
    pub fs: Vec<usize>,
}

/// A DHAT file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
#[non_exhaustive]
pub struct DhatFile {
    /// Always 2.
    pub dhatFileVersion: u32,
    /// `rust-heap`, or `rust-heap (sampled, mean N bytes)`; followed by
    /// `; note: built without …` when the build lacks what types and
    /// stacks need.
    pub mode: String,
    /// `Allocated`.
    pub verb: String,
    /// Block lifetimes are recorded (true).
    pub bklt: bool,
    /// Block accesses are recorded (false).
    pub bkacc: bool,
    /// Time unit: `µs`.
    pub tu: String,
    /// Time unit for rates: `s`.
    pub Mtu: String,
    /// Lifetime threshold for "short-lived", in `tu`.
    pub tuth: u64,
    /// The command line.
    pub cmd: String,
    /// The process id.
    pub pid: u32,
    /// Time of the global peak, in `tu`.
    pub tg: u64,
    /// Time the file was written, in `tu`.
    pub te: u64,
    /// Program points.
    pub pps: Vec<ProgramPoint>,
    /// Frame table; `ftbl[0]` is `[root]`.
    pub ftbl: Vec<String>,
}

/// The DHAT file of a snapshot.
pub fn from_snapshot(snap: &Snapshot) -> DhatFile {
    let te = (snap.taken_at.as_micros() as u64).max(1);
    let mut ftbl: Vec<String> = vec!["[root]".to_string()];
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut by_frames: HashMap<Vec<usize>, ProgramPoint> = HashMap::new();
    // Live blocks' lifetimes so far count in `tl`, as DHAT counts them at
    // the end.
    let mut live_age = vec![0f64; snap.stacks.len()];
    for b in &snap.blocks {
        live_age[b.stack as usize] +=
            snap.taken_at.saturating_sub(b.born).as_micros() as f64 * b.est_blocks;
    }
    for pp in super::program_stacks(snap) {
        let fs: Vec<usize> = pp
            .frames
            .iter()
            .map(|f| {
                let text = format!("{:#x}: {}", f.addr, super::frame_text(f));
                *index.entry(text.clone()).or_insert_with(|| {
                    ftbl.push(text);
                    ftbl.len() - 1
                })
            })
            .collect();
        let fs = if fs.is_empty() {
            let text = "???".to_string();
            vec![*index.entry(text.clone()).or_insert_with(|| {
                ftbl.push(text);
                ftbl.len() - 1
            })]
        } else {
            fs
        };
        let s = pp.stats;
        let e = by_frames.entry(fs.clone()).or_insert_with(|| ProgramPoint {
            fs,
            ..Default::default()
        });
        e.tb += s.total_bytes;
        e.tbk += s.total_blocks;
        e.tl += s.freed_lifetime.as_micros() as u64 + live_age[pp.stack] as u64;
        e.mb += s.max_bytes;
        e.mbk += s.max_blocks;
        e.gb += s.at_peak_bytes;
        e.gbk += s.at_peak_blocks;
        e.eb += s.live_bytes;
        e.ebk += s.live_blocks;
    }
    let mut pps: Vec<ProgramPoint> = by_frames.into_values().collect();
    // Largest first: the viewer sorts anyway; this keeps files stable.
    pps.sort_by(|a, b| b.tb.cmp(&a.tb).then_with(|| a.fs.cmp(&b.fs)));
    let mut mode = if snap.estimated {
        format!("rust-heap (sampled, mean {} bytes)", crate::sample_bytes())
    } else {
        "rust-heap".to_string()
    };
    // The viewer shows the mode under "Invocation": the build note goes
    // with it, where a reader of the file sees it.
    if let Some(note) = crate::symbols::build_info().note() {
        mode.push_str("; ");
        mode.push_str(&note);
    }
    DhatFile {
        dhatFileVersion: 2,
        mode,
        verb: "Allocated".into(),
        bklt: true,
        bkacc: false,
        tu: "µs".into(),
        Mtu: "s".into(),
        tuth: 10,
        cmd: std::env::args().collect::<Vec<_>>().join(" "),
        pid: std::process::id(),
        tg: (snap.heap.peak_at.as_micros() as u64).min(te),
        te,
        pps,
        ftbl,
    }
}

/// Writes a DHAT file of everything the recorder knows now. Tracking goes
/// on; call it as often as you like.
pub fn write(path: impl AsRef<Path>) -> Result<DhatFile, Error> {
    let file = from_snapshot(&tracker::try_snapshot()?);
    // Serialising plain structs of numbers and strings cannot fail.
    let json = serde_json::to_vec(&file).unwrap_or_default();
    super::write_atomically(path.as_ref(), &json, is_ours)?;
    Ok(file)
}

/// Whether a file's first bytes are one of leakscope's DHAT files (the
/// fields are written in this order).
pub(super) fn is_ours(head: &[u8]) -> bool {
    head.starts_with(br#"{"dhatFileVersion":2,"mode":"rust-heap"#)
}

/// Reads a DHAT file of at most [`DEFAULT_MAX_READ`](super::DEFAULT_MAX_READ)
/// bytes; see [`read_limited`].
pub fn read(path: impl AsRef<Path>) -> Result<DhatFile, Error> {
    read_limited(path, super::DEFAULT_MAX_READ)
}

/// Reads a DHAT file of at most `limit` bytes. Only a regular file is
/// read ([`Error::NotAFile`] otherwise), and one larger than `limit` is
/// refused with [`Error::TooLarge`] after reading at most `limit + 1`
/// bytes of it.
pub fn read_limited(path: impl AsRef<Path>, limit: u64) -> Result<DhatFile, Error> {
    let path = path.as_ref();
    let bytes = super::read_bounded(path, limit)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::NotDhat {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a DHAT file of at most `limit` bytes ([`read_limited`]) and
/// checks it as Valgrind's viewer would ([`check`]).
pub fn read_checked(path: impl AsRef<Path>, limit: u64) -> Result<DhatFile, Error> {
    let path = path.as_ref();
    let file = read_limited(path, limit)?;
    let json = serde_json::to_value(&file).unwrap_or_default();
    check(&json).map_err(|reason| Error::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(file)
}

/// Why Valgrind's viewer would refuse a DHAT document (see [`check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A required field is absent (of the document or a program point).
    #[error("data file is missing a field: {0}")]
    MissingField(&'static str),
    /// `dhatFileVersion` is not 2.
    #[error("data file has version number {0}, expected 2")]
    Version(String),
    /// `ftbl`, `pps` or a program point's `fs` is not an array.
    #[error("{0} is not an array")]
    NotAnArray(&'static str),
    /// `ftbl[0]` is not `"[root]"`.
    #[error("ftbl[0] is not \"[root]\"")]
    NoRoot,
    /// A program point's `fs` holds something other than an index.
    #[error("fs holds a non-index")]
    NotAnIndex,
    /// A program point with an empty `fs`.
    #[error("a program point has no frames")]
    NoFrames,
    /// A frame index that is 0 or past the end of `ftbl`.
    #[error("frame index {0} out of range")]
    FrameOutOfRange(u64),
    /// Two program points with the same frames.
    #[error("data file contains a repeated location")]
    RepeatedLocation,
}

/// Checks a DHAT document the way `dh_view.js` does when it loads one:
/// every required field, version 2, `ftbl[0] == "[root]"`, frame indices in
/// range, and no repeated location. Returns the first problem found.
pub fn check(json: &serde_json::Value) -> Result<(), Refusal> {
    let has = |obj: &serde_json::Value, fields: &[&'static str]| -> Result<(), Refusal> {
        match fields.iter().find(|f| obj.get(**f).is_none()) {
            Some(f) => Err(Refusal::MissingField(f)),
            None => Ok(()),
        }
    };
    has(
        json,
        &[
            "dhatFileVersion",
            "mode",
            "verb",
            "bklt",
            "bkacc",
            "tu",
            "Mtu",
            "cmd",
            "pid",
            "te",
            "pps",
            "ftbl",
        ],
    )?;
    if json["dhatFileVersion"] != 2 {
        return Err(Refusal::Version(json["dhatFileVersion"].to_string()));
    }
    let bklt = json["bklt"].as_bool() == Some(true);
    let bkacc = json["bkacc"].as_bool() == Some(true);
    if bklt {
        has(json, &["tg", "tuth"])?;
    }
    let ftbl = json["ftbl"].as_array().ok_or(Refusal::NotAnArray("ftbl"))?;
    if ftbl.first().and_then(|f| f.as_str()) != Some("[root]") {
        return Err(Refusal::NoRoot);
    }
    let pps = json["pps"].as_array().ok_or(Refusal::NotAnArray("pps"))?;
    let mut seen = std::collections::HashSet::new();
    for pp in pps {
        has(pp, &["tb", "tbk", "fs"])?;
        if bklt {
            has(pp, &["mb", "mbk", "gb", "gbk", "eb", "ebk"])?;
        }
        if bkacc {
            has(pp, &["rb", "wb"])?;
        }
        let fs: Vec<u64> = pp["fs"]
            .as_array()
            .ok_or(Refusal::NotAnArray("fs"))?
            .iter()
            .map(|i| i.as_u64().ok_or(Refusal::NotAnIndex))
            .collect::<Result<_, _>>()?;
        if fs.is_empty() {
            return Err(Refusal::NoFrames);
        }
        if let Some(&bad) = fs.iter().find(|&&i| i == 0 || i as usize >= ftbl.len()) {
            return Err(Refusal::FrameOutOfRange(bad));
        }
        if !seen.insert(fs) {
            return Err(Refusal::RepeatedLocation);
        }
    }
    Ok(())
}

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

/// Where Valgrind's viewer may be installed.
const VIEWER_DIRS: &[&str] = &[
    "/usr/libexec/valgrind",
    "/usr/lib/x86_64-linux-gnu/valgrind",
    "/usr/lib/valgrind",
    "/usr/local/libexec/valgrind",
];

/// The directory holding `dh_view.html`, `dh_view.js` and `dh_view.css`
/// (`$VALGRIND_LIB` first), if installed.
pub fn viewer_dir() -> Option<std::path::PathBuf> {
    let env = std::env::var_os("VALGRIND_LIB").map(std::path::PathBuf::from);
    env.into_iter()
        .chain(VIEWER_DIRS.iter().map(std::path::PathBuf::from))
        .find(|d| d.join("dh_view.js").is_file() && d.join("dh_view.css").is_file())
}

/// How a page [`viewer_page`] made begins: [`write_viewer_page`] replaces
/// only a file that begins so.
const VIEWER_PAGE_HEAD: &str =
    "<!DOCTYPE html>\n<!-- leakscope view: Valgrind's DHAT viewer with a file loaded -->";

/// Writes `page` (from [`viewer_page`]) to `path` by the rules of every
/// dump: through a temporary file renamed into place, never following a
/// symbolic link, and replacing only a page written the same way, never
/// another file (not the DHAT file it shows, whatever it is named).
pub fn write_viewer_page(path: impl AsRef<Path>, page: &str) -> Result<(), Error> {
    super::write_atomically(path.as_ref(), page.as_bytes(), |head| {
        head.starts_with(VIEWER_PAGE_HEAD.as_bytes())
    })
}

/// A self-contained HTML page: Valgrind's viewer with `file` already
/// loaded (its script and style inlined, the data embedded and handed to
/// the viewer's own `buildTree`/`displayTree` once the page has loaded).
pub fn viewer_page(file: &DhatFile, name: &str, viewer: &Path) -> Result<String, Error> {
    let read = |f: &str| {
        let path = viewer.join(f);
        std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
    };
    let js = read("dh_view.js")?;
    let css = read("dh_view.css")?;
    // "</" cannot appear inside a <script>: escape it in the data.
    let data = serde_json::to_string(file)
        .unwrap_or_default()
        .replace("</", "<\\/");
    let name = serde_json::to_string(name)
        .unwrap_or_default()
        .replace("</", "<\\/");
    Ok(format!(
        "{VIEWER_PAGE_HEAD}\n<html>\n<head>\n<meta charset=\"UTF-8\">\n<style>\n{css}\n</style>\n\
         <script>\n{js}\n</script>\n</head>\n<body onload=\"onLoad()\">\n<script>\n\
         window.addEventListener('load', function() {{\n  tryFunc(function() {{\n    \
         gFilename = {name};\n    document.title = kDocumentTitle + ' - ' + gFilename;\n    \
         gData = {data};\n    buildTree();\n    displayTree(0, 0, 0);\n  }});\n}});\n\
         </script>\n</body>\n</html>\n"
    ))
}
