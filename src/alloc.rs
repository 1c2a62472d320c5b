//! The global allocator: tikv-jemallocator underneath, counters always,
//! sampled or exact site tracking on top.
//!
//! The unsampled path touches only this thread's own state: a byte
//! countdown and per-thread counters (owner-written atomics, plain loads and
//! stores, no `lock` prefix). An allocation tests nothing but the countdown
//! (which is parked at -1 whenever the thread must take the slow path:
//! sample due, exact mode, new, busy in tracker code, measuring, tearing
//! down), counts, and calls jemalloc. A free reads the thread's mode byte
//! and a lock-free filter of recorded blocks (one global flag while nothing
//! is recorded), counts, and ends in a tail call to jemalloc. No lock, no
//! shared read-modify-write, no allocation and no syscall. Only a sampled
//! block (or every block in exact mode) captures its stack and takes the
//! recorder's lock.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

use tikv_jemallocator::Jemalloc;

use crate::lock::RawLocked;
use crate::recorder::{self, RECORDER};
use crate::stack::{self, MAX_FRAMES, Unwinder};

/// What the allocator tracks.
///
/// Chosen by `LEAKSCOPE_MODE` when the first allocation happens (default
/// [`Mode::Sampled`]), or at run time with [`set_mode`]. A switch affects
/// allocations made from then on: blocks allocated before a switch to
/// [`Mode::Exact`] are not in the recorder, and blocks recorded before a
/// switch away from it stay recorded until they are freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Nothing: plain jemalloc.
    Off,
    /// Per-thread counters of bytes and blocks (exact), no stacks.
    Counters,
    /// Counters, plus a stack for a random sample of blocks (one every
    /// [`sample_bytes`] bytes on average); heap figures are unbiased
    /// estimates.
    Sampled,
    /// Counters, plus a stack for every block: exact heap figures.
    Exact,
}

const MODE_UNINIT: u8 = 0;
const MODE_OFF: u8 = 1;
const MODE_COUNTERS: u8 = 2;
const MODE_SAMPLED: u8 = 3;
const MODE_EXACT: u8 = 4;

/// Whether a mode code is one whose allocations take the fast path
/// (counted, and counted down to the next sample).
#[inline(always)]
const fn counting(code: u8) -> bool {
    code.wrapping_sub(MODE_COUNTERS) < 2
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::Off => MODE_OFF,
            Mode::Counters => MODE_COUNTERS,
            Mode::Sampled => MODE_SAMPLED,
            Mode::Exact => MODE_EXACT,
        }
    }

    fn from_code(code: u8) -> Mode {
        match code {
            MODE_OFF => Mode::Off,
            MODE_COUNTERS => Mode::Counters,
            MODE_EXACT => Mode::Exact,
            _ => Mode::Sampled,
        }
    }

    /// Parses `off`, `counters`, `sampled` or `exact` (as in `LEAKSCOPE_MODE`).
    pub fn parse(text: &str) -> Option<Mode> {
        Self::parse_bytes(text.as_bytes())
    }

    fn parse_bytes(text: &[u8]) -> Option<Mode> {
        match text {
            b"off" => Some(Mode::Off),
            b"counters" => Some(Mode::Counters),
            b"sampled" => Some(Mode::Sampled),
            b"exact" => Some(Mode::Exact),
            _ => None,
        }
    }

    /// The mode's name as `LEAKSCOPE_MODE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Counters => "counters",
            Mode::Sampled => "sampled",
            Mode::Exact => "exact",
        }
    }
}

/// Default mean number of bytes between samples (as jemalloc and Go).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

static MODE: AtomicU8 = AtomicU8::new(MODE_UNINIT);
static SAMPLE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_BYTES);
/// The recorder epoch of the current sample mean.
static SAMPLE_EPOCH: AtomicU8 = AtomicU8::new(1);

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);

/// The mode in force.
pub fn mode() -> Mode {
    ensure_init(MODE_SAMPLED);
    Mode::from_code(MODE.load(Ordering::Relaxed))
}

/// Switches the mode for allocations made from now on (see [`Mode`]): at
/// once on the calling thread, and on every other thread at its next
/// countdown event (after it allocates about [`sample_bytes`] more bytes, or
/// at its next allocation in exact mode).
pub fn set_mode(mode: Mode) {
    ensure_init(MODE_SAMPLED);
    MODE.store(mode.code(), Ordering::Relaxed);
    let _ = THREAD.try_with(|t| t.refresh_fast());
}

/// The mean number of bytes between samples in [`Mode::Sampled`].
pub fn sample_bytes() -> u64 {
    SAMPLE_BYTES.load(Ordering::Relaxed)
}

/// Sets the mean number of bytes between samples (at least 1): at once on
/// the calling thread, at their next sample on others. Blocks sampled before
/// keep the weight of the mean they were sampled with, so estimates stay
/// unbiased.
pub fn set_sample_bytes(bytes: u64) {
    let bytes = bytes.max(1);
    let epoch = recorder::epoch_for_mean(bytes);
    SAMPLE_BYTES.store(bytes, Ordering::Relaxed);
    SAMPLE_EPOCH.store(epoch, Ordering::Relaxed);
    // The calling thread's pending gap was drawn with the old mean: draw
    // it again, so the new mean applies to it at once.
    let _ = THREAD.try_with(|t| {
        if t.state.get() == STATE_LIVE {
            t.set_gap(next_gap(t, bytes));
        }
    });
}

