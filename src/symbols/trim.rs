//! Which frames are leakscope's own: the allocation path at the top of
//! every stack, and the modules whose allocations are the tool's analysis
//! data rather than the program's.

use super::Frame;

/// How many leading frames are leakscope's allocation path: everything up to
/// the allocator shim (`__rust_alloc` …) or the `GlobalAlloc` method, looked
/// for among the first frames only.
pub(super) fn internal_prefix(frames: &[Frame]) -> usize {
    let shim = shim_prefix(frames);
    // Then the standard library's allocation functions that called the
    // shim: `alloc::alloc::alloc`, `Global`'s `allocate` …
    shim + frames[shim..]
        .iter()
        .take_while(|f| is_std_allocation_function(&f.function))
        .count()
}

/// The standard library's own allocation functions: the top of every
/// stack, never what the program asked for (that is the container
/// below them, `Vec::push`, `Box::new` …).
fn is_std_allocation_function(function: &str) -> bool {
    matches!(
        function,
        "alloc::alloc::alloc"
            | "alloc::alloc::alloc_zeroed"
            | "alloc::alloc::realloc"
            | "alloc::alloc::exchange_malloc"
    ) || function.starts_with("<alloc::alloc::Global>::")
        || function.starts_with("<alloc::alloc::Global as core::alloc::Allocator>::")
}

