//! Files for the viewers people already use, written at any moment of the
//! run without stopping tracking: DHAT JSON for Valgrind's `dh_view.html`,
//! SVG flamegraphs of live bytes (inferno), and gzipped pprof profiles
//! (`go tool pprof`, Pyroscope, Parca).
//!
//! ```no_run
//! leakscope::export::dhat::write("/tmp/heap.json")?;
//! leakscope::export::flamegraph::write("/tmp/live.svg")?;
//! leakscope::export::pprof::write("/tmp/heap.pb.gz")?;
//! # Ok::<(), leakscope::export::Error>(())
//! ```
//!
//! In sampled mode every figure is the unbiased estimate, and each format
//! says so where it has a place for it.

mod at_exit;
pub mod dhat;
pub mod flamegraph;
pub mod pprof;

use std::io;
use std::path::{Path, PathBuf};

use crate::symbols::{self, Frame};
use crate::tracker::{SiteStats, Snapshot};

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing the file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Reading the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file is not JSON of a DHAT file's shape.
    #[error("{}: not a DHAT file: {source}", path.display())]
    NotDhat {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The file parses but Valgrind's viewer would refuse it.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first problem found.
        reason: String,
    },
    /// The bytes are not a pprof profile.
    #[error("not a pprof profile: {0}")]
    NotPprof(#[source] prost::DecodeError),
    /// The bytes are gzip that does not decompress.
    #[error("not gzip data: {0}")]
    NotGzip(#[source] io::Error),
    /// The flamegraph renderer failed.
    #[error("cannot render the flamegraph: {0}")]
    Flamegraph(String),
}

/// One stack with its figures, resolved, leakscope's own frames trimmed.
pub(crate) struct ResolvedStack {
    /// Its index in the snapshot's stacks.
    pub(crate) stack: usize,
    pub(crate) frames: Vec<Frame>,
    pub(crate) stats: SiteStats,
}

/// The program's stacks from a snapshot (the tool's own analysis data left
/// out), resolved.
pub(crate) fn program_stacks(snap: &Snapshot) -> Vec<ResolvedStack> {
    snap.stacks
        .iter()
        .enumerate()
        .filter(|(_, s)| s.stats.total_blocks > 0)
        .map(|(stack, s)| ResolvedStack {
            stack,
            frames: symbols::resolve_stack(&s.frames),
            stats: s.stats,
        })
        .filter(|pp| !symbols::tool_owned(&pp.frames))
        .collect()
}

/// A frame as one line: `function (file:line:col)`.
pub(crate) fn frame_text(f: &Frame) -> String {
    format!(
        "{} ({}:{}:{})",
        f.function,
        f.file.as_deref().unwrap_or("???"),
        f.line.unwrap_or(0),
        f.column.unwrap_or(0)
    )
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so
/// a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_through_temporary(path, bytes).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_through_temporary(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}tmp-{}",
        path.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