/// leakscope's global allocator: tikv-jemallocator with leak tracking.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
/// # fn main() {}
/// ```
#[derive(Debug, Default)]
pub struct Alloc {
    default_mode: Option<Mode>,
}

impl Alloc {
    /// The allocator, in the mode `LEAKSCOPE_MODE` names (default sampled).
    pub const fn new() -> Self {
        Alloc { default_mode: None }
    }

    /// The allocator with another default mode; `LEAKSCOPE_MODE` still wins.
    pub const fn with_default_mode(mode: Mode) -> Self {
        Alloc {
            default_mode: Some(mode),
        }
    }

    fn default_code(&self) -> u8 {
        match self.default_mode {
            Some(m) => m.code(),
            None => MODE_SAMPLED,
        }
    }
}

// ---------------------------------------------------------------------------
// Per-thread state

/// Counters of one thread (or of threads that have exited). Written only by
/// the owning thread with plain loads and stores; read by anyone.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) alloc_blocks: AtomicU64,
    pub(crate) free_bytes: AtomicU64,
    pub(crate) free_blocks: AtomicU64,
}

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    // Owner-only write: a plain load and store, no locked instruction.
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Counters {
    /// Counts one block of `size` bytes allocated (owner only).
    #[inline(always)]
    fn alloc(&self, size: usize) {
        bump(&self.alloc_bytes, size as u64);
        bump(&self.alloc_blocks, 1);
    }

    /// Counts one block of `size` bytes freed (owner only).
    #[inline(always)]
    fn free(&self, size: usize) {
        bump(&self.free_bytes, size as u64);
        bump(&self.free_blocks, 1);
    }

    const fn new() -> Self {
        Counters {
            alloc_bytes: AtomicU64::new(0),
            alloc_blocks: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            free_blocks: AtomicU64::new(0),
        }
    }

    fn add_shared(&self, other: &Counters) {
        let r = Ordering::Relaxed;
        self.alloc_bytes
            .fetch_add(other.alloc_bytes.load(r), Ordering::Relaxed);
        self.alloc_blocks
            .fetch_add(other.alloc_blocks.load(r), Ordering::Relaxed);
        self.free_bytes
            .fetch_add(other.free_bytes.load(r), Ordering::Relaxed);
        self.free_blocks
            .fetch_add(other.free_blocks.load(r), Ordering::Relaxed);
    }
}

/// The part of a thread's state other threads read: its counters and the
/// registry link.
struct SharedThread {
    counters: Counters,
    next: AtomicPtr<SharedThread>,
}

const STATE_NEW: u8 = 0;
const STATE_LIVE: u8 = 1;
const STATE_DEAD: u8 = 2;
/// Set in `ThreadState::state` while this thread runs tracker code: its
/// allocations then go straight to jemalloc, untracked and uncounted.
const BUSY: u8 = 0x80;

struct ThreadState {
    /// What the fast paths read, one byte: the mode code (counters, sampled,
    /// exact, or off) while this thread is live and not busy; 0 when the
    /// slow path must decide (new, tearing down, busy).
    fast: Cell<u8>,
    /// `STATE_*`, plus [`BUSY`].
    state: Cell<u8>,
    shared: SharedThread,
    /// Bytes until the next countdown event (a sample in sampled mode, and
    /// an update of the global peak estimate and of `fast` in every mode),
    /// while `fast` is counters or sampled; -1 otherwise, so that the
    /// allocation fast path needs to test nothing but this.
    countdown: Cell<i64>,
    /// The countdown while it is parked (`fast` is neither counters nor
    /// sampled).
    parked: Cell<i64>,
    /// This thread's live bytes as last added to the global peak estimate.
    flushed: Cell<i64>,
    rng: Cell<u64>,
    stack_top: Cell<usize>,
    index: Cell<u16>,
    /// The `testing::measure` scope this thread is in (0: none). While in
    /// one, every allocation takes the slow path and is recorded exactly.
    scope: Cell<u32>,
    /// What this thread did in its current scope.
    scope_counts: ScopeCounts,
}

/// What a thread allocated and freed inside a measuring scope.
#[derive(Default)]
pub(crate) struct ScopeCounts {
    pub(crate) alloc_blocks: Cell<u64>,
    pub(crate) alloc_bytes: Cell<u64>,
    pub(crate) free_blocks: Cell<u64>,
    pub(crate) free_bytes: Cell<u64>,
    /// Allocated minus freed bytes so far, and its maximum.
    pub(crate) net: Cell<i64>,
    pub(crate) peak: Cell<i64>,
}

