//! A tiny spin-then-yield lock for the tracker's own state.
//!
//! Why not `std::sync::Mutex`: the allocator must be able to take this lock
//! in the `fork` handlers and *reset* it in the child (where the thread that
//! held it no longer exists), which a std mutex cannot do; and it must never
//! allocate (parking_lot's lock did, and deadlocked dhat-rs). Critical
//! sections under it are short (a hash-map insert or remove), so spinning a
//! little and then yielding the CPU is enough.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How many times a thread that finds the lock taken spins before it starts
/// yielding the CPU (and measuring its wait): 64 pause instructions, from a
/// fraction of a microsecond to a few depending on the CPU, longer than a
/// critical section whose holder keeps its CPU.
const SPINS: u32 = 64;

/// A value behind a spin-then-yield lock that never allocates.
pub(crate) struct RawLocked<T> {
    /// On a cache line of its own: threads waiting for the lock read it
    /// over and over, and must not pull in the line the holder is writing.
    locked: CacheLine<AtomicBool>,
    /// The longest any thread has waited for the lock, in nanoseconds
    /// (measured only when spinning for it failed, from the end of the
    /// spin: the few microseconds spent spinning are not counted).
    longest_wait_ns: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for RawLocked<T> {}

impl<T> RawLocked<T> {
    pub(crate) const fn new(value: T) -> Self {
        RawLocked {
            locked: CacheLine(AtomicBool::new(false)),
            longest_wait_ns: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning briefly and then yielding the CPU.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        self.acquire();
        Guard { lock: self }
    }

    fn acquire(&self) {
        if self.try_acquire() {
            return;
        }
        self.acquire_contended();
    }

    #[inline(always)]
    fn try_acquire(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// The lock was taken: spin a little, then wait for it yielding the CPU,
    /// and keep the longest wait. The clock is read only once spinning has
    /// failed: two threads trading the lock would otherwise spend a tenth of
    /// their time reading it, to measure waits of a few hundred nanoseconds
    /// that nobody asks about.
    #[cold]
    #[inline(never)]
    fn acquire_contended(&self) {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.try_acquire() {
                return;
            }
        }
        let start = crate::recorder::monotonic_ns(libc::CLOCK_MONOTONIC);
        loop {
            // SAFETY: sched_yield has no preconditions and does not allocate.
            unsafe { libc::sched_yield() };
            if self.try_acquire() {
                let waited = crate::recorder::monotonic_ns(libc::CLOCK_MONOTONIC) - start;
                self.longest_wait_ns.fetch_max(waited, Ordering::Relaxed);
                return;
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

    /// Releases a lock taken by [`RawLocked::lock_for_fork`], or resets it in
    /// a forked child whose holder thread is gone.
    ///
    /// # Safety
    /// The caller must own the lock (parent after fork) or be the only thread
    /// (child after fork).
    pub(crate) unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
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

/// A value alone on its cache line (two lines: adjacent-line prefetching
/// pairs them).
#[repr(align(128))]
struct CacheLine<T>(T);

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
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let l = RawLocked::new(0u64);
        let held = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = l.lock();
                held.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(30));
                *g += 1;
            });
            while !held.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            // The holder sleeps for 30 ms from just before `held` was set:
            // this thread spins for at most microseconds, then waits the rest.
            let mut g = l.lock();
            assert_eq!(*g, 1, "took the lock while it was held");
            *g += 1;
        });
        assert_eq!(*l.lock(), 2);
        let waited = l.longest_wait();
        assert!(waited >= Duration::from_millis(25), "{waited:?}");
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
