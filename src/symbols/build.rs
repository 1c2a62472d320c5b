//! What this build gives symbol resolution: v0 mangling, debug info.

use std::sync::OnceLock;

use super::resolve;

/// What this build gives symbol resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildInfo {
    /// Symbols are mangled with v0 (generic arguments, hence types, visible).
    pub v0_mangling: bool,
    /// Debug info is present (files, lines and inlined frames visible).
    pub debug_info: bool,
}

impl BuildInfo {
    /// A plain note for output when something is missing, else `None`.
    pub fn note(&self) -> Option<&'static str> {
        match (self.v0_mangling, self.debug_info) {
            (true, true) => None,
            (false, true) => Some(
                "note: built without -C symbol-mangling-version=v0: types are unknown, \
                 blocks are shown by allocating function",
            ),
            (true, false) => Some(
                "note: built without debug info: no files, lines or inlined frames, \
                 types only where a container function was not inlined",
            ),
            (false, false) => Some(
                "note: built without -C symbol-mangling-version=v0 and without debug info: \
                 blocks are shown by allocating function, without files or lines",
            ),
        }
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
        }
    })
}
