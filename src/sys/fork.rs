//! Mutexes a forked child can always take.
//!
//! After `fork` the child has one thread: a lock that another thread held
//! at the fork stays locked forever, and the first use of it in the child
//! hangs (a program that forks workers, or exits through a `LEAKSCOPE_DHAT_OUT`
//! dump, would never finish). [`ForkSafe`] is a `std::sync::Mutex` the child
//! rebuilds when it was held at the fork: its value then was half-changed,
//! so it is forgotten (never dropped) and the child starts from the
//! default. A lock that was free at the fork holds a consistent value,
//! which the child keeps or starts afresh from, as its [`InChild`] says.
//!
//! Nothing waits at the fork itself: the parent's views and dumps go on
//! while the program forks.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once, TryLockError};

use super::lock::RawLocked;

/// What a forked child does with a [`ForkSafe`]'s value that was not being
/// changed at the fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InChild {
    /// Keeps it (a baseline the user set, a registry).
    Keep,
    /// Starts from the default (a cache, or state that belongs to threads
    /// the child does not have); the old value is forgotten, never
    /// dropped, since the threads that shared it are gone.
    Empty,
}

/// Something a forked child must put right before anything else runs.
pub(crate) trait ResetInChild: Sync {
    /// Called once in the child, on its only thread, before `fork` returns.
    fn reset_in_child(&self);
}

/// The most [`ResetInChild`] values [`on_child`] keeps.
const MAX_RESETS: usize = 32;

/// The values reset in the child, in the order they were registered.
struct Resets {
    list: [Option<&'static dyn ResetInChild>; MAX_RESETS],
    len: usize,
}

static RESETS: RawLocked<Resets> = RawLocked::new(Resets {
    list: [None; MAX_RESETS],
    len: 0,
});

/// Resets `value` in every child forked from now on.
pub(crate) fn on_child(value: &'static dyn ResetInChild) {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no
        // preconditions.
        unsafe { libc::pthread_atfork(None, None, Some(reset_all_in_child)) };
    });
    let mut resets = RESETS.lock();
    let n = resets.len;
    // The registrations are statics of this crate, fewer than the room.
    debug_assert!(n < MAX_RESETS, "more than {MAX_RESETS} fork resets");
    if n < MAX_RESETS {
        resets.list[n] = Some(value);
        resets.len = n + 1;
    }
}

extern "C" fn reset_all_in_child() {
    // SAFETY: the child has one thread, this one; a registration that was
    // under way at the fork is either in the list or not.
    unsafe { RESETS.reset_in_child() };
    let resets = RESETS.lock();
    for value in resets.list[..resets.len].iter().flatten() {
        value.reset_in_child();
    }
}

/// A mutex a forked child can always take; see the module's docs.
pub(crate) struct ForkSafe<T> {
    mutex: UnsafeCell<Mutex<T>>,
    in_child: InChild,
    /// Whether it registered itself with [`on_child`] (or is reset by its
    /// owner, see [`ForkSafe::reset_by_owner`]).
    registered: AtomicBool,
}

// SAFETY: the mutex serialises access to the value; the cell is written
// only in a forked child, on its only thread, before anything else runs.
unsafe impl<T: Send> Sync for ForkSafe<T> {}

impl<T: Default + Send> ForkSafe<T> {
    /// A mutex holding `value` that registers for the child on first use.
    pub(crate) const fn new(value: T, in_child: InChild) -> Self {
        ForkSafe {
            mutex: UnsafeCell::new(Mutex::new(value)),
            in_child,
            registered: AtomicBool::new(false),
        }
    }

    /// A mutex its owner resets (by [`ForkSafe::reset_now`] from the
    /// owner's own [`ResetInChild`]), for mutexes that are not statics.
    pub(crate) const fn reset_by_owner(value: T, in_child: InChild) -> Self {
        ForkSafe {
            mutex: UnsafeCell::new(Mutex::new(value)),
            in_child,
            registered: AtomicBool::new(true),
        }
    }