impl ScopeCounts {
    const fn new() -> Self {
        ScopeCounts {
            alloc_blocks: Cell::new(0),
            alloc_bytes: Cell::new(0),
            free_blocks: Cell::new(0),
            free_bytes: Cell::new(0),
            net: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    fn alloc(&self, size: usize) {
        self.alloc_blocks.set(self.alloc_blocks.get() + 1);
        self.alloc_bytes.set(self.alloc_bytes.get() + size as u64);
        let net = self.net.get() + size as i64;
        self.net.set(net);
        if net > self.peak.get() {
            self.peak.set(net);
        }
    }

    fn free(&self, size: usize) {
        self.free_blocks.set(self.free_blocks.get() + 1);
        self.free_bytes.set(self.free_bytes.get() + size as u64);
        self.net.set(self.net.get() - size as i64);
    }

    /// The figures: allocated blocks, bytes, freed blocks, bytes, peak net
    /// bytes.
    fn figures(&self) -> [u64; 5] {
        [
            self.alloc_blocks.get(),
            self.alloc_bytes.get(),
            self.free_blocks.get(),
            self.free_bytes.get(),
            self.peak.get().max(0) as u64,
        ]
    }

    /// Takes the figures, leaving zeros.
    pub(crate) fn take(&self) -> [u64; 5] {
        let out = self.figures();
        for c in [
            &self.alloc_blocks,
            &self.alloc_bytes,
            &self.free_blocks,
            &self.free_bytes,
        ] {
            c.set(0);
        }
        self.net.set(0);
        self.peak.set(0);
        out
    }

    /// Restores figures taken earlier, adding what happened since (a nested
    /// scope's work counts in the outer one too).
    pub(crate) fn merge(&self, outer: [u64; 5], outer_net: i64) {
        let inner_peak = self.peak.get();
        self.alloc_blocks.set(self.alloc_blocks.get() + outer[0]);
        self.alloc_bytes.set(self.alloc_bytes.get() + outer[1]);
        self.free_blocks.set(self.free_blocks.get() + outer[2]);
        self.free_bytes.set(self.free_bytes.get() + outer[3]);
        self.net.set(self.net.get() + outer_net);
        self.peak.set((outer[4] as i64).max(outer_net + inner_peak));
    }
}

impl ThreadState {
    const fn new() -> Self {
        ThreadState {
            fast: Cell::new(0),
            state: Cell::new(STATE_NEW),
            shared: SharedThread {
                counters: Counters::new(),
                next: AtomicPtr::new(ptr::null_mut()),
            },
            countdown: Cell::new(-1),
            parked: Cell::new(0),
            flushed: Cell::new(0),
            rng: Cell::new(0),
            stack_top: Cell::new(0),
            index: Cell::new(0),
            scope: Cell::new(0),
            scope_counts: ScopeCounts::new(),
        }
    }

    fn is_busy(&self) -> bool {
        self.state.get() & BUSY != 0
    }

    /// Re-reads the global mode into `fast`.
    fn refresh_fast(&self) {
        let fast = if self.state.get() == STATE_LIVE && self.scope.get() == 0 {
            MODE.load(Ordering::Relaxed)
        } else {
            0
        };
        self.set_fast(fast);
    }

    /// Sets `fast`, parking the countdown (at -1) whenever `fast` is not a
    /// counting mode and restoring it when it is again.
    fn set_fast(&self, fast: u8) {
        match (counting(self.fast.get()), counting(fast)) {
            (true, false) => self.parked.set(self.countdown.replace(-1)),
            (false, true) => self.countdown.set(self.parked.get()),
            _ => {}
        }
        self.fast.set(fast);
    }

    /// Sets the bytes until the next countdown event, parked or not.
    fn set_gap(&self, gap: i64) {
        if counting(self.fast.get()) {
            self.countdown.set(gap);
        } else {
            self.parked.set(gap);
        }
    }

    /// The allocation fast path's whole test: in counters or sampled mode
    /// with the countdown not run out (a parked countdown is -1), counts
    /// the block and says so.
    #[inline(always)]
    fn admit_alloc(&self, size: usize) -> Admit {
        let left = self.countdown.get().wrapping_sub(size as i64);
        if left >= 0 {
            self.countdown.set(left);
            self.shared.counters.alloc(size);
            Admit::Counted
        } else if self.fast.get() == MODE_OFF && MODE.load(Ordering::Relaxed) == MODE_OFF {
            Admit::Plain
        } else {
            Admit::Slow
        }
    }

    /// The realloc fast path's test (it counts after the call, with
    /// [`ThreadState::count_realloc`]).
    #[inline(always)]
    fn admit_realloc(&self, ptr: *mut u8, new_size: usize) -> bool {
        self.countdown.get() >= new_size as i64 && !recorder::maybe_recorded(ptr as usize)
    }

    /// Counts a realloc the fast path took: the old size freed, the new
    /// one allocated and counted down (without running the countdown out,
    /// as `admit_realloc` checked).
    #[inline(always)]
    fn count_realloc(&self, old_size: usize, new_size: usize) {
        self.shared.counters.free(old_size);
        self.shared.counters.alloc(new_size);
        self.countdown.set(self.countdown.get() - new_size as i64);
    }

    /// The free fast path's whole test: in counters or sampled mode, a
    /// block the recorder cannot hold is counted here; off, it is let
    /// through uncounted.
    #[inline(always)]
    fn admit_free(&self, ptr: *mut u8, size: usize) -> Admit {
        let fast = self.fast.get();
        if recorder::maybe_recorded(ptr as usize) {
            Admit::Slow
        } else if counting(fast) {
            self.shared.counters.free(size);
            Admit::Counted
        } else if fast == MODE_OFF && MODE.load(Ordering::Relaxed) == MODE_OFF {
            Admit::Plain
        } else {
            Admit::Slow
        }
    }

    /// Marks the thread busy; returns the state to restore with `leave`.
    fn enter(&self) -> u8 {
        let prev = self.state.get();
        self.state.set(prev | BUSY);
        self.set_fast(0);
        prev
    }

    fn leave(&self, prev: u8) {
        self.state.set(prev);
        self.refresh_fast();
    }
}

/// What a fast path decided.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Counted already: hand the call to jemalloc.
    Counted,
    /// Off: hand the call to jemalloc, uncounted.
    Plain,
    /// The slow path decides (sample due, exact mode, a recorded block,
    /// a thread that is new, busy, measuring or tearing down).
    Slow,
}

thread_local! {
    static THREAD: ThreadState = const { ThreadState::new() };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Unregisters the thread's counters when the thread exits.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        THREAD.with(|t| {
            let me = &t.shared as *const SharedThread as *mut SharedThread;
            let mut reg = REGISTRY.lock();
            reg.unlink(me);
            EXITED.add_shared(&t.shared.counters);
            flush_live(t);
            t.state.set(STATE_DEAD | (t.state.get() & BUSY));
            t.set_fast(0);
        });
    }
}

