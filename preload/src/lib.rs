//! leakscope's preload library, for programs that allocate through the C
//! library's `malloc`: every Rust program without a `#[global_allocator]`,
//! and C and C++ programs. `leakscope run -- PROGRAM` starts a program with
//! it in `LD_PRELOAD`.
//!
//! It defines `malloc`, `calloc`, `realloc`, `reallocarray`, `free`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` and
//! `malloc_usable_size`, serves them from jemalloc, and tracks them with
//! leakscope's allocator: the same modes, samples, records and environment
//! variables as a program that declares `leakscope::Alloc`. Its constructor
//! starts the console (and the HTTP endpoint when `LEAKSCOPE_HTTP` is set)
//! on a thread of its own.
//!
//! Sizes: a block is counted at its jemalloc size class (`malloc(100)` is
//! a block of 112 bytes), the size `malloc_usable_size` gives, so that a
//! `free`, which is given no size, takes off what the allocation added.
//!
//! Before the constructor runs, the dynamic loader and other libraries'
//! constructors already allocate; the thread-local state leakscope's
//! allocator keeps may not be set up yet. Those blocks come from a static
//! area that is never reused: `free` tells them by their address and lets
//! them be, and `realloc` moves them out. None of them is tracked.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use leakscope::symbols::ProgramAllocator;
use tikv_jemalloc_sys as jemalloc;

/// leakscope's allocator, for the library's own Rust code and for every
/// block the program asks of `malloc` once the library has started.
#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

/// Set by the constructor: from then on blocks are jemalloc's, tracked.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The largest alignment every block of jemalloc's size classes from 16
/// bytes up has: requests for at most this come from the plain classes.
const MALLOC_ALIGN: usize = 16;

/// The alignment `malloc` asks for: what jemalloc's class of the size
/// gives (8 for a class of 8 bytes, 16 from 16 bytes up), as jemalloc's
/// own `malloc` does.
const NATURAL: usize = 1;

// ---------------------------------------------------------------------------
// Blocks handed out before the constructor.

/// The static area early blocks come from. In `.bss`: it costs memory only
/// where it is used.
const EARLY_BYTES: usize = 64 << 20;

#[repr(C, align(4096))]
struct EarlyArea(UnsafeCell<[u8; EARLY_BYTES]>);

// SAFETY: each byte range is handed out once, by an atomic bump of
// `EARLY_USED`, and then belongs to the block it was given to.
unsafe impl Sync for EarlyArea {}

static EARLY: EarlyArea = EarlyArea(UnsafeCell::new([0; EARLY_BYTES]));
static EARLY_USED: AtomicUsize = AtomicUsize::new(0);

/// Bytes before an early block that hold its size.
const EARLY_HEADER: usize = 16;

fn early_base() -> usize {
    EARLY.0.get() as usize
}

/// Whether `p` is an early block.
fn is_early(p: *const c_void) -> bool {
    (p as usize).wrapping_sub(early_base()) < EARLY_BYTES
}

/// A zeroed early block of `size` bytes aligned to `align` (a power of two),
/// or null when the area is full.
fn early_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.max(MALLOC_ALIGN);
    let mut used = EARLY_USED.load(Ordering::Relaxed);
    loop {
        let Some(start) = (used + EARLY_HEADER)
            .checked_next_multiple_of(align)
            .filter(|s| s.checked_add(size).is_some_and(|e| e <= EARLY_BYTES))
        else {
            return std::ptr::null_mut();
        };
        match EARLY_USED.compare_exchange_weak(
            used,
            start + size,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                let p = (early_base() + start) as *mut u8;
                // SAFETY: `start - EARLY_HEADER .. start + size` lies in the
                // area and was handed to no one else; the header is 8-aligned
                // (`start` is 16-aligned).
                unsafe { (p.sub(8) as *mut usize).write(size) };
                return p as *mut c_void;
            }
            Err(now) => used = now,
        }
    }
}

/// The size an early block was given.
///
/// # Safety
/// `p` is an early block.
unsafe fn early_size(p: *const c_void) -> usize {
    // SAFETY: the caller's block has its size 8 bytes before it.
    unsafe { ((p as *const u8).sub(8) as *const usize).read() }
}

// ---------------------------------------------------------------------------
// The blocks of a started library: jemalloc's, through leakscope.

fn set_errno(code: i32) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = code };
}

