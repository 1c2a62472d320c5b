//! Lazy, cached resolution of return addresses into functions, files and
//! lines (inlined frames included), and the Rust type of a heap block.
//!
//! Nothing here runs on the allocation path: stacks are resolved when a
//! reader asks. Resolution (and the cache) runs with tracking off for this
//! thread, so the tool's own symbol tables never show up in the heap.
//!
//! ## Types of heap blocks
//! The allocator is told a size, not a type; the type comes from the stack.
//! With `-C symbol-mangling-version=v0` and debug info, inlined frames name
//! the container and its argument (`<alloc::boxed::Box<app::Widget>>::new`).
//! The rule: the outermost container frame (Box, Arc, Rc, Vec/RawVec, String,
//! HashMap/RawTable, VecDeque, BTreeMap …) before the first frame of the
//! program's own code gives the type. LLVM may merge identical generic code,
//! so a type read only from a non-inlined generic frame is marked
//! [`BlockType::ambiguous`]. Without v0 mangling generic arguments are not in
//! the names: the type is then the allocating function, and
//! [`BuildInfo::note`] says why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::alloc::untracked;

/// One resolved frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The return address this frame was resolved from.
    pub addr: usize,
    /// The demangled function name without the hash (`?` when unknown).
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// Source column.
    pub column: Option<u32>,
    /// True for a function inlined into the frame that follows it.
    pub inlined: bool,
    /// True when the symbol was mangled with the v0 scheme.
    pub v0: bool,
}

impl Frame {
    /// Whether this frame belongs to the standard library, a container crate
    /// or leakscope itself rather than to the program's own code.
    pub fn is_runtime(&self) -> bool {
        is_runtime_function(&self.function)
    }
}

type Cache = Mutex<HashMap<usize, Arc<[Frame]>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| untracked(|| Mutex::new(HashMap::new())))
}

/// The frames of one return address, innermost inlined frame first.
pub fn resolve(addr: usize) -> Arc<[Frame]> {
    let cache = cache();
    untracked(|| {
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&addr) {
            return Arc::clone(f);
        }
        let frames: Arc<[Frame]> = resolve_uncached(addr).into();
        map.insert(addr, Arc::clone(&frames));
        frames
    })
}

fn resolve_uncached(addr: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    // A return address points after the call: look up the call itself.
    let lookup = addr.saturating_sub(1);
    backtrace::resolve(lookup as *mut std::ffi::c_void, |sym| {
        let (function, v0) = match sym.name() {
            Some(name) => (format!("{name:#}"), name.as_bytes().starts_with(b"_R")),
            None => ("?".to_string(), false),
        };
        out.push(Frame {
            addr,
            function,
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
            column: sym.colno(),
            inlined: true,
            v0,
        });
    });
    if let Some(last) = out.last_mut() {
        last.inlined = false;
    } else {
        out.push(Frame {
            addr,
            function: "?".to_string(),
            file: None,
            line: None,
            column: None,
            inlined: false,
            v0: false,
        });
    }
    out
}

/// Resolves a captured stack (as in [`crate::recorder::StackRecord`]) into
/// frames, innermost first, without leakscope's own allocation-path frames.
pub fn resolve_stack(addrs: &[usize]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for &a in addrs {
        frames.extend(resolve(a).iter().cloned());
    }
    frames.drain(..internal_prefix(&frames));
    frames
}

/// How many leading frames are leakscope's allocation path: everything up to
/// the allocator shim (`__rust_alloc` …) or the `GlobalAlloc` method, looked
/// for among the first frames only.
fn internal_prefix(frames: &[Frame]) -> usize {
    let window = &frames[..frames.len().min(crate::stack::INTERNAL_FRAMES * 3)];
    match window.iter().rposition(|f| {
        is_allocator_shim(&f.function)
            || f.function
                .contains(" as core::alloc::global::GlobalAlloc>::")
    }) {
        Some(i) => i + 1,
        None => frames
            .iter()
            .take_while(|f| is_allocator_internal(&f.function))
            .count(),
    }
}

/// The symbols the `#[global_allocator]` machinery generates.
fn is_allocator_shim(function: &str) -> bool {
    function.contains("__rust_") || function.contains("__rg_") || function.contains("__rdl_")
}

fn is_allocator_internal(function: &str) -> bool {
    function.starts_with("leakscope::")
        || function.starts_with("<leakscope::")
        || is_allocator_shim(function)
        || function == "?"
}

/// Names that are types of the language itself, not paths into a crate.
const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64", "_", "",
];

