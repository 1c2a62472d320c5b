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
    /// The recorder's state could not be copied: the process is at its
    /// memory limit.
    #[error(transparent)]
    OutOfMemory(#[from] crate::tracker::OutOfMemory),
    /// The path is not a regular file (a device, a pipe, a directory):
    /// reading it could take without end.
    #[error("cannot read {}: not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than the reader was allowed to take.
    #[error(
        "cannot read {}: {size} bytes, more than the {limit} allowed",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The most the reader takes.
        limit: u64,
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
        #[source]
        reason: dhat::Refusal,
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
    /// The path holds something a dump must not replace.
    #[error("refusing to write {}: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

/// Tells one of leakscope's own dumps by the first bytes of the file.
pub(crate) type Recognise = fn(&[u8]) -> bool;

/// How many first bytes [`Recognise`] sees.
const HEAD: usize = 512;

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
    symbols::prefetch(
        snap.stacks
            .iter()
            .filter(|s| s.stats.total_blocks > 0)
            .map(|s| &s.frames[..]),
    );
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

/// The most bytes a reader of dump files takes unless told otherwise.
pub const DEFAULT_MAX_READ: u64 = 1 << 30;

/// Reads the regular file at `path`, at most `limit` bytes of it: a
/// device, pipe or directory is refused before anything is read, and a
/// file that is (or grows) larger than `limit` is refused after at most
/// `limit + 1` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = |size| Error::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(file, limit.saturating_add(1)),
        &mut bytes,
    )
    .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file renamed into place,
/// so a reader never sees half a file. A file already at `path` is
/// replaced only when `ours` recognises it as a dump of the same kind: a
/// dump never replaces another file, whoever the process runs as, nor
/// follows a symbolic link. The temporary file is created new (never an
/// existing file or link) and readable by this user only.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], ours: Recognise) -> Result<(), Error> {
    let refused = |reason| Error::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let write_error = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refused("it is a symbolic link"));
        }
        Ok(meta) if !meta.is_file() => return Err(refused("it is not a regular file")),
        Ok(_) => {
            let mut head = Vec::with_capacity(HEAD);
            std::fs::File::open(path)
                .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, HEAD as u64), &mut head))
                .map_err(write_error)?;
            if !ours(&head) {
                return Err(refused(
                    "the file there is not a leakscope dump of this kind (remove it, or choose another path)",
                ));
            }
        }
    }
    write_through_temporary(path, bytes).map_err(write_error)
}

fn write_through_temporary(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The temporary name adds about 40 bytes to the final one: keep at most
    // 200 bytes of it, so that any valid final name (up to 255 bytes) has
    // a valid temporary one.
    let full = path
        .file_name()
        .map_or_else(|| "dump".into(), |n| n.to_string_lossy().into_owned());
    let mut cut = full.len().min(200);
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let name = &full[..cut];
    let mut nonce = [0u8; 8];
    // SAFETY: getrandom fills the buffer we own, up to its length.
    unsafe { libc::getrandom(nonce.as_mut_ptr().cast(), nonce.len(), 0) };
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_ne_bytes(nonce)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.sync_data())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("leakscope-dump-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ours(head: &[u8]) -> bool {
        head.starts_with(b"OURS")
    }

    #[test]
    fn a_dump_replaces_only_its_own_kind_and_never_follows_a_link() {
        let d = dir();
        let foreign = d.join("passwd");
        std::fs::write(&foreign, "root:x:0:0\n").unwrap();
        let e = write_atomically(&foreign, b"OURS new", ours).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "refusing to write {}: the file there is not a leakscope dump",
                foreign.display()
            )),
            "{e}"
        );
        assert_eq!(std::fs::read(&foreign).unwrap(), b"root:x:0:0\n");
        let link = d.join("link.json");
        std::os::unix::fs::symlink(&foreign, &link).unwrap();
        let e = write_atomically(&link, b"OURS new", ours).unwrap_err();
        assert!(e.to_string().ends_with("it is a symbolic link"), "{e}");
        assert_eq!(std::fs::read(&foreign).unwrap(), b"root:x:0:0\n");
        let own = d.join("heap.json");
        write_atomically(&own, b"OURS one", ours).unwrap();
        write_atomically(&own, b"OURS two", ours).unwrap();
        assert_eq!(std::fs::read(&own).unwrap(), b"OURS two");
        // No temporary file is left behind, and the dump is private.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&own).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn any_valid_name_can_be_written_and_reads_are_bounded() {
        // Its own directory: the test above removes `dir()` when it ends.
        let d = std::env::temp_dir().join(format!("leakscope-long-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        // 255 bytes is the longest name a Linux file system takes; "é" is
        // two bytes, so the cut must land between characters.
        for name in ["a".repeat(255), format!("{}x", "é".repeat(127))] {
            assert_eq!(name.len(), 255);
            let path = d.join(&name);
            write_atomically(&path, b"OURS long", ours).unwrap();
            assert_eq!(read_bounded(&path, 9).unwrap(), b"OURS long");
        }
        let path = d.join("a".repeat(255));
        match read_bounded(&path, 8) {
            Err(Error::TooLarge {
                size: 9, limit: 8, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match read_bounded(Path::new("/dev/zero"), 8) {
            Err(Error::NotAFile { .. }) => {}
            other => panic!("{other:?}"),
        }
        match read_bounded(&d, 8) {
            Err(Error::NotAFile { .. }) => {}
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_format_knows_its_own_files() {
        let profile = pprof::Profile::default();
        let bytes = pprof::encode(&profile).unwrap();
        assert!(pprof::is_ours(&bytes[..bytes.len().min(HEAD)]));
        assert!(!pprof::is_ours(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]));
        assert!(dhat::is_ours(
            serde_json::to_string(&dhat::from_snapshot(&Snapshot::default()))
                .unwrap()
                .as_bytes()
        ));
        assert!(!dhat::is_ours(b"{\"dhatFileVersion\":2,\"mode\":\"dhat\""));
        let svg = flamegraph::svg(&Snapshot::default()).unwrap();
        assert!(flamegraph::is_ours(&svg[..HEAD]));
        assert!(String::from_utf8_lossy(&svg).contains("(nothing live)"));
    }
}