/// The size class jemalloc serves `size` bytes aligned to `align` with, or
/// 0 when no class holds it. Up to [`MALLOC_ALIGN`], a class at least as
/// large as the alignment has it (16 bytes aligned to 16 take the class of
/// 16, not that of 8).
fn size_class(size: usize, align: usize) -> usize {
    let (size, flags) = if align <= MALLOC_ALIGN {
        (size.max(align), 0)
    } else {
        (size, jemalloc::MALLOCX_ALIGN(align))
    };
    // SAFETY: nallocx only computes; a size of 0 is not allowed, hence max.
    unsafe { jemalloc::nallocx(size.max(1), flags) }
}

/// A tracked block of `size` bytes aligned to `align` (a power of two), or
/// null with errno ENOMEM.
fn alloc(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    if !STARTED.load(Ordering::Acquire) {
        let p = early_alloc(size, align);
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        return p;
    }
    let class = size_class(size, align);
    if class == 0 || class > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return std::ptr::null_mut();
    }
    // Alignment 1 when `malloc`'s own will do, so that jemalloc serves the
    // class as `malloc` would.
    let align = if align <= MALLOC_ALIGN { 1 } else { align };
    // SAFETY: a non-zero size within isize::MAX and a power-of-two
    // alignment; jemalloc's classes are multiples of every alignment up to
    // their size.
    let p = unsafe {
        let layout = Layout::from_size_align_unchecked(class, align);
        if zeroed {
            ALLOC.alloc_zeroed(layout)
        } else {
            ALLOC.alloc(layout)
        }
    };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p as *mut c_void
}

/// The size of a block of a started library: its class.
///
/// # Safety
/// `p` is a live block jemalloc handed out.
unsafe fn jemalloc_size(p: *const c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { jemalloc::malloc_usable_size(p) }
}

// ---------------------------------------------------------------------------
// The C library's allocation functions.

/// `malloc(3)`.
///
/// # Safety
/// The C contract: the block is given back with `free` or `realloc` once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, NATURAL, false)
}

/// `calloc(3)`.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(total) => alloc(total, NATURAL, true),
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// `free(3)`.
///
/// # Safety
/// `p` is null or a live block of this library's functions.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // Before the start every block this library hands out is early: any
    // other is not its own, and is left alone rather than given to
    // jemalloc.
    if p.is_null() || is_early(p) || !STARTED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: the caller's block, a jemalloc one (not early).
    unsafe {
        let size = jemalloc_size(p);
        ALLOC.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, 1));
    }
}

/// `realloc(3)`: a size of 0 frees the block and gives null, as glibc's.
///
/// # Safety
/// As [`free`] for `p`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc(size, NATURAL, false);
    }
    if size == 0 {
        // SAFETY: the caller's block.
        unsafe { free(p) };
        return std::ptr::null_mut();
    }
    if is_early(p) {
        // Moved: into a new block, which is early too before the start.
        let new = alloc(size, NATURAL, false);
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; the old one holds
            // its own size, the new one `size`.
            unsafe {
                let old = early_size(p);
                std::ptr::copy_nonoverlapping(p as *const u8, new as *mut u8, old.min(size));
            }
        }
        return new;
    }
    if !STARTED.load(Ordering::Acquire) {
        // Not a block of this library's (see `free`): its size is unknown.
        set_errno(libc::ENOMEM);
        return std::ptr::null_mut();
    }
    let class = size_class(size, NATURAL);
    if class == 0 || class > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return std::ptr::null_mut();
    }
    // SAFETY: the caller's live block, described by its class; the new
    // size is a class too.
    let new = unsafe {
        let old = jemalloc_size(p);
        ALLOC.realloc(
            p as *mut u8,
            Layout::from_size_align_unchecked(old, 1),
            class,
        )
    };
    if new.is_null() {
        set_errno(libc::ENOMEM);
    }
    new as *mut c_void
}

/// `reallocarray(3)`.
///
/// # Safety
/// As [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: EINVAL for an alignment that is not a power of two
/// times the size of a pointer, ENOMEM when no block is to be had; `*out`
/// is set only on success.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return libc::EINVAL;
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let p = alloc(size, align, false);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // posix_memalign reports through its result, not errno.
    set_errno(errno);
    // SAFETY: the caller's pointer.
    unsafe { out.write(p) };
    0
}

/// `aligned_alloc(3)`: null with EINVAL for an alignment that is not a
/// power of two.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    alloc(size, align, false)
}

