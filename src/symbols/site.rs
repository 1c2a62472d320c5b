//! The allocation site of a stack: its first frame of the program's own
//! code.

use super::Frame;
use super::program::program_code;
use super::trim::is_allocator_internal;

/// Names that are types of the language itself, not paths into a crate.
const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64", "_", "",
];

/// The crate a (demangled) function name belongs to: its self type's crate,
/// or the trait's when the self type is a primitive; `core` for inherent
/// methods of primitives and slices (only the standard library has those).
pub(super) fn crate_of(function: &str) -> &str {
    let body = function.trim_start_matches('<');
    let body = body
        .trim_start_matches('&')
        .trim_start_matches("mut ")
        .trim_start_matches("dyn ")
        .trim_start_matches('[');
    let end = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let first = &body[..end];
    if !function.contains("::") {
        // A C symbol (`malloc`, a C program's `remember`): no crate.
        return "";
    }
    if body[end..].starts_with("::") && !PRIMITIVES.contains(&first) {
        return first;
    }
    match function.find(" as ") {
        Some(pos) => crate_of(&function[pos + 4..]),
        None => "core",
    }
}

/// Whether a function is the runtime's: leakscope's, the allocator shim's,
/// the standard library's (`alloc`, `core`, `std`, `hashbrown`), or
/// process and thread start-up.
pub(crate) fn is_runtime_function(function: &str) -> bool {
    is_allocator_internal(function)
        || function == "main"
        || function.starts_with("__libc_start")
        || function.starts_with("_start")
        || function.starts_with("start_thread")
        || function == "clone3"
        || matches!(
            crate_of(function),
            "alloc" | "core" | "std" | "hashbrown" | "backtrace"
        )
}

/// Whether a source file is a dependency's or the toolchain's, not the
/// program's: the Rust sources (`/rustc/…`, a toolchain's `rustlib/src`),
/// the cargo registry and git checkouts.
pub(super) fn is_dependency_file(file: &str) -> bool {
    file.starts_with("/rustc/")
        || file.contains("/rustlib/src/")
        || file.contains("/registry/src/")
        || file.contains("/.cargo/git/checkouts/")
        || file.contains("/cargo/git/checkouts/")
}

/// Whether `LEAKSCOPE_APP_CRATES` names the program's crates.
pub(crate) fn app_crates_named() -> bool {
    app_crates().is_some()
}

/// The crates `LEAKSCOPE_APP_CRATES` names as the program's own, if set.
fn app_crates() -> Option<&'static [String]> {
    static CRATES: std::sync::OnceLock<Option<Vec<String>>> = std::sync::OnceLock::new();
    CRATES
        .get_or_init(|| match crate::config::APP_CRATES.names() {
            Ok(names) => Some(names?.iter().map(|c| c.replace('-', "_")).collect()),
            Err(e) => {
                eprintln!("leakscope: {e}; sites name the program's code by the default rule");
                None
            }
        })
        .as_deref()
}

/// Whether a frame is the program's own code: with `LEAKSCOPE_APP_CRATES`,
/// a function of one of those crates; otherwise a function outside the
/// standard library and leakscope whose source (when debug info has it)
/// is in the program's tree rather than a dependency's, or that belongs
/// to the crate of the binary's `main` or its package (see `program`),
/// wherever their source lies.
pub(super) fn is_program_frame(f: &Frame) -> bool {
    if let Some(crates) = app_crates() {
        let c = crate_of(&f.function);
        return crates.iter().any(|a| a == c);
    }
    if is_runtime_function(&f.function) {
        return false;
    }
    if crate_of(&f.function).is_empty() {
        // A C or C++ function: the program's when the executable's debug
        // information places it in a file of the program's (a shared
        // library's frames have no file).
        return f
            .file
            .as_deref()
            .is_some_and(|file| !is_dependency_file(file) && !file.starts_with("/usr/"));
    }
    match f.file.as_deref() {
        Some(file) if is_dependency_file(file) => {
            let code = program_code();
            code.has_file(file) || code.has_crate(crate_of(&f.function))
        }
        _ => true,
    }
}

/// Whether a type (`mini_redis::db::Entry`) is one the program declares:
/// a type of one of `LEAKSCOPE_APP_CRATES`, or else of one of the crates
/// the executable shows as the program's (see `program`).
pub(crate) fn is_program_type(name: &str) -> bool {
    let c = crate_of(name);
    match app_crates() {
        Some(crates) => crates.iter().any(|a| a == c),
        None => !is_runtime_function(name) && program_code().has_crate(c),
    }
}

/// The allocation site of a resolved stack: the first frame of the
/// program's own code; without one, the first frame outside the standard
/// library (a dependency's), then the first frame.
pub fn allocation_site(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| is_program_frame(f))
        .or_else(|| frames.iter().find(|f| !f.is_runtime()))
        .or_else(|| frames.first())
}

/// How a site label starts when no frame of the stack is the program's.
pub(crate) const NO_PROGRAM_FRAME: &str = "[no program frame] ";

/// The allocation site as a view labels it: the program's frame, and the
/// dependency it allocated through (`fetch (engine.rs:220) via
/// reqwest::…::Response::text`); `[no program frame] …` when no frame is
/// the program's.
pub fn site_label(frames: &[Frame]) -> String {
    match frames.iter().position(is_program_frame) {
        Some(p) => {
            let label = frames[p].label();
            match frames[..p].iter().rev().find(|f| !f.is_runtime()) {
                Some(dep) => format!("{label} via {}", super::short_function(&dep.function)),
                None => label,
            }
        }
        None => match allocation_site(frames) {
            Some(f) => format!("{NO_PROGRAM_FRAME}{}", f.label()),
            None => "?".to_string(),
        },
    }
}