/// The frames up to and including the allocator shim.
fn shim_prefix(frames: &[Frame]) -> usize {
    let window = &frames[..frames.len().min(crate::tracker::stack::INTERNAL_FRAMES * 3)];
    match window.iter().rposition(|f| {
        is_allocator_shim(&f.function)
            || is_c_allocation_entry(&f.function)
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
///
/// Exact names, not a pattern: std's `__rust_begin_short_backtrace` calls
/// `main` and every thread's closure, and is not part of any allocation.
fn is_allocator_shim(function: &str) -> bool {
    // v0 mangling puts them in the `__rustc` namespace.
    let function = function.strip_prefix("__rustc::").unwrap_or(function);
    matches!(
        function,
        "__rust_alloc" | "__rust_dealloc" | "__rust_realloc" | "__rust_alloc_zeroed"
    ) || function.starts_with("__rg_")
        || function.starts_with("__rdl_")
}

/// The C library's allocation functions, which leakscope's preload
/// library defines: in a program run under it, the allocation path ends
/// there, and the program's frames begin below.
fn is_c_allocation_entry(function: &str) -> bool {
    matches!(
        function,
        "malloc"
            | "calloc"
            | "realloc"
            | "reallocarray"
            | "posix_memalign"
            | "aligned_alloc"
            | "memalign"
            | "valloc"
            | "pvalloc"
    )
}

/// Whether a frame is leakscope's own or the allocator shim's (a frame
/// that cannot be resolved counts too: it stands at the top of a stack only
/// inside the allocation path).
pub(super) fn is_allocator_internal(function: &str) -> bool {
    own_module(function).is_some() || is_allocator_shim(function) || function == "?"
}

/// This crate's name as it leads its functions' paths (`leakscope`).
fn crate_name() -> &'static str {
    let path: &'static str = module_path!();
    path.split("::").next().unwrap_or(path)
}

/// The top-level module of this crate that a function belongs to
/// (`tracker` for `<leakscope::tracker::alloc::Alloc>::alloc_slow`), or
/// `None` for a function of another crate.
pub(super) fn own_module(function: &str) -> Option<&str> {
    let rest = function
        .trim_start_matches('<')
        .strip_prefix(crate_name())?
        .strip_prefix("::")?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The modules of this crate whose frames stand in the program's own
/// stacks below the allocation path: trackref (`Tracked::new` allocates
/// the program's value) and testing (`measure` runs the program's
/// closure). The allocation path itself (the tracker's frames at the top)
/// is trimmed before this is asked; a tracker frame still in a stack after
/// that is the tracker allocating its own data (a snapshot's copy, a
/// thread's registration). Every other module of this crate allocates only
/// the tool's analysis data (heaps, symbol tables, text, console sessions,
/// exports). Recognised by the module's path, so a module moved inside
/// another keeps its role.
pub(crate) const PROGRAM_FACING: [&str; 2] = ["trackref", "testing"];

/// The module that holds the allocation path.
const TRACKER: &str = "tracker";

/// Whether a function is the tracker's own (the allocation path), or a
/// generic function of another crate instantiated for it (the thread-local
/// access inlined into it: `<LocalKey<leakscope::tracker::…>>::try_with`).
pub(crate) fn in_tracker(function: &str) -> bool {
    own_module(function) == Some(TRACKER)
        || function.contains(&format!("<{}::{TRACKER}::", crate_name()))
}

/// Whether a (resolved, trimmed) stack allocated the tool's own analysis
/// data: heap views and exports leave such blocks out, as Guppy leaves out
/// heapy's own objects.
pub(crate) fn tool_owned(frames: &[Frame]) -> bool {
    let own_thread = format!("{}::tracker::spawn_own<", crate_name());
    frames.iter().any(|f| {
        own_module(&f.function).is_some_and(|m| !PROGRAM_FACING.contains(&m))
            // A thread of leakscope's own, before it is marked as one (the
            // C library's records of its thread-local destructors).
            || f.function.contains(&own_thread)
            // The preload library's start, on the program's main thread.
            || f.function.starts_with(PRELOAD_CRATE)
    })
}

/// How the preload library's functions begin (`leakscope_preload::start`).
const PRELOAD_CRATE: &str = "leakscope_preload::";

/// Whether `path` (a `module_path!()`) lies in a program-facing module.
#[cfg(test)]
pub(crate) fn is_program_facing(path: &str) -> bool {
    own_module(path).is_some_and(|m| PROGRAM_FACING.contains(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_frames_are_told_by_module() {
        assert_eq!(
            own_module("<leakscope::tracker::alloc::Alloc>::alloc_slow"),
            Some("tracker")
        );
        assert_eq!(own_module("leakscope::heap::Heap::new"), Some("heap"));
        assert_eq!(own_module("app::leakscope::f"), None);
        assert_eq!(own_module("leakscopex::f"), None);
        assert!(is_program_facing(crate::trackref::MODULE));
        assert!(is_program_facing(crate::testing::MODULE));
        assert!(!is_program_facing(crate::tracker::MODULE));
        assert!(!is_program_facing(module_path!()));
        let heap = super::super::Frame {
            addr: 0,
            function: "<leakscope::heap::Heap>::partition".into(),
            file: None,
            line: None,
            column: None,
            inlined: false,
            v0: true,
        };
        let tracked = super::super::Frame {
            function: "<leakscope::trackref::Tracked<app::Page>>::new".into(),
            ..heap.clone()
        };
        assert!(tool_owned(&[tracked.clone(), heap.clone()]));
        assert!(!tool_owned(&[tracked]));
        // The allocation path ends at the shim, then std's allocation
        // functions; the container below them is the program's request.
        let f = |name: &str| super::super::Frame {
            function: name.into(),
            ..heap.clone()
        };
        let stack = [
            f("<leakscope::tracker::alloc::Alloc as core::alloc::global::GlobalAlloc>::alloc"),
            f("__rustc::__rust_alloc"),
            f("alloc::alloc::alloc"),
            f("<alloc::alloc::Global>::alloc_impl"),
            f("<alloc::alloc::Global as core::alloc::Allocator>::allocate"),
            f("<alloc::raw_vec::RawVecInner>::try_allocate_in"),
            f("alloc::alloc::alloc"),
            f("app::main"),
        ];
        assert_eq!(internal_prefix(&stack), 5);
    }

    #[test]
    fn a_preloaded_malloc_ends_the_path_and_its_start_is_the_tools() {
        let f = |name: &str| super::super::Frame {
            addr: 0,
            function: name.into(),
            file: None,
            line: None,
            column: None,
            inlined: false,
            v0: true,
        };
        // The preload library's frames down to the C entry point, then the
        // program (a C function, or std's allocation reached through
        // `__rust_alloc`'s tail call to `malloc`).
        let stack = [
            f("<leakscope::tracker::alloc::Alloc>::alloc_slow"),
            f("leakscope_preload::alloc"),
            f("calloc"),
            f("remember"),
            f("main"),
        ];
        assert_eq!(internal_prefix(&stack), 3);
        assert!(!tool_owned(&stack[3..]));
        // The library's start, and a thread of leakscope's own before it
        // is marked as one, allocate the tool's blocks.
        assert!(tool_owned(&[
            f("__cxa_thread_atexit_impl"),
            f(
                "std::thread::lifecycle::spawn_unchecked::<leakscope::tracker::spawn_own<leakscope::leaks::history::start::{closure#0}, ()>::{closure#0}, ()>"
            ),
        ]));
        assert!(tool_owned(&[
            f("<&str as core::convert::Into<alloc::string::String>>::into"),
            f("leakscope_preload::start")
        ]));
    }
}