/// `memalign(3)`: an alignment that is not a power of two is raised to the
/// next one, as glibc does.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.max(1).checked_next_power_of_two() {
        Some(align) => alloc(size, align, false),
        None => {
            set_errno(libc::EINVAL);
            std::ptr::null_mut()
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 { page as usize } else { 4096 }
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, page_size(), false)
}

/// `pvalloc(3)`: page-aligned, the size rounded up to whole pages.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(size) => alloc(size, page, false),
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `p` is null or a live block of this library's functions.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        0
    } else if is_early(p) {
        // SAFETY: an early block.
        unsafe { early_size(p) }
    } else {
        // SAFETY: the caller's live block.
        unsafe { jemalloc_size(p) }
    }
}

// ---------------------------------------------------------------------------
// The constructor.

/// Run by the dynamic loader once the libraries this one needs are set up.
#[used]
#[unsafe(link_section = ".init_array")]
static START: extern "C" fn() = start;

extern "C" fn start() {
    // The program reaches `malloc` through its standard library (or a C
    // library), built without frame pointers: a frame-pointer walk would
    // stop there. The unwinder reads the call frame information instead.
    // Frame pointers are not used even when `LEAKSCOPE_UNWIND` asks: the
    // walk needs the thread's stack bounds, which the C library reads
    // under a lock it holds while it allocates (a thread's first block
    // would then wait for itself).
    let asked_fp = std::env::var_os("LEAKSCOPE_UNWIND").is_some_and(|v| v == "fp");
    leakscope::tracker::set_unwinder(leakscope::tracker::Unwinder::Backtrace);
    STARTED.store(true, Ordering::Release);
    // Said now, before the program runs: a short one ends before a thread
    // would.
    let allocator = leakscope::symbols::program_allocator();
    if let Some(why) = bypass(allocator) {
        let program = std::env::current_exe().unwrap_or_default();
        eprintln!("leakscope: {} {why}", program.display());
        if allocator == ProgramAllocator::Leakscope {
            return;
        }
    }
    // The console starts on a thread of its own: the loader is still
    // running constructors, and its lock is held until they end.
    let spawned = std::thread::Builder::new()
        .name("leakscope-start".into())
        .spawn(start_console);
    if let Err(e) = spawned {
        eprintln!("leakscope: the console was not started: {e}");
    }
    // The spawn allocated, so the allocator has read its variables: the
    // unwinder is chosen again over what `LEAKSCOPE_UNWIND` set.
    if asked_fp {
        leakscope::tracker::set_unwinder(leakscope::tracker::Unwinder::Backtrace);
        eprintln!(
            "leakscope: LEAKSCOPE_UNWIND=fp is not used under leakscope run: the program's \
             standard library keeps no frame pointers; stacks come from the unwinder"
        );
    }
}

/// Starts the console and, when `LEAKSCOPE_HTTP` asks, the HTTP endpoint;
/// both live as long as the process.
fn start_console() {
    match leakscope::console::Console::builder()
        .with_default_env()
        .spawn()
    {
        Ok(console) => std::mem::forget(console),
        Err(e) => eprintln!("leakscope: the console was not started: {e}"),
    }
    match leakscope::http::Endpoint::builder()
        .with_default_env()
        .spawn()
    {
        Ok(endpoint) => std::mem::forget(endpoint),
        Err(e) => eprintln!("leakscope: the HTTP endpoint was not started: {e}"),
    }
}

/// What it means that the program's blocks may bypass this library's
/// `malloc`, said after the program's path; `None` when they do not.
fn bypass(allocator: ProgramAllocator) -> Option<&'static str> {
    Some(match allocator {
        ProgramAllocator::Leakscope => {
            "has leakscope built in: its own allocator and console are the ones to use \
             (run it as it is); this library starts no console of its own"
        }
        ProgramAllocator::OwnMalloc => {
            "has a malloc of its own (an allocator linked in statically): its calls never \
             reach leakscope's, and the heap leakscope shows holds only what the C library \
             allocates. For a Rust program, declare leakscope's allocator instead: \
             #[global_allocator] static ALLOC: leakscope::Alloc = leakscope::Alloc::new();"
        }
        ProgramAllocator::GlobalAllocator => {
            "declares its own #[global_allocator]: unless that allocator calls the C \
             library's malloc (std's System does), its blocks never reach leakscope, and the \
             heap leakscope shows holds only what the C library allocates. Declare \
             leakscope's allocator instead: #[global_allocator] static ALLOC: \
             leakscope::Alloc = leakscope::Alloc::new();"
        }
        _ => return None,
    })
}
