//! The allocation site of a stack: its first frame of the program's own
//! code.

use super::Frame;
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
    if body[end..].starts_with("::") && !PRIMITIVES.contains(&first) {
        return first;
    }
    match function.find(" as ") {
        Some(pos) => crate_of(&function[pos + 4..]),
        None => "core",
    }
}

pub(super) fn is_runtime_function(function: &str) -> bool {
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

/// The allocation site of a resolved stack: the first frame of the program's
/// own code (falling back to the first frame).
pub fn allocation_site(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| !f.is_runtime())
        .or_else(|| frames.first())
}