struct Registry {
    head: *mut SharedThread,
}

// SAFETY: the pointers are to thread-locals that unlink themselves under the
// registry lock before their thread's storage goes away.
unsafe impl Send for Registry {}

impl Registry {
    fn unlink(&mut self, me: *mut SharedThread) {
        let mut link: *const AtomicPtr<SharedThread> = ptr::null();
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: registered entries are live while the lock is held.
            let next = unsafe { (*cur).next.load(Ordering::Relaxed) };
            if cur == me {
                if link.is_null() {
                    self.head = next;
                } else {
                    // SAFETY: as above.
                    unsafe { (*link).store(next, Ordering::Relaxed) };
                }
                return;
            }
            // SAFETY: as above.
            link = unsafe { &(*cur).next };
            cur = next;
        }
    }

    fn for_each(&self, mut f: impl FnMut(&Counters)) {
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: registered entries are live while the lock is held.
            unsafe {
                f(&(*cur).counters);
                cur = (*cur).next.load(Ordering::Relaxed);
            }
        }
    }
}

static REGISTRY: RawLocked<Registry> = RawLocked::new(Registry {
    head: ptr::null_mut(),
});
/// Counters of threads that have exited, and of allocations made during a
/// thread's teardown after its counters were unregistered.
static EXITED: Counters = Counters::new();
static THREAD_COUNT: AtomicU32 = AtomicU32::new(0);

/// Live bytes summed over threads as of each thread's last countdown event,
/// and the peak of that sum: the peak estimate outside exact mode.
static FLUSHED_LIVE: AtomicI64 = AtomicI64::new(0);
static FLUSHED_PEAK: AtomicI64 = AtomicI64::new(0);

/// Adds this thread's change in live bytes since its last event to the
/// global sum and raises the peak. Runs once every ~mean-gap bytes
/// allocated, so the peak estimate misses at most about that much per thread.
#[cold]
fn flush_live(t: &ThreadState) {
    let c = &t.shared.counters;
    let r = Ordering::Relaxed;
    let live = c.alloc_bytes.load(r).wrapping_sub(c.free_bytes.load(r)) as i64;
    let d = live.wrapping_sub(t.flushed.replace(live));
    let sum = FLUSHED_LIVE.fetch_add(d, r).wrapping_add(d);
    FLUSHED_PEAK.fetch_max(sum, r);
}

/// Sums of all counters: (counters, registered thread count).
pub(crate) fn counters_sum() -> (Counters, usize) {
    let sum = Counters::new();
    let mut threads = 0;
    untracked(|| {
        let reg = REGISTRY.lock();
        reg.for_each(|c| {
            sum.add_shared(c);
            threads += 1;
        });
    });
    sum.add_shared(&EXITED);
    (sum, threads)
}

/// The counters-mode estimate of the peak of live bytes.
pub(crate) fn flushed_peak() -> i64 {
    FLUSHED_PEAK.load(Ordering::Relaxed)
}

/// Runs `f` with this thread's allocations untracked (tracker internals:
/// everything `f` allocates must also be freed inside such a call).
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(u8);
    impl Drop for Reset {
        fn drop(&mut self) {
            let was = self.0;
            let _ = THREAD.try_with(|t| t.leave(was));
        }
    }
    let was = THREAD.with(|t| t.enter());
    let _reset = Reset(was);
    f()
}

// ---------------------------------------------------------------------------
// Initialisation

fn getenv(name: &'static [u8]) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv does not allocate; the value
    // lives as long as the environment is not modified, and we copy nothing
    // out of it beyond this call's use.
    unsafe {
        let v = libc::getenv(name.as_ptr().cast());
        if v.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(v).to_bytes())
        }
    }
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}

