//! A tiny spin-then-yield lock for the tracker's own state.
//!
//! Why not `std::sync::Mutex`: the allocator must be able to take this lock
//! in the `fork` handlers and *reset* it in the child (where the thread that
//! held it no longer exists), which a std mutex cannot do; and it must never
//! allocate (parking_lot's lock did, and deadlocked dhat-rs). Critical
//! sections under it are short (a hash-map insert or remove), so spinning
//! for up to 50 µs and then yielding the CPU is enough; a waiter that has
//! waited 0.2 ms makes the others stand aside, so that a thread taking the
//! lock in a tight loop cannot starve it.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How many times a thread that finds the lock taken spins before it starts
/// measuring its wait: 64 pause instructions, from a fraction of a
/// microsecond to a few depending on the CPU, as long as most critical
/// sections take.
const SPINS: u32 = 64;

/// How long a thread that found the lock taken spins on, reading the
/// clock, before it yields the CPU: longer than any critical section under
/// these locks takes while its holder keeps its CPU (applying a lane's
/// left frees, the longest, takes a few microseconds), and short next to
/// a holder that lost its CPU, for which a spinning waiter only delays it.
pub(crate) const SPIN_NS: u64 = 50_000;

/// How long a thread waits for the lock, yielding, before it asks the others
/// to stand aside (see [`RawLocked::acquire_contended`]).
const STARVING_AFTER_NS: u64 = 200_000;

/// A value behind a spin-then-yield lock that never allocates.
pub(crate) struct RawLocked<T> {
    /// On a cache line of its own: threads waiting for the lock read it
    /// over and over, and must not pull in the line the holder is writing.
    word: CacheLine<LockWord>,
    /// The longest any thread has waited for the lock, in nanoseconds
    /// (measured only when the first [`SPINS`] spins failed, from then
    /// on: the few microseconds they take are not counted).
    longest_wait_ns: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `word.locked`.
unsafe impl<T: Send> Sync for RawLocked<T> {}

impl<T> RawLocked<T> {
    pub(crate) const fn new(value: T) -> Self {
        RawLocked {
            word: CacheLine(LockWord {
                locked: AtomicBool::new(false),
                starving: AtomicU32::new(0),
            }),
            longest_wait_ns: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning briefly and then yielding the CPU.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        self.acquire();
        Guard { lock: self }
    }

    /// Takes the lock if it is free and no thread is starving for it, or
    /// gives up at once: never waits.
    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        // Lazily: a guard made and dropped would release the holder's lock.
        (self.word.starving.load(Ordering::Relaxed) == 0 && self.try_acquire())
            .then(|| Guard { lock: self })
    }

    fn acquire(&self) {
        if self.word.starving.load(Ordering::Relaxed) == 0 && self.try_acquire() {
            return;
        }
        self.acquire_contended();
    }

    #[inline(always)]
    fn try_acquire(&self) -> bool {
        !self.word.locked.load(Ordering::Relaxed)
            && self
                .word
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// The lock was taken (or a starving thread wants it): spin for up to
    /// [`SPIN_NS`], then wait yielding the CPU, and keep the longest wait.
    ///
    /// The lock is not fair, which keeps it cheap: a thread that lets it go
    /// and wants it again a moment later usually gets it back with its
    /// caches warm. But a thread taking it in a tight loop (a snapshot
    /// copying the table shard by shard, code allocating in exact mode)
    /// re-takes it within nanoseconds of each release, and a waiter that is
    /// yielding can miss every window and wait for the whole loop. So a
    /// waiter that has waited [`STARVING_AFTER_NS`] says it is starving;
    /// while any thread is, the others do not take the lock, and the
    /// starving one gets it at the next release. A wait so lasts at most
    /// that long plus one hold (unless the holder loses its CPU).
    ///
    /// The clock is read only once spinning has failed: two threads trading
    /// the lock would otherwise spend a tenth of their time reading it, to
    /// measure waits of a few hundred nanoseconds.
    #[cold]
    #[inline(never)]
    fn acquire_contended(&self) {
        let word = &self.word;
        let may_take = |starving: bool| starving || word.starving.load(Ordering::Relaxed) == 0;
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if may_take(false) && self.try_acquire() {
                return;
            }
        }
        let start = crate::sys::clock::monotonic_ns(libc::CLOCK_MONOTONIC);
        // Spin on while the holder may still be running: a thread that
        // yields on a loaded machine gets its CPU back only after every
        // other runnable thread had its turn, milliseconds later, however
        // soon the lock was let go.
        while crate::sys::clock::monotonic_ns(libc::CLOCK_MONOTONIC) - start < SPIN_NS {
            for _ in 0..SPINS {
                std::hint::spin_loop();
                if may_take(false) && self.try_acquire() {
                    let waited = crate::sys::clock::monotonic_ns(libc::CLOCK_MONOTONIC) - start;
                    self.longest_wait_ns.fetch_max(waited, Ordering::Relaxed);
                    return;
                }
            }
        }
        let mut starving = false;
        loop {
            // SAFETY: sched_yield has no preconditions and does not allocate.
            unsafe { libc::sched_yield() };
            let taken = may_take(starving) && self.try_acquire();
            let waited = crate::sys::clock::monotonic_ns(libc::CLOCK_MONOTONIC) - start;
            if taken {
                if starving {
                    word.starving.fetch_sub(1, Ordering::Relaxed);
                }
                self.longest_wait_ns.fetch_max(waited, Ordering::Relaxed);
                return;
            }
            if !starving && waited >= STARVING_AFTER_NS {
                starving = true;
                word.starving.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The longest any thread has waited to take the lock.
    pub(crate) fn longest_wait(&self) -> Duration {
        Duration::from_nanos(self.longest_wait_ns.load(Ordering::Relaxed))
    }

    /// Takes the lock and keeps it until [`RawLocked::force_unlock`]: for the
    /// `fork` prepare handler.
    pub(crate) fn lock_for_fork(&self) {
        self.acquire();
    }

    /// Releases a lock taken by [`RawLocked::lock_for_fork`] (the parent
    /// after fork; the child uses [`RawLocked::reset_in_child`]).
    ///
    /// # Safety
    /// The caller must own the lock.
    pub(crate) unsafe fn force_unlock(&self) {
        self.word.locked.store(false, Ordering::Release);
    }

    /// Resets the lock in a forked child: unlocked, and no thread starving
    /// (the threads that were waiting in the parent do not exist here).
    ///
    /// # Safety
    /// The caller must be the only thread (fork child).
    pub(crate) unsafe fn reset_in_child(&self) {
        self.word.starving.store(0, Ordering::Relaxed);
        self.word.locked.store(false, Ordering::Release);
    }

    /// The value, for readers that copy it without the lock (a value made
    /// to be read that way: see `published`).
    pub(crate) fn unlocked(&self) -> *const T {
        self.value.get()
    }

    /// The value without taking the lock.
    ///
    /// # Safety
    /// The caller must hold the lock through [`RawLocked::lock_for_fork`] or
    /// be the only thread (fork child), and create no other reference.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_unchecked(&self) -> &mut T {
        // SAFETY: exclusive access is the caller's promise.
        unsafe { &mut *self.value.get() }
    }
}

/// The lock's own state: whether it is held, and how many waiting threads
/// are starving (see [`RawLocked::acquire_contended`]).
struct LockWord {
    locked: AtomicBool,
    starving: AtomicU32,
}

/// A value alone on its cache line (two lines: adjacent-line prefetching
/// pairs them).
#[repr(align(128))]
pub(super) struct CacheLine<T>(pub(super) T);

impl<T> Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Access to a [`RawLocked`] value; the lock is released on drop.
pub(crate) struct Guard<'a, T> {
    lock: &'a RawLocked<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.word.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_lock_gives_up_on_a_held_lock_and_leaves_it_held() {
        let l = RawLocked::new(0u64);
        let held = l.lock();
        assert!(l.try_lock().is_none());
        assert!(l.try_lock().is_none(), "the first try released the lock");
        drop(held);
        *l.try_lock().expect("free") += 1;
        assert_eq!(*l.lock(), 1);
    }