/// The crate a (demangled) function name belongs to: its self type's crate,
/// or the trait's when the self type is a primitive; `core` for inherent
/// methods of primitives and slices (only the standard library has those).
fn crate_of(function: &str) -> &str {
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

fn is_runtime_function(function: &str) -> bool {
    is_allocator_internal(function)
        || function == "main"
        || function.starts_with("__libc_start")
        || function.starts_with("_start")
        || function.starts_with("start_thread")
        || function == "clone3"
        || matches!(
            crate_of(function),
            "alloc" | "core" | "std" | "hashbrown" | "leakscope" | "backtrace"
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

/// Modules whose allocations are the tool's analysis data (snapshots, heaps,
/// symbol tables, tables of text, console sessions, exports), not the
/// program's.
const TOOL_MODULES: &[&str] = &[
    "leakscope::recorder::",
    "leakscope::heap::",
    "leakscope::symbols::",
    "leakscope::render::",
    "leakscope::console::",
    "leakscope::export::",
];

/// Whether a (resolved) stack allocated the tool's own analysis data: heap
/// views and exports leave such blocks out, as Guppy leaves out heapy's own
/// objects.
pub fn tool_owned(frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        let name = f.function.trim_start_matches('<');
        TOOL_MODULES.iter().any(|m| name.starts_with(m))
    })
}

/// How a block's type was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeSource {
    /// From a container frame (`Box<T>`, `Vec<T>` …).
    Container,
    /// No container frame: the allocating function stands in for the type.
    AllocatingFunction,
    /// The stack could not be resolved.
    Unknown,
}

/// The Rust type of a heap block, as far as the stack tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockType {
    /// Short type (`Box<app::Widget>`, `Vec<u8>`, `String`) or, without a
    /// container frame, `fn app::load` naming the allocating function.
    pub name: String,
    /// True when the type came only from a non-inlined generic frame, which
    /// LLVM may have merged with another instantiation.
    pub ambiguous: bool,
    /// Where the name came from.
    pub source: TypeSource,
}

const CONTAINERS: &[(&str, &str)] = &[
    ("alloc::boxed::Box<", "Box"),
    ("alloc::sync::Arc<", "Arc"),
    ("alloc::rc::Rc<", "Rc"),
    ("alloc::vec::Vec<", "Vec"),
    ("alloc::raw_vec::RawVec<", "Vec"),
    ("alloc::collections::vec_deque::VecDeque<", "VecDeque"),
    ("alloc::collections::btree::map::BTreeMap<", "BTreeMap"),
    ("alloc::collections::btree::set::BTreeSet<", "BTreeSet"),
    ("alloc::collections::binary_heap::BinaryHeap<", "BinaryHeap"),
    ("std::collections::hash::map::HashMap<", "HashMap"),
    ("std::collections::hash::set::HashSet<", "HashSet"),
    ("hashbrown::map::HashMap<", "HashMap"),
    ("hashbrown::raw::RawTable<", "RawTable"),
    ("alloc::string::String", "String"),
];

/// Long std paths shown by their short names inside type names.
const SHORT_PATHS: &[(&str, &str)] = &[
    ("alloc::string::String", "String"),
    ("alloc::vec::Vec", "Vec"),
    ("alloc::boxed::Box", "Box"),
    ("alloc::sync::Arc", "Arc"),
    ("alloc::rc::Rc", "Rc"),
    ("alloc::collections::vec_deque::VecDeque", "VecDeque"),
    ("alloc::collections::btree::map::BTreeMap", "BTreeMap"),
    ("std::collections::hash::map::HashMap", "HashMap"),
    ("std::collections::hash::set::HashSet", "HashSet"),
    ("core::option::Option", "Option"),
    ("core::cell::RefCell", "RefCell"),
    ("std::sync::poison::mutex::Mutex", "Mutex"),
    (", alloc::alloc::Global", ""),
    (", std::hash::random::RandomState", ""),
];

/// Cuts the self type out of `<Type as Trait>::f` or `<Type>::f`.
fn self_type(function: &str) -> Option<&str> {
    let body = function.strip_prefix('<')?;
    let mut depth = 0usize;
    let mut prev = ' ';
    for (i, c) in body.char_indices() {
        let arrow = prev == '-';
        prev = c;
        match c {
            // The `>` of `-> R` in `dyn Fn() -> R` closes nothing.
            '>' if arrow => {}
            '<' => depth += 1,
            '>' if depth == 0 => return Some(&body[..i]),
            '>' => depth -= 1,
            ' ' if depth == 0 && body[i..].starts_with(" as ") => return Some(&body[..i]),
            _ => {}
        }
    }
    None
}

fn shorten(ty: &str) -> String {
    let mut s = ty.to_string();
    for (long, short) in SHORT_PATHS {
        s = s.replace(long, short);
    }
    s
}