/// Writes a warning to stderr without allocating (this runs inside the
/// allocator, possibly before `main`).
fn warn(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: writes a valid buffer to fd 2; errors are ignored.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

#[inline(always)]
fn ensure_init(default: u8) {
    if INIT.load(Ordering::Acquire) != INIT_DONE {
        init(default);
    }
}

#[cold]
#[inline(never)]
fn init(default: u8) {
    if INIT
        .compare_exchange(
            INIT_NONE,
            INIT_RUNNING,
            Ordering::Acquire,
            Ordering::Acquire,
        )
        .is_err()
    {
        while INIT.load(Ordering::Acquire) != INIT_DONE {
            std::hint::spin_loop();
        }
        return;
    }
    recorder::start_clock();
    let mut mode = default;
    if let Some(v) = getenv(b"LEAKSCOPE_MODE\0") {
        match Mode::parse_bytes(v) {
            Some(m) => mode = m.code(),
            None => warn(&[
                b"leakscope: LEAKSCOPE_MODE=",
                v,
                b" is not one of off|counters|sampled|exact; using the default\n",
            ]),
        }
    }
    let mut mean = DEFAULT_SAMPLE_BYTES;
    if let Some(v) = getenv(b"LEAKSCOPE_SAMPLE_BYTES\0") {
        match parse_u64(v) {
            Some(n) if n > 0 => mean = n,
            _ => warn(&[
                b"leakscope: LEAKSCOPE_SAMPLE_BYTES=",
                v,
                b" is not a positive whole number; using 524288\n",
            ]),
        }
    }
    if let Some(v) = getenv(b"LEAKSCOPE_MAX_FRAMES\0") {
        match parse_u64(v) {
            Some(n) if n > 0 => stack::set_max_frames(n as usize),
            _ => warn(&[
                b"leakscope: LEAKSCOPE_MAX_FRAMES=",
                v,
                b" is not a positive whole number; using 32\n",
            ]),
        }
    }
    match getenv(b"LEAKSCOPE_UNWIND\0") {
        Some(b"fp") => stack::force_unwinder(Unwinder::FramePointers),
        Some(b"backtrace") => stack::force_unwinder(Unwinder::Backtrace),
        Some(v) => warn(&[
            b"leakscope: LEAKSCOPE_UNWIND=",
            v,
            b" is not fp or backtrace; probing\n",
        ]),
        None => {}
    }
    SAMPLE_BYTES.store(mean, Ordering::Relaxed);
    SAMPLE_EPOCH.store(recorder::epoch_for_mean(mean), Ordering::Relaxed);
    if getenv(b"LEAKSCOPE_DHAT_OUT\0").is_some() {
        // The hook reads the path itself at exit: nothing may allocate here.
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(crate::export::dhat::write_at_exit) };
    }
    // SAFETY: registering plain extern "C" functions; glibc's registration
    // uses its own malloc, not this allocator.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    MODE.store(mode, Ordering::Relaxed);
    INIT.store(INIT_DONE, Ordering::Release);
}

extern "C" fn fork_prepare() {
    REGISTRY.lock_for_fork();
    RECORDER.lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: this thread took both locks in fork_prepare.
    unsafe {
        RECORDER.force_unlock();
        REGISTRY.force_unlock();
    }
}

extern "C" fn fork_child() {
    // The child has one thread: this one. Other threads' counters are folded
    // into EXITED (their thread-locals are gone with them) and the locks,
    // possibly held by threads that no longer exist, are reset.
    // SAFETY: only this thread exists in the child.
    unsafe {
        RECORDER.reset_in_child();
        let me = THREAD
            .try_with(|t| &t.shared as *const SharedThread as *mut SharedThread)
            .unwrap_or(ptr::null_mut());
        let reg = REGISTRY.get_unchecked();
        let mut cur = reg.head;
        let mut kept = false;
        while !cur.is_null() {
            let next = (*cur).next.load(Ordering::Relaxed);
            if cur == me {
                kept = true;
            } else {
                EXITED.add_shared(&(*cur).counters);
            }
            cur = next;
        }
        if kept {
            (*me).next.store(ptr::null_mut(), Ordering::Relaxed);
            reg.head = me;
        } else {
            reg.head = ptr::null_mut();
        }
        REGISTRY.reset_in_child();
    }
}

// ---------------------------------------------------------------------------
// The allocation paths

