//! An SVG flamegraph of live bytes by stack (inferno), for people who would
//! rather look than read.

use std::path::Path;

use super::Error;
use crate::tracker::{self, Snapshot};

/// The folded stacks of live bytes: `root;…;allocating frame BYTES`, one
/// line per stack with live bytes, outermost frame first.
pub fn folded(snap: &Snapshot) -> Vec<String> {
    lines(snap, false)
}

/// As [`folded`], with each run of frames that are not the program's own
/// (the standard library, dependencies, leakscope) drawn as one frame
/// naming their crates, `[std, tokio]`: the program's frames stay whole and
/// stand out.
pub fn folded_to_program(snap: &Snapshot) -> Vec<String> {
    lines(snap, true)
}

fn lines(snap: &Snapshot, fold_runtime: bool) -> Vec<String> {
    let mut lines: Vec<String> = super::program_stacks(snap)
        .into_iter()
        .filter(|pp| pp.stats.live_bytes > 0)
        .map(|pp| {
            let mut names: Vec<String> = Vec::new();
            // The crates of the run of non-program frames being folded.
            let mut run: Vec<&str> = Vec::new();
            for f in pp.frames.iter().rev() {
                if fold_runtime && !f.is_program() {
                    let name = f.crate_name();
                    if !run.contains(&name) {
                        run.push(name);
                    }
                    continue;
                }
                if !run.is_empty() {
                    names.push(folded_run(&run));
                    run.clear();
                }
                names.push(f.function.replace(';', ":"));
            }
            if !run.is_empty() {
                names.push(folded_run(&run));
            }
            format!("{} {}", names.join(";"), pp.stats.live_bytes)
        })
        .collect();
    lines.sort();
    lines
}

/// The one frame a run of non-program frames is drawn as.
fn folded_run(crates: &[&str]) -> String {
    const SHOWN: usize = 3;
    let mut names = crates
        .iter()
        .take(SHOWN)
        .map(|c| if c.is_empty() { "?" } else { c })
        .collect::<Vec<_>>()
        .join(", ");
    if crates.len() > SHOWN {
        names.push_str(", …");
    }
    format!("[{}]", names.replace(';', ":"))
}

/// The SVG of a snapshot.
pub fn svg(snap: &Snapshot) -> Result<Vec<u8>, Error> {
    draw(snap, folded(snap), None)
}

/// The SVG of a snapshot with runs of non-program frames folded (see
/// [`folded_to_program`]), as wide as the page it is shown in.
pub fn svg_folded_to_program(snap: &Snapshot) -> Result<Vec<u8>, Error> {
    draw(
        snap,
        folded_to_program(snap),
        Some("Frames in [brackets]: runs of the standard library's and dependencies' code"),
    )
}

fn draw(snap: &Snapshot, lines: Vec<String>, note: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = if snap.estimated {
        format!(
            "Live heap by stack (estimated from samples, mean {} bytes)",
            crate::sample_bytes()
        )
    } else {
        "Live heap by stack".to_string()
    };
    opts.count_name = "bytes".to_string();
    opts.min_width = 0.0;
    opts.subtitle = note.map(str::to_string);
    let mut out = Vec::new();
    if lines.is_empty() {
        // inferno draws nothing from zero counts: one box, marked as
        // standing for nothing, says so.
        opts.subtitle = Some("Nothing is live: the one box stands for no bytes".to_string());
        inferno::flamegraph::from_lines(&mut opts, std::iter::once("(nothing live) 1"), &mut out)
    } else {
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
    }
    .map_err(|e| Error::Flamegraph(e.to_string()))?;
    // Marked after the XML declaration, so that a later dump knows the file.
    let at = out.windows(2).position(|w| w == b"?>").map_or(0, |i| i + 2);
    out.splice(at..at, MARK.iter().copied());
    // The drawing's script sizes the frames to the picture's width less
    // its margins; shown in a page's box not yet laid out, that width is
    // 0 and the frames' width negative (a rendering error). It now waits
    // for a width, which the box's first layout brings with a resize.
    if let Some(i) = out.windows(SIZER.len()).position(|w| w == SIZER) {
        let at = i + SIZER.len();
        out.splice(at..at, SIZER_GUARD.iter().copied());
    }
    Ok(out)
}

/// Where the drawing's script starts sizing it to its width.
const SIZER: &[u8] = b"var update_for_width_change = function() {";

/// Returns from it while the picture has no width beyond its margins.
const SIZER_GUARD: &[u8] = b"\n            if (!(svg.width.baseVal.value > xpad * 2)) return;";

/// The comment that marks leakscope's flamegraphs.
const MARK: &[u8] = b"<!-- leakscope flamegraph -->";

/// Whether a file's first bytes are one of leakscope's flamegraphs.
pub(super) fn is_ours(head: &[u8]) -> bool {
    head.windows(MARK.len()).any(|w| w == MARK)
}

/// Writes an SVG flamegraph of what is live now.
pub fn write(path: impl AsRef<Path>) -> Result<(), Error> {
    let svg = svg(&tracker::try_snapshot()?)?;
    super::write_atomically(path.as_ref(), &svg, is_ours)
}
