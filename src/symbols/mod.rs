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
//!
//! ## The program's code
//! A site is the first frame of the program's own code. Without
//! `LEAKSCOPE_APP_CRATES`, that is any function outside the standard
//! library and leakscope whose source is not under the cargo registry, a
//! git checkout or the toolchain, and also every function of the package
//! that holds the binary's `main` (its crate and the crates built beside
//! it), wherever its source lies: a server installed from the registry
//! names its own `Db::set (db.rs:167)`. The executable says which package
//! that is (its symbol table names `main`'s crate; its debug information,
//! where each crate was built). The same crates' types are the ones
//! `byvia` names references by (`Entry.data(Bytes.ptr)`).
//!
//! ## Memory
//! Resolution parses the program's debug information (tens to hundreds of
//! MiB for a large program); it is given back once resolution has been idle
//! for 30 s (or at once with [`release_debug_info`]), and
//! the cache of resolved frames holds at most 16 384
//! addresses. `stats()` shows what leakscope holds.

mod build;
mod dwarf;
mod layout;
mod names;
mod program;
mod site;
mod trim;
mod types;

pub use build::{BuildInfo, ProgramAllocator, build_info, program_allocator};
pub use layout::{Layouts, Step, layouts};
pub use names::{plain_name, short_function, short_site, short_type};
pub(crate) use site::{NO_PROGRAM_FRAME, app_crates_named, is_program_type, is_runtime_function};
pub use site::{allocation_site, site_label};
pub(crate) use trim::in_tracker;
pub(crate) use trim::tool_owned;
pub use types::{BlockType, TypeSource, block_type};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};

use trim::internal_prefix;

use crate::sys::fork::{ForkSafe, InChild};
use crate::tracker::untracked;

/// One resolved frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

/// `file:line` with the file's directories dropped, when both are known.
pub fn short_place(file: Option<&str>, line: Option<u32>) -> Option<String> {
    let (file, line) = (file?, line?);
    Some(format!(
        "{}:{line}",
        file.rsplit('/').next().unwrap_or(file)
    ))
}

impl Frame {
    /// `file:line` with the file's directories dropped, when debug info has
    /// both.
    pub fn place(&self) -> Option<String> {
        short_place(self.file.as_deref(), self.line)
    }

    /// `function (file:line)`, or the function alone without debug info.
    pub fn label(&self) -> String {
        match self.place() {
            Some(place) => format!("{} ({place})", self.function),
            None => self.function.clone(),
        }
    }

    /// Whether this frame belongs to the standard library, a container crate
    /// or leakscope itself.
    pub fn is_runtime(&self) -> bool {
        is_runtime_function(&self.function)
    }

    /// The crate the function belongs to (its self type's crate for a
    /// method: `tokio` for `<tokio::runtime::Runtime>::block_on`).
    pub fn crate_name(&self) -> &str {
        site::crate_of(&self.function)
    }

    /// Whether this frame is the program's own code (see
    /// [`allocation_site`]): not the standard library's, leakscope's, or a
    /// dependency's.
    pub fn is_program(&self) -> bool {
        site::is_program_frame(self)
    }
}

/// What resolution keeps: the frames of each address resolved so far, and
/// the index of the executable's debug information.
#[derive(Default)]
struct Resolved {
    frames: HashMap<usize, Arc<[Frame]>>,
    /// `None` until first needed; then the index, or `None` inside when the
    /// executable has no usable DWARF.
    exe: Option<Option<dwarf::ExeIndex>>,
}

impl Resolved {
    /// The executable's index, loading it on first use.
    fn exe(&mut self) -> Option<&dwarf::ExeIndex> {
        self.exe.get_or_insert_with(dwarf::ExeIndex::load).as_ref()
    }

    /// Keeps `frames` for `addr`, starting again empty when the cache is
    /// full.
    fn keep(&mut self, addr: usize, frames: Arc<[Frame]>) {
        if self.frames.len() >= MAX_CACHED_ADDRESSES {
            self.frames.clear();
            self.frames.shrink_to_fit();
        }
        self.frames.insert(addr, frames);
    }
}

/// The most return addresses whose frames are kept; past it the cache
/// starts again empty (a few hundred bytes an address: ~5 MiB at most).
pub(crate) const MAX_CACHED_ADDRESSES: usize = 1 << 14;