/// Draws an exponential gap with the given mean (xorshift64*).
fn next_gap(t: &ThreadState, mean: u64) -> i64 {
    let mut x = t.rng.get();
    if x == 0 {
        x = (t as *const ThreadState as u64) ^ 0x2545_F491_4F6C_DD1D ^ recorder::now_tick() as u64;
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t.rng.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    // Uniform in (0, 1]: never 0, so the logarithm is finite.
    let u = ((r >> 11) + 1) as f64 / (1u64 << 53) as f64;
    (-u.ln() * mean as f64).min(i64::MAX as f64 / 2.0) as i64
}

#[cold]
#[inline(never)]
fn register_thread(t: &ThreadState) {
    t.index
        .set(THREAD_COUNT.fetch_add(1, Ordering::Relaxed) as u16);
    {
        let me = &t.shared as *const SharedThread as *mut SharedThread;
        let mut reg = REGISTRY.lock();
        t.shared.next.store(reg.head, Ordering::Relaxed);
        reg.head = me;
    }
    t.set_gap(next_gap(t, sample_bytes()));
    t.state.set(STATE_LIVE);
    t.refresh_fast();
    // Registering the exit guard may allocate (through the normal path now
    // that this thread is live); a thread already tearing down cannot
    // register, and its counters then stay registered (still correct).
    let _ = EXIT_GUARD.try_with(|_| ());
}

/// Counts an allocation of a thread that is not live: tearing down (its
/// counters already folded into EXITED) or not yet registered.
#[cold]
fn count_shared_alloc(size: usize) {
    EXITED.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
    EXITED.alloc_blocks.fetch_add(1, Ordering::Relaxed);
}

#[cold]
fn count_shared_free(size: usize) {
    EXITED.free_bytes.fetch_add(size as u64, Ordering::Relaxed);
    EXITED.free_blocks.fetch_add(1, Ordering::Relaxed);
}

/// Accounts a new block (`ptr` non-null) that the fast path did not take:
/// counts it, and records it in exact mode or when the countdown runs out.
#[inline(always)]
fn on_alloc(t: &ThreadState, ptr: *mut u8, size: usize, default: u8) {
    let fast = t.fast.get();
    if fast <= MODE_OFF {
        if fast == MODE_OFF && MODE.load(Ordering::Relaxed) == MODE_OFF {
            return;
        }
        return on_alloc_slow(t, ptr, size, default);
    }
    t.shared.counters.alloc(size);
    if fast == MODE_EXACT {
        return record_new(t, ptr, size, 0);
    }
    let left = t.countdown.get() - size as i64;
    t.countdown.set(left);
    if left < 0 {
        countdown_event(t, ptr, size);
    }
}

/// The countdown ran out: update the peak estimate and this thread's view
/// of the mode, draw the next gap, and in sampled mode record this block.
/// The gaps are exponential in every mode, so a switch to sampled mode
/// starts unbiased.
#[cold]
#[inline(never)]
fn countdown_event(t: &ThreadState, ptr: *mut u8, size: usize) {
    flush_live(t);
    t.set_gap(next_gap(t, sample_bytes()));
    t.refresh_fast();
    match t.fast.get() {
        MODE_SAMPLED => record_new(t, ptr, size, SAMPLE_EPOCH.load(Ordering::Relaxed)),
        MODE_EXACT => record_new(t, ptr, size, 0),
        _ => {}
    }
}

#[cold]
#[inline(never)]
fn on_alloc_slow(t: &ThreadState, ptr: *mut u8, size: usize, default: u8) {
    let state = t.state.get();
    if state & BUSY != 0 {
        return;
    }
    if state == STATE_LIVE && t.scope.get() != 0 {
        count_alloc(t, size);
        return record_new(t, ptr, size, 0);
    }
    let mode = current_mode(default);
    if state == STATE_LIVE {
        // Off here, or switched on elsewhere since.
        t.refresh_fast();
        if mode > MODE_OFF {
            on_alloc(t, ptr, size, default);
        }
        return;
    }
    if mode <= MODE_OFF {
        if state == STATE_NEW {
            // Stay unregistered while off, but take the cheap off path.
            t.set_fast(MODE_OFF);
        }
        return;
    }
    if state == STATE_NEW {
        register_thread(t);
        return on_alloc(t, ptr, size, default);
    }
    count_shared_alloc(size);
    if mode == MODE_EXACT {
        record_new(t, ptr, size, 0);
    }
}

/// Captures the stack and records a block (sampled, or every block in
/// exact mode).
#[inline(never)]
fn record_new(t: &ThreadState, ptr: *mut u8, size: usize, epoch: u8) {
    let prev = t.enter();
    if t.stack_top.get() == 0 {
        t.stack_top.set(stack::thread_stack_bounds().1.max(1));
    }
    let mut frames = [MaybeUninit::<usize>::uninit(); MAX_FRAMES];
    let top = t.stack_top.get();
    let captured = stack::capture(&mut frames, if top > 1 { top } else { 0 });
    let hash = recorder::stack_hash(captured);
    let now = recorder::now_tick();
    RECORDER.lock().record_alloc(
        recorder::NewBlock {
            addr: ptr as usize,
            size,
            thread: t.index.get(),
            epoch,
            scope: t.scope.get(),
        },
        captured,
        hash,
        now,
    );
    t.leave(prev);
}

/// Accounts a free before the block goes back to jemalloc (so that its
/// address cannot be reused and recorded by another thread first).
#[inline(always)]
fn on_free(t: &ThreadState, ptr: *mut u8, size: usize) {
    let fast = t.fast.get();
    if fast > MODE_OFF {
        t.shared.counters.free(size);
        if (fast == MODE_EXACT && recorder::HAS_LIVE.load(Ordering::Relaxed))
            || recorder::maybe_recorded(ptr as usize)
        {
            forget(t, ptr);
        }
    } else if fast != MODE_OFF
        || MODE.load(Ordering::Relaxed) != MODE_OFF
        || recorder::maybe_recorded(ptr as usize)
    {
        // Not counting right now (new, tearing down, busy or measuring), or
        // off with a recorded block or a switch since: the slow path decides.
        on_free_slow(t, ptr, size);
    }
}

#[cold]
#[inline(never)]
fn on_free_slow(t: &ThreadState, ptr: *mut u8, size: usize) {
    let state = t.state.get();
    if state & BUSY != 0 {
        return;
    }
    let mode = MODE.load(Ordering::Relaxed);
    if state == STATE_LIVE && t.scope.get() != 0 {
        count_free(t, size);
        if may_be_recorded(ptr, mode) {
            forget(t, ptr);
        }
        return;
    }
    if state == STATE_LIVE {
        t.refresh_fast();
        if mode > MODE_OFF {
            return on_free(t, ptr, size);
        }
    } else if mode > MODE_OFF {
        count_shared_free(size);
    }
    if may_be_recorded(ptr, mode) {
        forget(t, ptr);
    }
}

/// Counts a free in this thread's counters (the thread is not busy), and in
/// its measuring scope.
#[inline(always)]
fn count_free(t: &ThreadState, size: usize) {
    if t.state.get() == STATE_LIVE {
        t.shared.counters.free(size);
        if t.scope.get() != 0 {
            t.scope_counts.free(size);
        }
    } else {
        count_shared_free(size);
    }
}

/// Counts an allocation in this thread's counters (the thread is live and
/// not busy), and in its measuring scope.
#[inline(always)]
fn count_alloc(t: &ThreadState, size: usize) {
    if t.state.get() == STATE_LIVE {
        t.shared.counters.alloc(size);
        if t.scope.get() != 0 {
            t.scope_counts.alloc(size);
        }
    } else {
        count_shared_alloc(size);
    }
}

/// Whether a block may be in the recorder: in exact mode anything may be
/// (while anything is recorded); otherwise the filter decides.
#[inline(always)]
fn may_be_recorded(ptr: *mut u8, mode: u8) -> bool {
    (mode == MODE_EXACT && recorder::HAS_LIVE.load(Ordering::Relaxed))
        || recorder::maybe_recorded(ptr as usize)
}

#[cold]
#[inline(never)]
fn forget(t: &ThreadState, ptr: *mut u8) {
    let prev = t.enter();
    let now = recorder::now_tick();
    RECORDER.lock().record_free(ptr as usize, now);
    t.leave(prev);
}

#[inline(always)]
fn current_mode(default: u8) -> u8 {
    let m = MODE.load(Ordering::Relaxed);
    if m == MODE_UNINIT {
        init(default);
        return MODE.load(Ordering::Relaxed);
    }
    m
}

// SAFETY: every method forwards to jemalloc with the caller's arguments and
// returns its result unchanged; the bookkeeping never touches the blocks.
unsafe impl GlobalAlloc for Alloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.alloc_with(layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.alloc_with(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Both paths end in a tail call: the fast one saves no registers.
        let admit = THREAD.try_with(|t| t.admit_free(ptr, layout.size()));
        if matches!(admit, Ok(Admit::Counted | Admit::Plain)) {
            // SAFETY: forwarded contract.
            unsafe { Jemalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { dealloc_slow(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Fast path: a counting mode, a block the recorder cannot hold, and
        // a countdown that the new size does not run out. Counted after the
        // call, so a failed realloc leaves the counts as they were.
        let fast = THREAD
            .try_with(|t| t.admit_realloc(ptr, new_size))
            .unwrap_or(false);
        if !fast {
            // SAFETY: forwarded contract.
            return unsafe { self.realloc_slow(ptr, layout, new_size) };
        }
        // SAFETY: forwarded contract.
        let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let _ = THREAD.try_with(|t| t.count_realloc(layout.size(), new_size));
        }
        new
    }
}

impl Alloc {
    /// `alloc` and `alloc_zeroed`. The fast path counts first and then
    /// calls jemalloc, taking the count back in the rare case it fails.
    #[inline(always)]
    unsafe fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let admit = THREAD
            .try_with(|t| t.admit_alloc(layout.size()))
            .unwrap_or(Admit::Slow);
        if admit == Admit::Slow {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_slow(layout, zeroed) };
        }
        let size = layout.size();
        // SAFETY: forwarded contract.
        let p = unsafe { jemalloc_alloc(layout, zeroed) };
        if p.is_null() {
            uncount_alloc(size);
        }
        p
    }

    /// An allocation the fast path did not take: allocated, then accounted.
    ///
    /// # Safety
    /// `GlobalAlloc::alloc`'s contract.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { jemalloc_alloc(layout, zeroed) };
        if !p.is_null() {
            let _ = THREAD.try_with(|t| on_alloc(t, p, layout.size(), self.default_code()));
        }
        p
    }

    /// A realloc the fast path did not take.
    ///
    /// # Safety
    /// `GlobalAlloc::realloc`'s contract.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_slow(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let mode = current_mode(self.default_code());
        let recorded = may_be_recorded(ptr, mode);
        let tracked = THREAD
            .try_with(|t| !t.is_busy() && (mode > MODE_OFF || recorded || t.scope.get() != 0))
            .unwrap_or(false);
        if !tracked {
            // SAFETY: forwarded contract.
            return unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        }
        THREAD.with(|t| {
            if recorded {
                // A recorded block's record is taken out before the realloc
                // (so its old address, once jemalloc frees it, can be handed
                // out and recorded by another thread without a clash) and put
                // back after, without holding the lock during the copy.
                let prev = t.enter();
                let taken = RECORDER.lock().take_for_realloc(ptr as usize);
                if let Some(taken) = taken {
                    // SAFETY: forwarded contract.
                    let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
                    let now = recorder::now_tick();
                    RECORDER.lock().finish_realloc(
                        taken,
                        ptr as usize,
                        new as usize,
                        new_size,
                        now,
                        t.scope.get(),
                    );
                    t.leave(prev);
                    if !new.is_null() && (mode > MODE_OFF || t.scope.get() != 0) {
                        count_free(t, layout.size());
                        count_alloc(t, new_size);
                    }
                    return new;
                }
                t.leave(prev);
            }
            // SAFETY: forwarded contract.
            let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
            // A failed realloc leaves the old block and its accounting
            // untouched; a successful one frees the old size and allocates
            // the new (which may be sampled, at this stack).
            if !new.is_null() && (mode > MODE_OFF || t.scope.get() != 0) {
                count_free(t, layout.size());
                on_alloc(t, new, new_size, self.default_code());
            }
            new
        })
    }
}

