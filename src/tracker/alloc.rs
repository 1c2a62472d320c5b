//! The allocation paths: `GlobalAlloc` over tikv-jemallocator.
//!
//! Every path first reads one global byte, the gate (see `gate`): while the
//! mode is off and no thread is measuring, an allocation goes straight to
//! jemalloc, and so does a free or realloc (after a look at the filter of
//! recorded blocks, if the recorder holds any), with no thread-local access.
//!
//! Otherwise the unsampled path touches only this thread's own state: a byte
//! countdown and per-thread counters (owner-written atomics, plain loads and
//! stores, no `lock` prefix). An allocation tests its alignment (one
//! jemalloc's own `alloc` makes too) and the countdown (which is parked at
//! -1 whenever the thread must take the slow path: sample due, exact mode,
//! new, busy in tracker code, measuring, tearing down), counts, and ends in
//! a tail call to jemalloc. A free reads the thread's mode byte
//! and a lock-free filter of recorded blocks (one global flag while nothing
//! is recorded), counts, and ends in a tail call to jemalloc. No lock, no
//! shared read-modify-write, no allocation and no syscall. Only a sampled
//! block (or every block in exact mode) captures its stack and takes a
//! lock: the one of its thread's lane of the recorder, which other threads
//! take only to free one of its blocks or to read it.

use std::alloc::{GlobalAlloc, Layout};
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;

use tikv_jemallocator::Jemalloc;

use super::gate::{GATE_LIVE, gate};
use super::init::init;
use super::recorder;
use super::registry::{count_own, count_shared_alloc, count_shared_free, flush_live};
use super::settings::{
    MODE, MODE_EXACT, MODE_OFF, MODE_SAMPLED, MODE_UNINIT, Mode, SAMPLE_EPOCH, sample_bytes,
};
use super::stack::{self, MAX_FRAMES};
use super::thread::{
    Admit, BUSY, OWN, STATE_LIVE, STATE_NEW, THREAD, ThreadState, next_gap, next_uniform,
    register_thread,
};
use crate::sys::clock::now_tick;

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