/// How long symbol resolution may be idle before the index of the debug
/// information (and the type layouts) is given back.
pub(crate) const DEBUG_INFO_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The symbols' state, made on first use. A forked child keeps it, unless
/// a thread was resolving at the fork (then it starts without).
static CACHE: ForkSafe<Option<Resolved>> = ForkSafe::new(None, InChild::Keep);

/// Runs `f` on the symbols' state, with tracking off (it is leakscope's
/// memory, not the program's); the first call starts the releaser.
fn with_cache<R>(f: impl FnOnce(&mut Resolved) -> R) -> R {
    static RELEASER: Once = Once::new();
    RELEASER.call_once(|| untracked(start_releaser));
    untracked(|| f(CACHE.lock().get_or_insert_with(Resolved::default)))
}

/// When resolution last ran (coarse clock, ns).
static LAST_RESOLVED: AtomicU64 = AtomicU64::new(0);
/// Whether debug information is loaded (resolution ran since it was last
/// given back).
static DEBUG_INFO_LOADED: AtomicBool = AtomicBool::new(false);

/// A thread that gives the parsed debug information back once resolution
/// has been idle for [`DEBUG_INFO_IDLE`]: leakscope's memory for symbols
/// is then only the bounded frame cache. The next view parses it again.
fn start_releaser() {
    let _ = crate::tracker::spawn_own(
        std::thread::Builder::new().name("leakscope-symbols".into()),
        || {
            loop {
                std::thread::sleep(DEBUG_INFO_IDLE / 6);
                let idle = crate::sys::clock::coarse_ns()
                    .saturating_sub(LAST_RESOLVED.load(Ordering::Relaxed));
                if DEBUG_INFO_LOADED.load(Ordering::Relaxed)
                    && idle > DEBUG_INFO_IDLE.as_nanos() as u64
                {
                    release_debug_info();
                }
            }
        },
    );
}

/// Gives back the parsed debug information now (it is parsed again when
/// next needed); resolved frames stay cached.
pub fn release_debug_info() {
    with_cache(|map| {
        drop(map.exe.take());
        backtrace::clear_symbol_cache();
        layout::release();
        DEBUG_INFO_LOADED.store(false, Ordering::Relaxed);
    })
}

/// The frames of one return address, innermost inlined frame first.
pub fn resolve(addr: usize) -> Arc<[Frame]> {
    with_cache(|map| {
        if let Some(f) = map.frames.get(&addr) {
            return Arc::clone(f);
        }
        started_resolving();
        let in_exe = map.exe().filter(|exe| exe.contains(addr));
        let frames: Arc<[Frame]> = match in_exe {
            Some(exe) => exe
                .resolve(&[addr])
                .remove(&addr)
                .unwrap_or_else(|| vec![unknown_frame(addr)])
                .into(),
            None => match dwarf::library_frame(addr) {
                Some(Some(frame)) => vec![frame].into(),
                Some(None) => vec![unknown_frame(addr)].into(),
                // The executable without DWARF (its symbol table), or code
                // no loaded object holds.
                None => resolve_uncached(addr).into(),
            },
        };
        map.keep(addr, Arc::clone(&frames));
        frames
    })
}

/// Bytes leakscope holds for symbols now (an estimate): the frames
/// resolved so far, the index of the executable's debug information, and
/// the type layouts read.
pub fn memory() -> u64 {
    let frames_and_index = {
        // Nothing is made to answer (no resolution has run: nothing is held).
        let slot = CACHE.lock();
        let Some(map) = slot.as_ref() else {
            drop(slot);
            return layout::loaded_memory();
        };
        let frames: usize = map
            .frames
            .values()
            .map(|f| {
                f.iter()
                    .map(|f| {
                        size_of::<Frame>()
                            + f.function.len()
                            + f.file.as_ref().map_or(0, |p| p.len())
                    })
                    .sum::<usize>()
                    + 32
            })
            .sum();
        let index = map
            .exe
            .as_ref()
            .and_then(|e| e.as_ref())
            .map_or(0, |e| e.bytes());
        (frames + map.frames.capacity() * (size_of::<(usize, Arc<[Frame]>)>() + 1)) as u64 + index
    };
    frames_and_index + layout::loaded_memory()
}

