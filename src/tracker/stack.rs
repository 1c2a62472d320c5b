//! Stack capture on the allocation path: return addresses only, no symbols.
//!
//! The cheap way is a frame-pointer walk, bounded by the current thread's
//! stack so that a garbage frame pointer (code built without frame pointers)
//! can never make it read unmapped memory. Whether this build has frame
//! pointers is probed once; without them the walk would find nothing useful,
//! so capture falls back to `backtrace::trace_unsynchronized` (an unwinder:
//! slower, but it works on any build). `LEAKSCOPE_UNWIND=fp|backtrace`
//! overrides the probe.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Size of the capture buffer: the largest depth that can be configured plus
/// [`INTERNAL_FRAMES`].
pub(crate) const MAX_FRAMES: usize = 128;

/// leakscope's own frames on the allocation path (`capture`'s callers down to
/// `__rust_alloc`) that are captured before the user's first frame and
/// trimmed when symbols are resolved. Captured in addition to the configured
/// depth so that trimming them never shortens the user's part of the stack.
pub(crate) const INTERNAL_FRAMES: usize = 6;

/// Default number of the program's own frames kept per stack.
pub const DEFAULT_MAX_FRAMES: usize = 32;

static DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_FRAMES);

const UNWIND_UNKNOWN: u8 = 0;
const UNWIND_FP: u8 = 1;
const UNWIND_BACKTRACE: u8 = 2;
static UNWIND: AtomicU8 = AtomicU8::new(UNWIND_UNKNOWN);

/// How stacks are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unwinder {
    /// Walking the frame-pointer chain (needs `-C force-frame-pointers=yes`).
    FramePointers,
    /// The `backtrace` crate's unwinder (works without frame pointers, slower).
    Backtrace,
}

/// Sets how many of the program's frames are kept per captured stack
/// (default [`DEFAULT_MAX_FRAMES`], at most 120). Affects stacks captured
/// from then on.
pub fn set_max_frames(frames: usize) {
    DEPTH.store(
        frames.clamp(1, MAX_FRAMES - INTERNAL_FRAMES),
        Ordering::Relaxed,
    );
}

/// The number of the program's frames kept per captured stack.
pub fn max_frames() -> usize {
    DEPTH.load(Ordering::Relaxed)
}

/// The unwinder in use: frame pointers when this build has them, else the
/// `backtrace` crate's unwinder.
pub fn unwinder() -> Unwinder {
    match UNWIND.load(Ordering::Relaxed) {
        UNWIND_FP => Unwinder::FramePointers,
        UNWIND_BACKTRACE => Unwinder::Backtrace,
        _ => {
            let chosen = if frame_pointers_work() {
                UNWIND_FP
            } else {
                UNWIND_BACKTRACE
            };
            UNWIND.store(chosen, Ordering::Relaxed);
            unwinder()
        }
    }
}

/// Whether this build keeps frame pointers (whatever unwinder is in use).
pub fn has_frame_pointers() -> bool {
    frame_pointers_work()
}

/// Chooses the unwinder, as `LEAKSCOPE_UNWIND` does; frame pointers only
/// where this build has them. For code that knows better than the probe:
/// a library preloaded into a program reaches `malloc` through the
/// program's standard library, which keeps no frame pointers.
pub fn set_unwinder(choice: Unwinder) {
    let v = match choice {
        Unwinder::FramePointers if frame_pointers_work() => UNWIND_FP,
        _ => UNWIND_BACKTRACE,
    };
    UNWIND.store(v, Ordering::Relaxed);
}

/// The current thread's stack as `(lowest, highest)` address, or `(0, 0)` if
/// the platform cannot say. Called once per thread, on its first sample.
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: plain pthread calls on the current thread with a zeroed attr
    // that pthread_getattr_np initialises; the attr is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() {
            return (0, 0);
        }
        (addr as usize, addr as usize + size)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        (0, 0)
    }
}

/// A captured stack: the return addresses (innermost first) and their
/// [`stack_hash`], computed during the walk.
pub(crate) struct Captured<'a> {
    pub(crate) frames: &'a [usize],
    pub(crate) hash: u64,
}