    #[test]
    fn uncontended_locking_measures_no_wait() {
        let l = RawLocked::new(0u64);
        for _ in 0..1000 {
            *l.lock() += 1;
        }
        assert_eq!(*l.lock(), 1000);
        assert_eq!(l.longest_wait(), Duration::ZERO);
    }

    #[test]
    fn a_wait_behind_a_long_hold_is_measured_and_the_value_is_serialised() {
        // A try counts only when this thread asked for the lock while the
        // holder still held it (a busy machine may run it too late).
        for _ in 0..20 {
            let l = RawLocked::new(0u64);
            let held = AtomicBool::new(false);
            let released = AtomicBool::new(false);
            let mut call = Duration::ZERO;
            let mut asked_in_time = false;
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut g = l.lock();
                    held.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(30));
                    *g += 1;
                    released.store(true, Ordering::Release);
                });
                while !held.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                asked_in_time = !released.load(Ordering::Acquire);
                let t = std::time::Instant::now();
                let mut g = l.lock();
                call = t.elapsed();
                assert_eq!(*g, 1, "took the lock while it was held");
                *g += 1;
            });
            assert_eq!(*l.lock(), 2);
            let waited = l.longest_wait();
            // The holder may still have let go just before the call.
            if !asked_in_time || waited == Duration::ZERO {
                continue;
            }
            // Measured, and no longer than the call that waited.
            assert!(waited <= call, "{waited:?} > {call:?}");
            return;
        }
        panic!("no wait was measured in 20 tries behind a 30 ms hold");
    }

    #[test]
    fn a_long_waiter_becomes_starving_and_stops_being_so_once_it_has_the_lock() {
        let l = RawLocked::new(0u64);
        let g = l.lock();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| *l.lock() += 1);
            // Well past STARVING_AFTER_NS (0.2 ms), even on a busy machine.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while l.word.starving.load(Ordering::Relaxed) == 0 {
                assert!(std::time::Instant::now() < deadline, "never starving");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(l.word.starving.load(Ordering::Relaxed), 1);
            drop(g);
            waiter.join().unwrap();
        });
        assert_eq!(*l.lock(), 1);
        assert_eq!(l.word.starving.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn while_a_thread_starves_the_others_leave_the_free_lock_alone() {
        let l = RawLocked::new(0u64);
        // Stand in for a starving thread that has not yet taken the lock.
        l.word.starving.store(1, Ordering::Relaxed);
        std::thread::scope(|s| {
            s.spawn(|| *l.lock() += 1);
        });
        // The lock was free all along, yet the newcomer waited until it was
        // starving itself; its own count is gone with it.
        let waited = l.longest_wait();
        assert!(
            waited >= Duration::from_nanos(STARVING_AFTER_NS),
            "{waited:?}"
        );
        assert_eq!(l.word.starving.load(Ordering::Relaxed), 1);
        l.word.starving.store(0, Ordering::Relaxed);
        assert_eq!(*l.lock(), 1);
    }

    #[test]
    fn threads_trading_the_lock_lose_no_update() {
        let l = RawLocked::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50_000 {
                        *l.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*l.lock(), 200_000);
    }
}
