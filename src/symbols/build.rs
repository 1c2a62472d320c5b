//! What this build gives symbol resolution: v0 mangling, debug info.

use std::sync::OnceLock;

use super::resolve;

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
            "note: built without {list}; see README.md, \"Building your program\"."
        ))
    }
}

/// Probes this build by resolving one of leakscope's own functions (built
/// with the same flags as the program).
pub fn build_info() -> BuildInfo {
    static INFO: OnceLock<BuildInfo> = OnceLock::new();
    *INFO.get_or_init(|| {
        // An address inside the function (its very first byte does not resolve).
        let addr = build_info as *const () as usize + 8;
        let frames = resolve(addr);
        BuildInfo {
            v0_mangling: frames.iter().any(|f| f.v0),
            debug_info: frames.iter().any(|f| f.file.is_some() && f.line.is_some()),
            frame_pointers: crate::tracker::has_frame_pointers(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
             see README.md, \"Building your program\"."
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
}