/// Captures the return addresses of the current stack into `buf`, innermost
/// first, and returns them with their hash. `stack_top` is the highest
/// address of this thread's stack (0 if unknown: the unwinder is used). The
/// buffer is not zeroed first: only the captured part is ever read.
#[inline(always)]
pub(crate) fn capture(
    buf: &mut [MaybeUninit<usize>; MAX_FRAMES],
    stack_top: usize,
) -> Captured<'_> {
    let want = max_frames() + INTERNAL_FRAMES;
    let (mut n, mut lane) = (0, HASH_SEED);
    if unwinder() == Unwinder::FramePointers && stack_top != 0 {
        (n, lane) = walk_frame_pointers(&mut buf[..want], stack_top);
    }
    // A chain that ends at once means a frame without a frame pointer right
    // above us: the unwinder does better there.
    let walked = n > INTERNAL_FRAMES / 2;
    if !walked {
        n = capture_with_unwinder(&mut buf[..want]);
    }
    // SAFETY: the first n elements were written by the walk or the unwinder.
    let frames = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<usize>(), n) };
    let hash = if walked {
        finish_hash(lane, n)
    } else {
        stack_hash(frames)
    };
    Captured { frames, hash }
}

const HASH_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// One frame's step of the stack hash: a rotate and a xor, one cycle, well
/// hidden behind the walk's own chain of loads.
#[inline(always)]
fn hash_step(lane: u64, ret: usize) -> u64 {
    lane.rotate_left(19) ^ ret as u64
}

/// Mixes the hash lane and the frame count into the stack's hash.
#[inline(always)]
fn finish_hash(lane: u64, n: usize) -> u64 {
    let m = ((lane ^ n as u64) as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The hash of a stack, as the frame-pointer walk computes it on the way.
/// Interning compares the frames too, so a collision costs a comparison,
/// never a wrong stack.
fn stack_hash(frames: &[usize]) -> u64 {
    finish_hash(
        frames.iter().fold(HASH_SEED, |h, &f| hash_step(h, f)),
        frames.len(),
    )
}

#[cold]
#[inline(never)]
fn capture_with_unwinder(buf: &mut [MaybeUninit<usize>]) -> usize {
    let mut n = 0;
    // SAFETY: the unsynchronised variant is required here because the
    // synchronised one takes a lock that may allocate; the allocator's
    // reentrancy flag keeps this thread from re-entering, and the unwinder
    // (libgcc) is thread-safe.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n == buf.len() {
                return false;
            }
            let ip = frame.ip() as usize;
            if ip != 0 {
                buf[n].write(ip);
                n += 1;
            }
            true
        });
    }
    // The first frame is the unwinder's caller (this function): drop it so
    // both unwinders start at the same place.
    if n > 0 {
        buf.copy_within(1..n, 0);
        n -= 1;
    }
    n
}

#[inline(always)]
fn frame_address() -> usize {
    let fp: usize;
    // SAFETY: reading the frame-pointer register has no side effects.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reading the stack-pointer register has no side effects.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        sp = 0;
    }
    sp
}

/// Walks the frame-pointer chain from this frame.
#[inline(always)]
fn walk_frame_pointers(buf: &mut [MaybeUninit<usize>], stack_top: usize) -> (usize, u64) {
    walk_chain(frame_address(), stack_pointer(), stack_top, buf)
}

/// Follows a chain of frame records (each: the next record's address, then
/// a return address) from `fp`, and hashes the return addresses on the way.
/// Every record (two words) must lie inside `[low, stack_top)`, each one
/// above the previous, so a garbage pointer ends the walk instead of
/// faulting. Records are read as unaligned words: a misaligned garbage
/// pointer inside the stack reads garbage, harmlessly, and the walk saves
/// an alignment test per frame.
#[inline(always)]
fn walk_chain(
    mut fp: usize,
    low: usize,
    stack_top: usize,
    buf: &mut [MaybeUninit<usize>],
) -> (usize, u64) {
    const WORD: usize = std::mem::size_of::<usize>();
    // The highest address a frame record may start at.
    let last = stack_top.saturating_sub(2 * WORD);
    let mut lane = HASH_SEED;
    if fp < low || fp > last {
        return (0, lane);
    }
    let read = |at: usize| {
        // SAFETY: callers read only inside `[low, stack_top)`, this thread's
        // live, mapped stack; the values read are plain bytes.
        unsafe { std::ptr::read_unaligned(at as *const usize) }
    };
    let mut n = 0;
    while n < buf.len() {
        // The record at `fp` lies inside `[low, stack_top)`.
        let (next, ret) = (read(fp), read(fp + WORD));
        if ret == 0 {
            break;
        }
        buf[n].write(ret);
        lane = hash_step(lane, ret);
        n += 1;
        // The next record lies above this one and below the top.
        if next <= fp || next > last {
            break;
        }
        fp = next;
    }
    (n, lane)
}