/// Resolves every address of `stacks` that is not resolved yet, in one
/// batch: each compilation unit of the executable that they touch is read
/// once, however many of them it holds (see `dwarf`). Views call it before
/// they resolve stack after stack.
pub fn prefetch<'a>(stacks: impl IntoIterator<Item = &'a [usize]>) {
    with_cache(|map| {
        let mut wanted: Vec<usize> = stacks
            .into_iter()
            .flatten()
            .copied()
            .filter(|a| !map.frames.contains_key(a))
            .collect();
        if wanted.is_empty() {
            return;
        }
        started_resolving();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(MAX_CACHED_ADDRESSES);
        let Some(exe) = map.exe() else {
            return;
        };
        wanted.retain(|&a| exe.contains(a));
        let found = exe.resolve(&wanted);
        if map.frames.len() + found.len() > MAX_CACHED_ADDRESSES {
            map.frames.clear();
            map.frames.shrink_to_fit();
        }
        for (addr, frames) in found {
            map.keep(addr, frames.into());
        }
    })
}

/// Notes that resolution runs (for the releaser of the debug information).
fn started_resolving() {
    LAST_RESOLVED.store(crate::sys::clock::coarse_ns(), Ordering::Relaxed);
    DEBUG_INFO_LOADED.store(true, Ordering::Relaxed);
}

/// What the stack that stands in for the ones a full stack store could not
/// keep is called (see [`crate::tracker::STORE_FULL_FRAME`]).
pub const STORE_FULL_NAME: &str = "(stack store full: stacks not kept)";

/// The frame of an address nothing names.
fn unknown_frame(addr: usize) -> Frame {
    Frame {
        addr,
        function: "?".to_string(),
        file: None,
        line: None,
        column: None,
        inlined: false,
        v0: false,
    }
}

fn resolve_uncached(addr: usize) -> Vec<Frame> {
    if addr == crate::tracker::STORE_FULL_FRAME {
        return vec![Frame {
            addr,
            function: STORE_FULL_NAME.to_string(),
            file: None,
            line: None,
            column: None,
            inlined: false,
            v0: false,
        }];
    }
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
        out.push(unknown_frame(addr));
    }
    out
}

/// The name of the static that holds `addr` (`leaky::REGISTRY`), from the
/// symbol table, when it is in one.
pub fn static_name(addr: usize) -> Option<String> {
    untracked(|| {
        let mut name = None;
        backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
            if name.is_none() && sym.filename().is_none() {
                name = sym.name().map(|n| format!("{n:#}"));
            }
        });
        name
    })
}

/// Resolves a captured stack (as in [`crate::tracker::StackRecord`]) into
/// frames, innermost first, without leakscope's own allocation-path frames.
pub fn resolve_stack(addrs: &[usize]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for &a in addrs {
        frames.extend(resolve(a).iter().cloned());
    }
    frames.drain(..internal_prefix(&frames));
    frames
}
#[cfg(test)]
mod tests {
    use super::site::{allocation_site, crate_of};
    use super::types::{TypeSource, block_type, container_type};
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
        // A C symbol has no crate.
        assert_eq!(crate_of("remember"), "");
    }

    #[test]
    fn a_c_function_is_the_programs_where_its_file_is() {
        let placed = |file: Option<&str>| Frame {
            file: file.map(str::to_string),
            line: file.map(|_| 8),
            ..frame("remember", false)
        };
        // In the executable's debug information, in the program's tree.
        assert!(placed(Some("/src/app/leaky.c")).is_program());
        // A shared library's function (named from its symbols, no file),
        // and a system header's.
        assert!(!placed(None).is_program());
        assert!(!placed(Some("/usr/include/x86_64-linux-gnu/bits/stdio2.h")).is_program());
        assert!(!frame("main", false).is_program());
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
    fn vec_literals_are_vecs_of_their_element() {
        assert_eq!(
            container_type("<alloc::boxed::Box<[app::Gear; 2]>>::new_uninit").as_deref(),
            Some("Vec<app::Gear>")
        );
        assert_eq!(
            container_type("<alloc::boxed::Box<[[u8; 4]; 16]>>::new_uninit").as_deref(),
            Some("Vec<[u8; 4]>")
        );
        assert_eq!(
            container_type("<alloc::boxed::Box<[u8; 48]>>::new").as_deref(),
            Some("Box<[u8; 48]>")
        );
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