/// Accounts a new block (`ptr` non-null) that the fast path did not take:
/// counts it, and records it in exact mode or when the countdown runs out.
/// `chance` is what it counts down: its size, or a realloc's growth.
#[inline(always)]
fn on_alloc(t: &ThreadState, ptr: *mut u8, size: usize, chance: usize, default: u8) {
    let fast = t.fast.get();
    if fast <= MODE_OFF {
        if fast == MODE_OFF && MODE.load(Ordering::Relaxed) == MODE_OFF {
            return;
        }
        return on_alloc_slow(t, ptr, size, chance, default);
    }
    t.shared.counters.alloc(size);
    if fast == MODE_EXACT {
        return record_new(t, ptr, size, 0);
    }
    let left = t.countdown.get() - chance as i64;
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
    if t.refill() {
        // Only a part of the gap ran out.
        return;
    }
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
fn on_alloc_slow(t: &ThreadState, ptr: *mut u8, size: usize, chance: usize, default: u8) {
    let state = t.state.get();
    if state & (BUSY | OWN) != 0 {
        return count_own(size as i64);
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
            on_alloc(t, ptr, size, chance, default);
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
        return on_alloc(t, ptr, size, chance, default);
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
    record_in_line(t, ptr, size, epoch);
}

/// [`record_new`]'s body, for the one caller that runs it for every block
/// (an allocation in exact mode): a call less, and a frame less to walk.
#[inline(always)]
fn record_in_line(t: &ThreadState, ptr: *mut u8, size: usize, epoch: u8) {
    let prev = t.enter();
    // Only the frame-pointer walk needs the stack's bounds. Reading them
    // takes a lock of the C library's that it holds while it allocates
    // itself, which, with leakscope preloaded, reaches this path.
    if t.stack_top.get() == 0 && stack::unwinder() == stack::Unwinder::FramePointers {
        t.stack_top.set(stack::thread_stack_bounds().1.max(1));
    }
    let mut frames = [MaybeUninit::<usize>::uninit(); MAX_FRAMES];
    let top = t.stack_top.get();
    let captured = stack::capture(&mut frames, if top > 1 { top } else { 0 });
    let now = now_tick();
    recorder::record_alloc(
        &t.lane,
        prev & !BUSY == STATE_LIVE,
        recorder::NewBlock {
            addr: ptr as usize,
            size,
            thread: t.index.get(),
            epoch,
            scope: t.scope.get(),
        },
        captured.frames,
        captured.hash,
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
        if (fast == MODE_EXACT && recorder::has_live()) || recorder::maybe_recorded(ptr as usize) {
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
        return count_own(-(size as i64));
    }
    let mode = MODE.load(Ordering::Relaxed);
    if state & OWN != 0 {
        return free_on_own_thread(t, ptr, size, mode);
    }
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
    } else if state == STATE_NEW && mode == MODE_OFF {
        // Stay unregistered while off, but take the cheap off path (a
        // thread that only frees while off would come here every time).
        t.set_fast(MODE_OFF);
    }
    if may_be_recorded(ptr, mode) {
        forget(t, ptr);
    }
}

/// A free on one of leakscope's own threads (see `thread::own_thread`): a
/// block the recorder holds is the program's, so its record goes and the
/// program's counters count the free; any other block is taken as
/// leakscope's own.
#[cold]
#[inline(never)]
fn free_on_own_thread(t: &ThreadState, ptr: *mut u8, size: usize, mode: u8) {
    if may_be_recorded(ptr, mode) {
        let held = t.hold();
        let recorded = recorder::record_free_known(&t.lane, ptr as usize, now_tick());
        t.unhold(held);
        if recorded {
            return count_shared_free(size);
        }
    }
    count_own(-(size as i64));
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
    (mode == MODE_EXACT && recorder::has_live()) || recorder::maybe_recorded(ptr as usize)
}

/// Forgets a block the recorder may hold. Nothing on this path allocates
/// (a table removal never shrinks), so the thread is held busy the cheap
/// way.
#[cold]
#[inline(never)]
fn forget(t: &ThreadState, ptr: *mut u8) {
    let held = t.hold();
    let now = now_tick();
    recorder::record_free(&t.lane, ptr as usize, now);
    t.unhold(held);
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
        // The fast paths end in tail calls to jemalloc: they save no
        // registers and set up no frame.
        let gate = gate();
        // Off, nobody measuring, and not a block the recorder holds (the
        // first test alone while it holds none).
        if gate == 0 || (gate & !GATE_LIVE == 0 && !recorder::maybe_recorded_at(gate, ptr as usize))
        {
            // SAFETY: forwarded contract.
            return unsafe { Jemalloc.dealloc(ptr, layout) };
        }
        let admit = THREAD.try_with(|t| t.admit_free(gate, ptr, layout.size()));
        if matches!(admit, Ok(Admit::Counted | Admit::Plain)) {
            // SAFETY: forwarded contract.
            return unsafe { Jemalloc.dealloc(ptr, layout) };
        }
        // SAFETY: forwarded contract.
        unsafe { dealloc_slow(ptr, layout) };
        not_a_tail_call();
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let gate = gate();
        if gate == 0 || (gate & !GATE_LIVE == 0 && !recorder::maybe_recorded_at(gate, ptr as usize))
        {
            // As in `dealloc`.
            // SAFETY: forwarded contract.
            return unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        }
        // Fast path: a counting mode, a block the recorder cannot hold, and
        // a countdown that the new size does not run out. Counted after the
        // call, so a failed realloc leaves the counts as they were.
        let fast = THREAD
            .try_with(|t| t.admit_realloc(gate, ptr, layout.size(), new_size))
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
    /// `alloc` and `alloc_zeroed`. The fast path counts first and ends in
    /// a tail call to jemalloc, so it saves no registers. It takes only
    /// requests that jemalloc refuses just when the system has no memory
    /// left: no larger than the countdown (at most `COUNTDOWN_CAP`), and
    /// with an alignment that every block of their size has anyway (the
    /// same test jemalloc's own `alloc` makes, so the two merge).
    /// Everything else is allocated first and counted after, so a request
    /// a program may expect to be refused is never counted.
    #[inline(always)]
    unsafe fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        if gate() & !GATE_LIVE == 0 {
            // Off, and no thread measuring: blocks recorded earlier matter
            // only to frees.
            // SAFETY: forwarded contract.
            return unsafe { jemalloc_alloc(layout, zeroed) };
        }
        let size = layout.size();
        let align = layout.align();
        let admit = if align <= PLAIN_ALIGN && align <= size {
            THREAD
                .try_with(|t| t.admit_alloc(size))
                .unwrap_or(Admit::Slow)
        } else {
            Admit::Slow
        };
        if admit != Admit::Slow {
            // SAFETY: forwarded contract.
            return unsafe { jemalloc_alloc(layout, zeroed) };
        }
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc_slow(layout, zeroed) };
        not_a_tail_call();
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
            let size = layout.size();
            let _ = THREAD.try_with(|t| {
                if t.fast.get() == MODE_EXACT {
                    // `on_alloc`'s exact branch, with the record in line.
                    t.shared.counters.alloc(size);
                    record_in_line(t, p, size, 0);
                } else {
                    on_alloc(t, p, size, size, self.default_code());
                }
            });
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
        // A block the recorder holds is the program's, even on one of
        // leakscope's own threads.
        let tracked = THREAD
            .try_with(|t| {
                if t.is_own() {
                    recorded && !t.is_busy()
                } else {
                    mode > MODE_OFF || recorded || t.scope.get() != 0
                }
            })
            .unwrap_or(false);
        if !tracked {
            // SAFETY: forwarded contract.
            let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
            if !new.is_null() && THREAD.try_with(|t| t.is_own()).unwrap_or(false) {
                count_own(new_size as i64 - layout.size() as i64);
            }
            return new;
        }
        THREAD.with(|t| {
            if recorded {
                // A recorded block's record is taken out before the realloc
                // (so its old address, once jemalloc frees it, can be handed
                // out and recorded by another thread without a clash) and put
                // back after, without holding the lock during the copy.
                let prev = t.enter();
                let taken = recorder::take_for_realloc(&t.lane, ptr as usize);
                if let Some(taken) = taken {
                    // SAFETY: forwarded contract.
                    let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
                    let now = now_tick();
                    let draw = if new_size < layout.size() {
                        next_uniform(t)
                    } else {
                        1.0
                    };
                    recorder::finish_realloc(
                        &t.lane,
                        prev & !BUSY == STATE_LIVE,
                        taken,
                        ptr as usize,
                        new as usize,
                        new_size,
                        now,
                        t.scope.get(),
                        draw,
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
            // the new, which the growth may get sampled (at this stack).
            if new.is_null() {
                return new;
            }
            if t.is_own() {
                // Not recorded after all (the filter's false alarm).
                count_own(new_size as i64 - layout.size() as i64);
            } else if mode > MODE_OFF || t.scope.get() != 0 {
                count_free(t, layout.size());
                let growth = super::thread::growth(layout.size(), new_size);
                on_alloc(t, new, new_size, growth, self.default_code());
            }
            new
        })
    }
}

/// Requests aligned to at most this and to no more than their size are the
/// ones tikv-jemallocator serves with plain `malloc` (every jemalloc size
/// class from 16 bytes up is a multiple of 16, so they are aligned anyway).
/// The allocation fast path takes only those: its test and jemalloc's then
/// merge into one, and an alignment jemalloc cannot meet is never counted
/// before it is refused.
const PLAIN_ALIGN: usize = 16;

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
        recorder::record_free(&std::cell::Cell::new(0), ptr as usize, now_tick());
    }
    // SAFETY: forwarded contract.
    unsafe { Jemalloc.dealloc(ptr, layout) }
}

/// Placed after the call to a slow path, keeps that call from being a tail
/// call. Programs built with frame pointers give every function a frame;
/// when every path of a function ends in a tail call, the compiler sets that
/// frame up on entry, and the fast paths pay for it. With one call that
/// returns, the frame moves to that call's path, and the fast paths (which
/// end in tail calls to jemalloc) set up none.
#[inline(always)]
fn not_a_tail_call() {
    std::hint::black_box(());
}