    fn mutex(&self) -> &Mutex<T> {
        // SAFETY: the cell is replaced only in a forked child before any
        // other code runs there, when no reference to it is alive.
        unsafe { &*self.mutex.get() }
    }

    /// Takes the lock (a panic while it was held does not poison it: every
    /// value kept here is valid between statements).
    pub(crate) fn lock(&'static self) -> MutexGuard<'static, T> {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            on_child(self);
        }
        self.lock_owned()
    }

    /// Takes the lock if no one holds it (a panic or a stop while it was
    /// held does not poison it).
    pub(crate) fn try_lock(&'static self) -> Option<MutexGuard<'static, T>> {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            on_child(self);
        }
        match self.mutex().try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Takes the lock of a mutex its owner resets.
    pub(crate) fn lock_owned(&self) -> MutexGuard<'_, T> {
        self.mutex().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts it right in a forked child; returns whether it was held at the
    /// fork (its value was then forgotten).
    pub(crate) fn reset_now(&self) -> bool {
        let held = match self.mutex().try_lock() {
            Ok(mut value) => {
                if self.in_child == InChild::Empty {
                    std::mem::forget(std::mem::take(&mut *value));
                }
                false
            }
            Err(TryLockError::Poisoned(e)) => {
                let mut value = e.into_inner();
                if self.in_child == InChild::Empty {
                    std::mem::forget(std::mem::take(&mut *value));
                }
                drop(value);
                self.mutex().clear_poison();
                false
            }
            Err(TryLockError::WouldBlock) => true,
        };
        if held {
            // SAFETY: only this thread exists in the child and no reference
            // to the mutex is alive (the thread that held it is gone); the
            // old mutex and its half-changed value are forgotten.
            unsafe { self.mutex.get().write(Mutex::new(T::default())) };
        }
        held
    }
}

/// A mutex its owner resets, keeping the value it holds (as
/// [`ForkSafe::reset_by_owner`]), holding the default.
impl<T: Default + Send> Default for ForkSafe<T> {
    fn default() -> Self {
        Self::reset_by_owner(T::default(), InChild::Keep)
    }
}

impl<T: Default + Send> ResetInChild for ForkSafe<T> {
    fn reset_in_child(&self) {
        self.reset_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forks while another thread holds `lock`, and returns what the child
    /// found: the value it could take (or 255 if it could not within 5 s).
    fn fork_while_held(lock: &'static ForkSafe<u8>) -> u8 {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let g = lock.lock();
            held_tx.send(()).unwrap();
            let _ = done_rx.recv();
            drop(g);
        });
        held_rx.recv().unwrap();
        // SAFETY: the child only tries the lock and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let got = lock.mutex().try_lock().map_or(255, |v| *v);
            // SAFETY: leaving the child at once, without running the
            // parent's destructors.
            unsafe { libc::_exit(i32::from(got)) };
        }
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WEXITSTATUS(status) as u8
    }

    #[test]
    fn a_child_takes_a_lock_another_thread_held_at_the_fork() {
        static KEPT: ForkSafe<u8> = ForkSafe::new(7, InChild::Keep);
        static CACHE: ForkSafe<u8> = ForkSafe::new(7, InChild::Empty);
        // Held at the fork: both start from the default in the child.
        assert_eq!(fork_while_held(&KEPT), 0);
        assert_eq!(fork_while_held(&CACHE), 0);
        // Free at the fork: the kept value stays, the cache is emptied.
        // SAFETY: the child only reads and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = *KEPT.lock() * 10 + *CACHE.lock();
            // SAFETY: as above.
            unsafe { libc::_exit(i32::from(code)) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(libc::WEXITSTATUS(status), 70);
        assert_eq!((*KEPT.lock(), *CACHE.lock()), (7, 7));
    }
}
