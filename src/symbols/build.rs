//! What this build gives symbol resolution: v0 mangling, debug info.

use std::sync::OnceLock;

use object::{Object, ObjectSection, ObjectSymbol};

use super::resolve;
use crate::sys::mapped::MappedFile;

/// What this build gives symbol resolution and stack capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildInfo {
    /// Symbols are mangled with v0 (generic arguments, hence types, visible).
    pub v0_mangling: bool,
    /// Debug info is present (files, lines and inlined frames visible).
    pub debug_info: bool,
    /// Frame pointers are kept (the cheap stack walk works).
    pub frame_pointers: bool,
}

impl BuildInfo {
    /// One line for output when something is missing, else `None`: what
    /// the build lacks and what that costs, e.g. `note: built without
    /// frame pointers (stacks are taken by the slower unwinder)`.
    pub fn note(&self) -> Option<String> {
        let missing: Vec<&str> = [
            (
                self.v0_mangling,
                "-C symbol-mangling-version=v0 (types are unknown: blocks are \
                 shown by allocating function, generics as (?))",
            ),
            (
                self.frame_pointers,
                "frame pointers (stacks are taken by the slower unwinder)",
            ),
            (
                self.debug_info,
                "debug info (no files, lines, inlined frames or field names)",
            ),
        ]
        .into_iter()
        .filter(|(has, _)| !has)
        .map(|(_, what)| what)
        .collect();
        let list = match missing.as_slice() {
            [] => return None,
            [one] => one.to_string(),
            [rest @ .., last] => format!("{} and without {last}", rest.join(", without ")),
        };
        Some(format!(
            "note: built without {list}; see README.md, \"Using it in your program\"."
        ))
    }
}

/// Probes this build by reading the executable's section headers and
/// symbol table in place: a login's greeting must not parse the debug
/// information (tens to hundreds of MiB, and seconds, for a large
/// program) just to say whether it is there. Only when the executable
/// cannot say (no symbol for this function, or debug info kept in a
/// separate file) does it resolve one of leakscope's own functions (built
/// with the same flags as the program).
pub fn build_info() -> BuildInfo {
    static INFO: OnceLock<BuildInfo> = OnceLock::new();
    *INFO.get_or_init(|| {
        let frame_pointers = crate::tracker::has_frame_pointers();
        let probed = crate::tracker::untracked(|| {
            let exe = MappedFile::executable().ok()?;
            probe_executable(&exe)
        });
        match probed {
            Some((v0_mangling, debug_info)) => BuildInfo {
                v0_mangling,
                debug_info,
                frame_pointers,
            },
            None => {
                // An address inside the function (its very first byte does
                // not resolve).
                let addr = build_info as *const () as usize + 8;
                let frames = resolve(addr);
                BuildInfo {
                    v0_mangling: frames.iter().any(|f| f.v0),
                    debug_info: frames.iter().any(|f| f.file.is_some() && f.line.is_some()),
                    frame_pointers,
                }
            }
        }
    })
}

/// Where a program's blocks come from, as its executable's symbols tell.
/// For a library preloaded into a program that may not allocate through
/// the C library's `malloc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgramAllocator {
    /// The C library's `malloc`, or what a preloaded library puts in its
    /// place: a Rust program with std's default allocator, a C program.
    Malloc,
    /// leakscope is built into the program.
    Leakscope,
    /// The executable defines `malloc` itself (an allocator linked in
    /// statically): its calls never reach a preloaded one.
    OwnMalloc,
    /// A Rust `#[global_allocator]` other than leakscope's: its blocks
    /// reach `malloc` only if it calls it (std's `System` does).
    GlobalAllocator,
}

/// Reads from the executable's symbols where the program's blocks come
/// from; `Malloc` when the executable cannot be read.
pub fn program_allocator() -> ProgramAllocator {
    crate::tracker::untracked(|| {
        MappedFile::executable()
            .ok()
            .and_then(|exe| allocator_of(&exe))
            .unwrap_or(ProgramAllocator::Malloc)
    })
}

/// [`program_allocator`] for an executable's bytes; `None` when they are
/// not an object file.
fn allocator_of(exe: &[u8]) -> Option<ProgramAllocator> {
    let file = object::File::parse(exe).ok()?;
    let symbols = || file.symbols().chain(file.dynamic_symbols());
    let any = |test: &dyn Fn(&[u8]) -> bool| symbols().any(|sym| sym.name_bytes().is_ok_and(test));
    let contains = |name: &[u8], part: &[u8]| name.windows(part.len()).any(|w| w == part);
    Some(if any(&|n| contains(n, PROBE_SYMBOL)) {
        ProgramAllocator::Leakscope
    } else if symbols().any(|sym| sym.is_definition() && sym.name_bytes() == Ok(b"malloc")) {
        ProgramAllocator::OwnMalloc
    } else if any(&|n| contains(n, b"__rg_alloc"))
        // The allocator shim without std's default behind it.
        || (any(&|n| n.ends_with(b"__rust_alloc")) && !any(&|n| n.ends_with(b"__rdl_alloc")))
    {
        ProgramAllocator::GlobalAllocator
    } else {
        ProgramAllocator::Malloc
    })
}