/// Takes back what [`ThreadState::admit_alloc`] counted for an allocation
/// that failed (if it counted it: the thread is in a counting mode, which
/// the call to jemalloc cannot have changed).
#[cold]
#[inline(never)]
fn uncount_alloc(size: usize) {
    let _ = THREAD.try_with(|t| {
        if counting(t.fast.get()) {
            let c = &t.shared.counters;
            bump(&c.alloc_bytes, (size as u64).wrapping_neg());
            bump(&c.alloc_blocks, u64::MAX);
            t.countdown.set(t.countdown.get() + size as i64);
        }
    });
}

/// jemalloc's `alloc` or `alloc_zeroed`.
///
/// # Safety
/// `GlobalAlloc::alloc`'s contract.
#[inline(always)]
unsafe fn jemalloc_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        if zeroed {
            Jemalloc.alloc_zeroed(layout)
        } else {
            Jemalloc.alloc(layout)
        }
    }
}

/// A free the fast path did not take: accounted before jemalloc gets the
/// block (so that its address cannot be reused and recorded by another
/// thread first).
///
/// # Safety
/// `GlobalAlloc::dealloc`'s contract.
#[cold]
#[inline(never)]
unsafe fn dealloc_slow(ptr: *mut u8, layout: Layout) {
    if THREAD.try_with(|t| on_free(t, ptr, layout.size())).is_err()
        && recorder::maybe_recorded(ptr as usize)
    {
        // No thread-local storage at all (cannot happen on Linux with
        // const thread-locals, but never lose a record).
        RECORDER
            .lock()
            .record_free(ptr as usize, recorder::now_tick());
    }
    // SAFETY: forwarded contract.
    unsafe { Jemalloc.dealloc(ptr, layout) }
}