/// The container type a frame names, if any.
fn container_type(function: &str) -> Option<String> {
    let ty = self_type(function)?;
    for (prefix, short) in CONTAINERS {
        if let Some(rest) = ty.strip_prefix(prefix) {
            if prefix.ends_with('<') {
                return Some(format!("{short}<{}", shorten(rest)));
            } else if rest.is_empty() {
                return Some(short.to_string());
            }
        }
    }
    None
}

/// The type of a block allocated at this (resolved, trimmed) stack.
pub fn block_type(frames: &[Frame]) -> BlockType {
    let user = frames
        .iter()
        .position(|f| !f.is_runtime())
        .unwrap_or(frames.len());
    let found = frames[..user]
        .iter()
        .rev()
        .find_map(|f| container_type(&f.function).map(|t| (t, f.inlined)));
    match found {
        Some((name, inlined)) => BlockType {
            name,
            ambiguous: !inlined,
            source: TypeSource::Container,
        },
        None => match frames.get(user).or_else(|| frames.first()) {
            Some(f) if f.function != "?" => BlockType {
                name: format!("fn {}", f.function),
                ambiguous: false,
                source: TypeSource::AllocatingFunction,
            },
            _ => BlockType {
                name: "?".to_string(),
                ambiguous: false,
                source: TypeSource::Unknown,
            },
        },
    }
}

/// What this build gives symbol resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, inlined: bool) -> Frame {
        Frame {
            addr: 0,
            function: function.to_string(),
            file: None,
            line: None,
            column: None,
            inlined,
            v0: true,
        }
    }

    #[test]
    fn crate_of_names() {
        assert_eq!(crate_of("app::load"), "app");
        assert_eq!(crate_of("<alloc::vec::Vec<u8>>::push"), "alloc");
        assert_eq!(crate_of("<app::W as core::clone::Clone>::clone"), "app");
        assert_eq!(
            crate_of("<str as alloc::string::ToString>::to_string"),
            "alloc"
        );
        assert_eq!(crate_of("<[u8]>::to_vec"), "core");
        assert_eq!(
            crate_of("<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec::<alloc::alloc::Global>"),
            "core"
        );
        assert_eq!(crate_of("<u8 as app::Parse>::parse"), "app");
    }

    #[test]
    fn outermost_container_before_user_code_gives_the_type() {
        let frames = [
            frame("alloc::alloc::exchange_malloc", true),
            frame("<alloc::boxed::Box<app::Widget>>::new", true),
            frame("app::make", false),
            frame("main", false),
        ];
        let t = block_type(&frames);
        assert_eq!(t.name, "Box<app::Widget>");
        assert!(!t.ambiguous);
        assert_eq!(t.source, TypeSource::Container);
        assert_eq!(allocation_site(&frames).unwrap().function, "app::make");
    }

    #[test]
    fn raw_vec_grow_names_the_vec_and_non_inlined_is_ambiguous() {
        let frames = [
            frame("alloc::raw_vec::finish_grow", false),
            frame("<alloc::raw_vec::RawVecInner>::grow_one", false),
            frame("<alloc::raw_vec::RawVec<app::Gadget>>::grow_one", false),
            frame(
                "<alloc::vec::Vec<app::Gadget, alloc::alloc::Global>>::push",
                true,
            ),
            frame("app::fill", false),
        ];
        let t = block_type(&frames);
        assert_eq!(t.name, "Vec<app::Gadget>");
        assert!(!t.ambiguous, "the inlined Vec::push frame is outermost");
        let t = block_type(&frames[..3]);
        assert_eq!(t.name, "Vec<app::Gadget>");
        assert!(t.ambiguous);
    }

    #[test]
    fn arrows_inside_generics_do_not_close_them() {
        let f = "<alloc::boxed::Box<dyn core::ops::function::FnOnce() -> core::result::Result<app::Resp, app::E>>>::new";
        assert_eq!(
            container_type(f).as_deref(),
            Some(
                "Box<dyn core::ops::function::FnOnce() -> core::result::Result<app::Resp, app::E>>"
            )
        );
    }

    #[test]
    fn string_and_no_container() {
        let frames = [
            frame("<alloc::string::String as core::clone::Clone>::clone", true),
            frame("app::f", false),
        ];
        assert_eq!(block_type(&frames).name, "String");
        let frames = [frame("alloc::alloc::alloc", true), frame("app::raw", false)];
        let t = block_type(&frames);
        assert_eq!(t.name, "fn app::raw");
        assert_eq!(t.source, TypeSource::AllocatingFunction);
        assert_eq!(block_type(&[]).source, TypeSource::Unknown);
    }
}
