//! Each thread's own state: its counters, its byte countdown to the next
//! sample, its mode byte (what the fast paths read), and its measuring
//! scope. Only the owning thread writes it.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::recorder;
use super::registry::{EXITED, REGISTRY, SharedThread, THREAD_COUNT, flush_live};
use super::settings::{MODE, MODE_OFF, counting, sample_bytes};
use crate::sys::clock::now_tick;

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
pub(super) fn bump(c: &AtomicU64, n: u64) {
    // Owner-only write: a plain load and store, no locked instruction.
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Counters {
    /// Counts one block of `size` bytes allocated (owner only).
    #[inline(always)]
    pub(super) fn alloc(&self, size: usize) {
        bump(&self.alloc_bytes, size as u64);
        bump(&self.alloc_blocks, 1);
    }

    /// Counts one block of `size` bytes freed (owner only).
    #[inline(always)]
    pub(super) fn free(&self, size: usize) {
        bump(&self.free_bytes, size as u64);
        bump(&self.free_blocks, 1);
    }

    pub(super) const fn new() -> Self {
        Counters {
            alloc_bytes: AtomicU64::new(0),
            alloc_blocks: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            free_blocks: AtomicU64::new(0),
        }
    }

    pub(super) fn add_shared(&self, other: &Counters) {
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

pub(super) const STATE_NEW: u8 = 0;
pub(super) const STATE_LIVE: u8 = 1;
pub(super) const STATE_DEAD: u8 = 2;
/// Set in `ThreadState::state` while this thread runs tracker code: its
/// allocations then go straight to jemalloc, untracked and uncounted.
pub(super) const BUSY: u8 = 0x80;
/// Set in `ThreadState::state` on leakscope's own threads (the console's,
/// the HTTP endpoint's, the watch's): what they allocate is leakscope's own
/// memory, counted apart and never recorded, unless they run the program's
/// code (see [`as_program`]).
pub(super) const OWN: u8 = 0x40;

pub(super) struct ThreadState {
    /// What the fast paths read, one byte: the mode code (counters, sampled,
    /// exact, or off) while this thread is live and not busy; 0 when the
    /// slow path must decide (new, tearing down, busy).
    pub(super) fast: Cell<u8>,
    /// `STATE_*`, plus [`BUSY`].
    pub(super) state: Cell<u8>,
    pub(super) shared: SharedThread,
    /// Bytes until the next countdown event (a sample in sampled mode, and
    /// an update of the global peak estimate and of `fast` in every mode),
    /// while `fast` is counters or sampled; -1 otherwise, so that the
    /// allocation fast path needs to test nothing but this.
    pub(super) countdown: Cell<i64>,
    /// The countdown while it is parked (`fast` is neither counters nor
    /// sampled).
    pub(super) parked: Cell<i64>,
    /// The rest of the current gap beyond the countdown (parked or not):
    /// the countdown holds at most [`COUNTDOWN_CAP`] bytes of it, so that
    /// no allocation the fast path admits is larger than that.
    pub(super) reserve: Cell<i64>,
    /// This thread's live bytes as last added to the global peak estimate.
    pub(super) flushed: Cell<i64>,
    pub(super) rng: Cell<u64>,
    pub(super) stack_top: Cell<usize>,
    pub(super) index: Cell<u32>,
    /// The recorder lane this thread records in (0: none of its own yet).
    pub(super) lane: Cell<u32>,
    /// The `testing::measure` scope this thread is in (0: none). While in
    /// one, every allocation takes the slow path and is recorded exactly.
    pub(super) scope: Cell<u32>,
    /// What this thread did in its current scope.
    pub(super) scope_counts: ScopeCounts,
}

/// What a thread allocated and freed in a measuring scope, as read out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScopeFigures {
    /// Blocks allocated.
    pub(crate) alloc_blocks: u64,
    /// Bytes allocated.
    pub(crate) alloc_bytes: u64,
    /// Blocks freed.
    pub(crate) free_blocks: u64,
    /// Bytes freed.
    pub(crate) free_bytes: u64,
    /// The peak of allocated minus freed bytes.
    pub(crate) peak_bytes: u64,
}

/// What a thread allocated and freed inside a measuring scope.
#[derive(Default)]
pub(super) struct ScopeCounts {
    alloc_blocks: Cell<u64>,
    alloc_bytes: Cell<u64>,
    free_blocks: Cell<u64>,
    free_bytes: Cell<u64>,
    /// Allocated minus freed bytes so far, and its maximum.
    pub(super) net: Cell<i64>,
    peak: Cell<i64>,
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

    pub(super) fn alloc(&self, size: usize) {
        self.alloc_blocks.set(self.alloc_blocks.get() + 1);
        self.alloc_bytes.set(self.alloc_bytes.get() + size as u64);
        let net = self.net.get() + size as i64;
        self.net.set(net);
        if net > self.peak.get() {
            self.peak.set(net);
        }
    }

    pub(super) fn free(&self, size: usize) {
        self.free_blocks.set(self.free_blocks.get() + 1);
        self.free_bytes.set(self.free_bytes.get() + size as u64);
        self.net.set(self.net.get() - size as i64);
    }

    /// The figures so far.
    pub(super) fn figures(&self) -> ScopeFigures {
        ScopeFigures {
            alloc_blocks: self.alloc_blocks.get(),
            alloc_bytes: self.alloc_bytes.get(),
            free_blocks: self.free_blocks.get(),
            free_bytes: self.free_bytes.get(),
            peak_bytes: self.peak.get().max(0) as u64,
        }
    }

    /// Takes the figures, leaving zeros.
    pub(super) fn take(&self) -> ScopeFigures {
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
    pub(super) fn merge(&self, outer: ScopeFigures, outer_net: i64) {
        let inner_peak = self.peak.get();
        self.alloc_blocks
            .set(self.alloc_blocks.get() + outer.alloc_blocks);
        self.alloc_bytes
            .set(self.alloc_bytes.get() + outer.alloc_bytes);
        self.free_blocks
            .set(self.free_blocks.get() + outer.free_blocks);
        self.free_bytes
            .set(self.free_bytes.get() + outer.free_bytes);
        self.net.set(self.net.get() + outer_net);
        self.peak
            .set((outer.peak_bytes as i64).max(outer_net + inner_peak));
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
                index: AtomicU32::new(0),
                os_id: AtomicU32::new(0),
            },
            countdown: Cell::new(-1),
            parked: Cell::new(0),
            reserve: Cell::new(0),
            flushed: Cell::new(0),
            rng: Cell::new(0),
            stack_top: Cell::new(0),
            index: Cell::new(0),
            lane: Cell::new(0),
            scope: Cell::new(0),
            scope_counts: ScopeCounts::new(),
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        self.state.get() & BUSY != 0
    }

    /// Whether what this thread allocates now is leakscope's own: it runs
    /// tracker code, or it is one of leakscope's own threads.
    pub(super) fn is_own(&self) -> bool {
        self.state.get() & (BUSY | OWN) != 0
    }

    /// Sets or clears [`OWN`], keeping the rest of the state.
    fn set_own(&self, own: bool) {
        let s = self.state.get();
        self.state.set(if own { s | OWN } else { s & !OWN });
        self.refresh_fast();
    }

    /// Re-reads the global mode into `fast`.
    pub(super) fn refresh_fast(&self) {
        let fast = if self.state.get() == STATE_LIVE && self.scope.get() == 0 {
            MODE.load(Ordering::Relaxed)
        } else {
            0
        };
        self.set_fast(fast);
    }

    /// Sets `fast`, parking the countdown (at -1) whenever `fast` is not a
    /// counting mode and restoring it when it is again.
    pub(super) fn set_fast(&self, fast: u8) {
        match (counting(self.fast.get()), counting(fast)) {
            (true, false) => self.parked.set(self.countdown.replace(-1)),
            (false, true) => self.countdown.set(self.parked.get()),
            _ => {}
        }
        self.fast.set(fast);
    }

    /// Sets the bytes until the next countdown event, parked or not.
    pub(super) fn set_gap(&self, gap: i64) {
        let first = gap.min(COUNTDOWN_CAP);
        self.reserve.set(gap - first);
        if counting(self.fast.get()) {
            self.countdown.set(first);
        } else {
            self.parked.set(first);
        }
    }

    /// The countdown ran out (it is negative, and not parked): moves the
    /// next part of the gap into it and says true, or says false when the
    /// gap itself has run out.
    pub(super) fn refill(&self) -> bool {
        let left = self.countdown.get() + self.reserve.get();
        if left < 0 {
            self.reserve.set(0);
            return false;
        }
        let next = left.min(COUNTDOWN_CAP);
        self.countdown.set(next);
        self.reserve.set(left - next);
        true
    }

    /// The allocation fast path's whole test: in counters or sampled mode
    /// with the countdown not run out (a parked countdown is -1), counts
    /// the block and says so.
    #[inline(always)]
    pub(super) fn admit_alloc(&self, size: usize) -> Admit {
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
    pub(super) fn admit_realloc(
        &self,
        gate: u8,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
    ) -> bool {
        self.countdown.get() >= growth(old_size, new_size) as i64
            && !recorder::maybe_recorded_at(gate, ptr as usize)
    }

    /// Counts a realloc the fast path took: the old size freed, the new
    /// one allocated, and the growth counted down (without running the
    /// countdown out, as `admit_realloc` checked).
    #[inline(always)]
    pub(super) fn count_realloc(&self, old_size: usize, new_size: usize) {
        self.shared.counters.free(old_size);
        self.shared.counters.alloc(new_size);
        self.countdown
            .set(self.countdown.get() - growth(old_size, new_size) as i64);
    }

    /// The free fast path's whole test: in counters or sampled mode, a
    /// block the recorder cannot hold is counted here; off, it is let
    /// through uncounted.
    #[inline(always)]
    pub(super) fn admit_free(&self, gate: u8, ptr: *mut u8, size: usize) -> Admit {
        let fast = self.fast.get();
        if recorder::maybe_recorded_at(gate, ptr as usize) {
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
    pub(super) fn enter(&self) -> u8 {
        let prev = self.state.get();
        self.state.set(prev | BUSY);
        self.set_fast(0);
        prev
    }

    pub(super) fn leave(&self, prev: u8) {
        self.state.set(prev);
        self.refresh_fast();
    }

    /// Marks the thread busy for tracker code that does not allocate (a
    /// free's bookkeeping), more cheaply than [`ThreadState::enter`]: the
    /// countdown stays as it is (an allocation there could only be counted,
    /// never recorded) and [`ThreadState::unhold`] puts the mode byte back
    /// as it was instead of reading the mode again. Returns what to restore.
    #[inline(always)]
    pub(super) fn hold(&self) -> (u8, u8) {
        let held = (self.state.get(), self.fast.get());
        self.state.set(held.0 | BUSY);
        self.fast.set(0);
        held
    }

    /// Ends what [`ThreadState::hold`] began.
    #[inline(always)]
    pub(super) fn unhold(&self, held: (u8, u8)) {
        self.state.set(held.0);
        self.fast.set(held.1);
    }
}

/// The most bytes the countdown holds at once (see
/// [`ThreadState::reserve`]), and so the largest allocation the fast path
/// counts before jemalloc runs. jemalloc serves such requests from its
/// caches or from a page run of the current arena, and refuses one only
/// when the system is out of memory: then the block stays counted (at most
/// this many bytes per refusal), and every infallible std API aborts the
/// program anyway. Larger requests (the ones a program may expect to fail,
/// such as `try_reserve` of a vast capacity) take the slow path, which
/// counts a block once jemalloc has served it. A gap longer than this is
/// consumed in parts: one cold call per 64 KiB allocated.
pub(super) const COUNTDOWN_CAP: i64 = 64 << 10;

/// What a fast path decided.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Counted already: hand the call to jemalloc.
    Counted,
    /// Off: hand the call to jemalloc, uncounted.
    Plain,
    /// The slow path decides (sample due, exact mode, a recorded block,
    /// a thread that is new, busy, measuring or tearing down).
    Slow,
}

thread_local! {
    pub(super) static THREAD: ThreadState = const { ThreadState::new() };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Unregisters the thread's counters when the thread exits.
pub(super) struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        THREAD.with(|t| {
            let me = &t.shared as *const SharedThread as *mut SharedThread;
            let mut reg = REGISTRY.lock();
            reg.unlink(me);
            EXITED.add_shared(&t.shared.counters);
            flush_live(t);
            drop(reg);
            let prev = t.enter();
            recorder::release(&t.lane);
            t.leave(prev);
            t.state.set(STATE_DEAD | (t.state.get() & BUSY));
            t.set_fast(0);
        });
    }
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

/// Marks the calling thread as one of leakscope's own for the rest of its
/// life: what it allocates is counted as leakscope's own memory and never
/// recorded, so the program's views, diffs and live figures show the
/// program only. A block the recorder holds that such a thread frees is
/// still the program's (its record goes, and the program's counters count
/// the free); any other block it frees is taken as its own.
pub(crate) fn own_thread() {
    let _ = THREAD.try_with(|t| t.set_own(true));
}

/// Runs the program's code `f` (a function or object the program gave the
/// console) on one of leakscope's own threads as the program's: what it
/// allocates is the program's.
pub(crate) fn as_program<R>(f: impl FnOnce() -> R) -> R {
    struct Back(bool);
    impl Drop for Back {
        fn drop(&mut self) {
            if self.0 {
                let _ = THREAD.try_with(|t| t.set_own(true));
            }
        }
    }
    let own = THREAD
        .try_with(|t| {
            let own = t.state.get() & OWN != 0;
            if own {
                t.set_own(false);
            }
            own
        })
        .unwrap_or(false);
    let _back = Back(own);
    f()
}

/// Draws a number uniform in (0, 1] from this thread's generator
/// (xorshift64*): never 0, so its logarithm is finite.
pub(super) fn next_uniform(t: &ThreadState) -> f64 {
    let mut x = t.rng.get();
    if x == 0 {
        x = (t as *const ThreadState as u64) ^ 0x2545_F491_4F6C_DD1D ^ now_tick() as u64;
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t.rng.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    ((r >> 11) + 1) as f64 / (1u64 << 53) as f64
}

/// Draws an exponential gap with the given mean.
pub(super) fn next_gap(t: &ThreadState, mean: u64) -> i64 {
    (-next_uniform(t).ln() * mean as f64).min(i64::MAX as f64 / 2.0) as i64
}

#[cold]
#[inline(never)]
pub(super) fn register_thread(t: &ThreadState) {
    t.index.set(THREAD_COUNT.fetch_add(1, Ordering::Relaxed));
    t.shared.index.store(t.index.get(), Ordering::Relaxed);
    // SAFETY: gettid has no preconditions (one system call, once a thread).
    let os_id = unsafe { libc::gettid() };
    t.shared.os_id.store(os_id as u32, Ordering::Relaxed);
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

/// The bytes a realloc from `old_size` to `new_size` adds: what it counts
/// down toward the next sample. Sampling marks bytes, each with the same
/// small chance, and a block is in the sample while any of its bytes is
/// marked: a block that grows gets a chance for each byte it adds only, so
/// it is in the sample with probability `1 - e^(-size/R)` at its size now,
/// as a block allocated at that size is, and its weight (which assumes
/// that) stays unbiased. A shrink adds nothing here; the recorder decides
/// whether a sampled block that shrinks keeps its record (see
/// `recorder::finish_realloc`).
#[inline(always)]
pub(super) fn growth(old_size: usize, new_size: usize) -> usize {
    new_size.saturating_sub(old_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::settings::MODE_COUNTERS;

    /// Counts down `size`-byte allocations as the allocation paths do (the
    /// fast path while the countdown covers one, the event otherwise) and
    /// returns the allocation at which the gap ran out.
    fn allocations_until_gap_ends(t: &ThreadState, size: i64) -> u64 {
        for n in 1.. {
            assert!(t.countdown.get() <= COUNTDOWN_CAP, "capped countdown");
            let left = t.countdown.get() - size;
            t.countdown.set(left);
            if left < 0 && !t.refill() {
                return n;
            }
        }
        unreachable!()
    }

    #[test]
    fn a_long_gap_ends_at_the_same_byte_when_consumed_in_parts() {
        let t = ThreadState::new();
        t.set_fast(MODE_COUNTERS);
        t.set_gap(200_000);
        assert_eq!(t.countdown.get(), COUNTDOWN_CAP);
        assert_eq!(t.reserve.get(), 200_000 - COUNTDOWN_CAP);
        // 200 blocks of 1000 B use the gap up exactly; the 201st crosses it.
        assert_eq!(allocations_until_gap_ends(&t, 1000), 201);
        assert_eq!(t.reserve.get(), 0);
        // Blocks larger than the cap: 3 MB of 1 MiB blocks crosses at the 3rd.
        t.set_gap(3_000_000);
        assert_eq!(allocations_until_gap_ends(&t, 1 << 20), 3);
        // A short gap has no reserve.
        t.set_gap(5_000);
        assert_eq!((t.countdown.get(), t.reserve.get()), (5_000, 0));
        assert_eq!(allocations_until_gap_ends(&t, 100), 51);
    }

    #[test]
    fn a_parked_countdown_keeps_its_reserve() {
        let t = ThreadState::new();
        t.set_fast(MODE_COUNTERS);
        t.set_gap(100_000);
        t.set_fast(0);
        assert_eq!(t.countdown.get(), -1, "parked");
        t.set_fast(MODE_COUNTERS);
        assert_eq!(allocations_until_gap_ends(&t, 10_000), 11);
    }
}