/// Enters a measuring scope on this thread (see `testing::measure`): from
/// now on every allocation of this thread is counted in the scope and
/// recorded exactly with the scope's id. Returns what to pass to
/// [`exit_scope`]. Registers the thread if needed, whatever the mode.
pub(crate) fn enter_scope(id: u32) -> (u32, [u64; 5], i64) {
    ensure_init(MODE_SAMPLED);
    THREAD.with(|t| {
        if t.state.get() == STATE_NEW {
            register_thread(t);
        }
        let outer_net = t.scope_counts.net.get();
        let outer = t.scope_counts.take();
        let prev = t.scope.replace(id);
        t.refresh_fast();
        (prev, outer, outer_net)
    })
}

/// Leaves the scope entered by [`enter_scope`]: returns its figures
/// (allocated blocks, bytes, freed blocks, bytes, peak net bytes) and
/// restores the outer scope, which also counts them.
pub(crate) fn exit_scope(saved: (u32, [u64; 5], i64)) -> [u64; 5] {
    THREAD.with(|t| {
        let (prev, outer, outer_net) = saved;
        let inner = t.scope_counts.figures();
        if prev != 0 {
            t.scope_counts.merge(outer, outer_net);
        } else {
            t.scope_counts.take();
        }
        t.scope.set(prev);
        t.refresh_fast();
        inner
    })
}

/// Leaves a scope entered by [`enter_scope`] as if it never happened: the
/// outer scope's figures are restored untouched.
pub(crate) fn discard_scope(saved: (u32, [u64; 5], i64)) {
    THREAD.with(|t| {
        let (prev, outer, outer_net) = saved;
        t.scope_counts.take();
        if prev != 0 {
            t.scope_counts.merge(outer, outer_net);
        }
        t.scope.set(prev);
        t.refresh_fast();
    })
}

/// Whether this thread's allocations reach leakscope: the thread is
/// registered and its counters move when it allocates.
pub(crate) fn thread_alloc_blocks() -> u64 {
    THREAD.with(|t| t.shared.counters.alloc_blocks.load(Ordering::Relaxed))
}