/// How `build_info` is spelled inside its mangled symbol, in both manglings
/// (`_RNv…9leakscope7symbols5build10build_info`, legacy
/// `_ZN9leakscope7symbols5build10build_info17h…E`).
const PROBE_SYMBOL: &[u8] = b"9leakscope7symbols5build10build_info";

/// (v0 mangling, debug info) as an ELF executable's bytes tell them, or
/// `None` when they cannot: no symbol for [`build_info`] (stripped), or
/// debug information linked to a separate file.
fn probe_executable(exe: &[u8]) -> Option<(bool, bool)> {
    let file = object::File::parse(exe).ok()?;
    let has = |name: &str| file.section_by_name(name).is_some_and(|s| s.size() > 0);
    let debug_info = has(".debug_info") || has(".zdebug_info");
    if !debug_info && has(".gnu_debuglink") {
        return None;
    }
    let v0 = file.symbols().find_map(|sym| {
        let name = sym.name_bytes().ok()?;
        let at = name
            .windows(PROBE_SYMBOL.len())
            .position(|w| w == PROBE_SYMBOL)?;
        let end = &name[at + PROBE_SYMBOL.len()..];
        // The function itself (a local copy may carry `.llvm.N`), not a
        // closure or item inside it.
        let whole = end.is_empty() || end.starts_with(b"17h") || end.starts_with(b".");
        whole.then(|| name.starts_with(b"_R"))
    });
    match v0 {
        Some(v0) => Some((v0, debug_info)),
        // leakscope is not in the executable: it was preloaded into a
        // program that allocates with `malloc`. The program's own symbols
        // say how it was built: legacy Rust symbols lack the types; a C or
        // C++ program has none to lack.
        None if file.symbols().next().is_some() => {
            // The program's `main` tells how its own crates were mangled
            // (the standard library is built with either); without a Rust
            // `main`, a C or C++ program has no types to lack.
            let mut main = None;
            for sym in file.symbols() {
                let Ok(name) = sym.name_bytes() else { continue };
                if name.starts_with(b"_R") && name.ends_with(b"4main") {
                    main = Some(true);
                    break;
                }
                let base = name.split(|&b| b == b'.').next().unwrap_or(name);
                if base.starts_with(b"_ZN")
                    && is_legacy_rust_hash(base)
                    && base[..base.len() - 20].ends_with(b"4main")
                {
                    main = Some(false);
                }
            }
            Some((main.unwrap_or(true), debug_info))
        }
        None => None,
    }
}

/// Whether a legacy-mangled symbol ends in the hash only Rust adds
/// (`…17h0123456789abcdefE`).
fn is_legacy_rust_hash(name: &[u8]) -> bool {
    let name = name.split(|&b| b == b'.').next().unwrap_or(name);
    name.len() > 20 && {
        let tail = &name[name.len() - 20..];
        tail.starts_with(b"17h")
            && tail.ends_with(b"E")
            && tail[3..19].iter().all(u8::is_ascii_hexdigit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_program_has_leakscope_built_in() {
        let exe = MappedFile::executable().unwrap();
        assert_eq!(allocator_of(&exe), Some(ProgramAllocator::Leakscope));
        assert_eq!(allocator_of(b"not an executable"), None);
    }

    #[test]
    fn a_legacy_rust_symbol_is_told_by_its_hash() {
        assert!(is_legacy_rust_hash(
            b"_ZN4core3fmt5write17h0123456789abcdefE"
        ));
        assert!(is_legacy_rust_hash(
            b"_ZN3app4main17hfedcba9876543210E.llvm.42"
        ));
        // C++: no hash.
        assert!(!is_legacy_rust_hash(b"_ZN3foo3barEv"));
        assert!(!is_legacy_rust_hash(b"_ZN3app4main17hnothexnothexnotE"));
    }

    #[test]
    fn the_note_names_what_is_missing() {
        let all = BuildInfo {
            v0_mangling: true,
            debug_info: true,
            frame_pointers: true,
        };
        assert_eq!(all.note(), None);
        let no_fp = BuildInfo {
            frame_pointers: false,
            ..all
        };
        assert_eq!(
            no_fp.note().unwrap(),
            "note: built without frame pointers (stacks are taken by the slower unwinder); \
             see README.md, \"Using it in your program\"."
        );
        let none = BuildInfo {
            v0_mangling: false,
            debug_info: false,
            frame_pointers: false,
        };
        let note = none.note().unwrap();
        assert!(
            note.starts_with("note: built without -C symbol-mangling-version=v0 (types"),
            "{note}"
        );
        assert!(note.contains("), without frame pointers ("), "{note}");
        assert!(note.contains(") and without debug info ("), "{note}");
        // The repository's own tests are built with every flag.
        assert_eq!(build_info().note(), None);
    }

    #[test]
    fn the_executable_alone_tells_mangling_and_debug_info() {
        // This test binary has both, and says so without any symbol being
        // resolved.
        let exe = MappedFile::executable().unwrap();
        assert_eq!(probe_executable(&exe), Some((true, true)));
        assert_eq!(probe_executable(b"not an executable"), None);
    }
}
