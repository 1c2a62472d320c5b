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
//!
//! This file holds the format and its reading and writing; `check` holds
//! what the viewer refuses, `report` the tables of `leakscope report` and
//! `diff`, and `viewer` the self-contained page of the viewer.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Error;

mod check;
mod report;
mod viewer;

use crate::tracker::{self, Snapshot};
pub use check::{Refusal, check};
pub use report::{DhatDiff, DhatReport, PointSummary, diff, frames_of, report};
pub use viewer::{viewer_dir, viewer_page, write_viewer_page};

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
        // Lifetimes are counted in the recorder's ticks: "short-lived" is
        // under one of them on average (a threshold below a tick would
        // never be met by blocks that cross one).
        tuth: crate::sys::clock::TICK.as_micros() as u64,
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