/// Whether this build keeps frame pointers: a short walk from `probe_inner`
/// must find a return address inside `probe_outer` or inside this function
/// (LLVM may shrink-wrap a prologue after the register read, so the walk may
/// start one frame up). Without frame pointers the register holds anything,
/// and the bounded walk finds nothing that lands in these two functions.
fn frame_pointers_work() -> bool {
    if cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))) {
        return false;
    }
    let top = thread_stack_bounds().1;
    if top == 0 {
        return false;
    }
    let mut found = [MaybeUninit::uninit(); 4];
    let n = std::hint::black_box(probe_outer(&mut found, top));
    let within = |f: *const (), a: usize| a > f as usize && a < f as usize + 512;
    found[..n].iter().any(|a| {
        // SAFETY: the walk wrote the first n elements.
        let a = unsafe { a.assume_init() };
        within(probe_outer as *const (), a) || within(frame_pointers_work as *const (), a)
    })
}

#[inline(never)]
fn probe_outer(found: &mut [MaybeUninit<usize>; 4], top: usize) -> usize {
    let n = probe_inner(found, top);
    std::hint::black_box(n)
}

#[inline(never)]
fn probe_inner(found: &mut [MaybeUninit<usize>; 4], top: usize) -> usize {
    walk_frame_pointers(found, top).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a chain laid out in `mem` (records at the given word indices,
    /// each pointing at the next index, `None` for a garbage pointer).
    fn walk(mem: &mut [usize; 32], chain: &[(usize, usize)], last_next: usize) -> Vec<usize> {
        let base = mem.as_ptr() as usize;
        let addr = |i: usize| base + i * std::mem::size_of::<usize>();
        for (k, &(at, ret)) in chain.iter().enumerate() {
            let next = chain.get(k + 1).map_or(last_next, |&(i, _)| addr(i));
            mem[at] = next;
            mem[at + 1] = ret;
        }
        let top = addr(mem.len());
        let mut buf = [MaybeUninit::uninit(); 8];
        let (n, lane) = walk_chain(addr(chain[0].0), base, top, &mut buf);
        // SAFETY: the walk wrote the first n elements.
        let frames: Vec<usize> = buf[..n]
            .iter()
            .map(|a| unsafe { a.assume_init() })
            .collect();
        assert_eq!(
            finish_hash(lane, n),
            stack_hash(&frames),
            "the walk's hash is the stack's"
        );
        frames
    }

    #[test]
    fn the_walk_follows_records_upwards_and_stops_at_anything_else() {
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        let word = std::mem::size_of::<usize>();
        let chain = [(0, 0x10), (4, 0x20), (8, 0x30)];
        // Ends at a record that would start past the last full record.
        assert_eq!(walk(&mut mem, &chain, base + 31 * word), [0x10, 0x20, 0x30]);
        // A record that ends exactly at the top is read.
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        mem[30] = 0;
        mem[31] = 0x40;
        assert_eq!(
            walk(&mut mem, &chain, base + 30 * word),
            [0x10, 0x20, 0x30, 0x40]
        );
        // The last full record pointing further up, past the top: stop.
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        let high = [(0, 0x10), (4, 0x20), (30, 0x40)];
        assert_eq!(walk(&mut mem, &high, base + 34 * word), [0x10, 0x20, 0x40]);
        // Downwards, overlapping, misaligned, or a zero return address: stop.
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        assert_eq!(walk(&mut mem, &chain, base), [0x10, 0x20, 0x30]);
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        assert_eq!(walk(&mut mem, &chain, base + 9 * word), [0x10, 0x20, 0x30]);
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        assert_eq!(
            walk(&mut mem, &chain, base + 12 * word + 1),
            [0x10, 0x20, 0x30]
        );
        let mut mem = [0usize; 32];
        assert_eq!(walk(&mut mem, &[(0, 0x10), (4, 0)], 0), [0x10]);
    }
}
