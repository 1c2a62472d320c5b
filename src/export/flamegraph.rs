//! An SVG flamegraph of live bytes by stack (inferno), for people who would
//! rather look than read.

use std::path::Path;

use super::Error;
use crate::tracker::{self, Snapshot};

/// The folded stacks of live bytes: `root;…;allocating frame BYTES`, one
/// line per stack with live bytes, outermost frame first.
pub fn folded(snap: &Snapshot) -> Vec<String> {
    let mut lines: Vec<String> = super::program_stacks(snap)
        .into_iter()
        .filter(|pp| pp.stats.live_bytes > 0)
        .map(|pp| {
            let names: Vec<String> = pp
                .frames
                .iter()
                .rev()
                .map(|f| f.function.replace(';', ":"))
                .collect();
            format!("{} {}", names.join(";"), pp.stats.live_bytes)
        })
        .collect();
    lines.sort();
    lines
}

/// The SVG of a snapshot.
pub fn svg(snap: &Snapshot) -> Result<Vec<u8>, Error> {
    let lines = folded(snap);
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
    Ok(out)
}

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
