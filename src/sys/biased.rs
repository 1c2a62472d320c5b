//! A lock biased towards one owner thread, whose common path takes no
//! atomic read-modify-write.
//!
//! A locked instruction costs an uncontended thread about as much as a dozen
//! plain ones: it waits for the core's pending stores to drain. A value that
//! one thread uses all the time and others rarely (a thread's lane of the
//! recorder) can spare its owner that. While the lock is *biased*, the owner
//! enters by storing a flag and reading the bias back, both plain accesses;
//! another thread that wants the value first takes the ordinary lock, then
//! *revokes* the bias: it clears it, makes every running thread of the
//! process pass a full memory barrier (the `membarrier` system call, a fraction
//! of a microsecond here), and waits for the owner's flag to drop. After the
//! barrier, either the owner saw the bias gone (and queues for the ordinary
//! lock) or its flag is visible (and the other thread waits for it to leave).
//!
//! The owner biases the lock again once it has taken it [`REBIAS_AFTER`]
//! times in a row with no other thread taking it in between: a lock that
//! other threads take often (blocks freed on other threads all the time)
//! stays an ordinary lock, and pays one barrier per revocation at most.
//! Where `membarrier` is missing, the lock is never biased.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering, compiler_fence};
use std::time::Duration;

use super::lock::{CacheLine, Guard, RawLocked};
use super::published::Version;

/// How many times in a row the owner takes the ordinary lock, no other
/// thread taking it in between, before it biases the lock again.
pub(crate) const REBIAS_AFTER: u32 = 1024;

/// A value behind a lock biased towards one owner (see the module docs).
/// The owner is whoever calls [`BiasedLocked::lock_as_owner`]: the caller
/// promises that no other thread does while it does.
pub(crate) struct BiasedLocked<T> {
    lock: RawLocked<()>,
    bias: CacheLine<Bias>,
    value: UnsafeCell<T>,
}

/// The bias, the owner's flag, and the owner's run of ordinary takes.
struct Bias {
    biased: AtomicBool,
    owner_inside: AtomicBool,
    /// Owner takes of the ordinary lock since another thread took it
    /// (written under the ordinary lock only).
    quiet: AtomicU32,
    /// Made odd by every taker of the lock while it holds it: readers that
    /// copy the value without the lock check it (see `published`).
    version: Version,
}

// SAFETY: access to `value` is serialised by the ordinary lock, or by the
// bias protocol between the owner and the holder of the ordinary lock.
unsafe impl<T: Send> Sync for BiasedLocked<T> {}

impl<T> BiasedLocked<T> {
    pub(crate) const fn new(value: T) -> Self {
        BiasedLocked {
            lock: RawLocked::new(()),
            bias: CacheLine(Bias {
                biased: AtomicBool::new(false),
                owner_inside: AtomicBool::new(false),
                quiet: AtomicU32::new(0),
                version: Version::new(),
            }),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock as its owner: with no atomic read-modify-write while
    /// it is biased. Only one thread may call this at a time. `may_bias`:
    /// whether a quiet run may bias the lock again (the first bias of a
    /// process registers it for `membarrier`, a system call the caller may
    /// want to keep to the modes that need the speed).
    #[inline(always)]
    pub(crate) fn lock_as_owner(&self, may_bias: bool) -> BiasedGuard<'_, T> {
        let bias = &self.bias;
        if bias.biased.load(Ordering::Relaxed) {
            bias.owner_inside.store(true, Ordering::Relaxed);
            // The store must not move after the load below; the hardware
            // may still reorder them, which the revoker's barrier undoes.
            compiler_fence(Ordering::SeqCst);
            if bias.biased.load(Ordering::Acquire) {
                bias.version.begin_write();
                return BiasedGuard {
                    cell: self,
                    locked: None,
                    may_bias,
                };
            }
            bias.owner_inside.store(false, Ordering::Release);
        }
        let locked = Some(self.lock.lock());
        bias.version.begin_write();
        BiasedGuard {
            cell: self,
            locked,
            may_bias,
        }
    }

    /// Takes the lock as any thread but its owner (or as the owner, when it
    /// is not inside already): the ordinary lock, revoking the bias.
    pub(crate) fn lock(&self) -> BiasedGuard<'_, T> {
        let guard = self.lock.lock();
        self.revoke();
        self.bias.version.begin_write();
        BiasedGuard {
            cell: self,
            locked: Some(guard),
            may_bias: false,
        }
    }

    /// Takes the lock as any thread but its owner if that costs no wait:
    /// `None` when another thread holds it, or when its owner is inside on
    /// its biased path (the bias is then left as it was).
    pub(crate) fn try_lock(&self) -> Option<BiasedGuard<'_, T>> {
        let guard = self.lock.try_lock()?;
        let bias = &self.bias;
        if bias.biased.load(Ordering::Relaxed) {
            if bias.owner_inside.load(Ordering::Relaxed) {
                return None;
            }
            bias.biased.store(false, Ordering::Relaxed);
            heavy_barrier();
            if bias.owner_inside.load(Ordering::Acquire) {
                // The owner went in before it could see the bias gone: give
                // the bias back rather than wait for it. It either finishes
                // on its biased path or, having seen the bias gone, queues
                // for the ordinary lock, which is still a valid way in.
                bias.biased.store(true, Ordering::Release);
                return None;
            }
        }
        if bias.quiet.load(Ordering::Relaxed) != 0 {
            bias.quiet.store(0, Ordering::Relaxed);
        }
        bias.version.begin_write();
        Some(BiasedGuard {
            cell: self,
            locked: Some(guard),
            may_bias: false,
        })
    }

    /// Under the ordinary lock: takes the bias away, if the lock has it,
    /// and waits for the owner to leave.
    #[inline(always)]
    fn revoke(&self) {
        let bias = &self.bias;
        // The owner reads this line on every take: write it only when
        // something changes, not on every take by another thread.
        if bias.quiet.load(Ordering::Relaxed) != 0 {
            bias.quiet.store(0, Ordering::Relaxed);
        }
        if bias.biased.load(Ordering::Relaxed) {
            bias.biased.store(false, Ordering::Relaxed);
            self.wait_for_owner();
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_for_owner(&self) {
        #[cfg(test)]
        tests::REVOKED.fetch_add(1, Ordering::Relaxed);
        heavy_barrier();
        let mut start = None;
        while self.bias.owner_inside.load(Ordering::Acquire) {
            let now = crate::sys::clock::monotonic_ns(libc::CLOCK_MONOTONIC);
            // As a waiter for the lock does (see `lock`): spin while the
            // owner may be running, yield once it has surely lost its CPU.
            if now - *start.get_or_insert(now) < super::lock::SPIN_NS {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            } else {
                // SAFETY: sched_yield has no preconditions and does not
                // allocate.
                unsafe { libc::sched_yield() };
            }
        }
    }

    /// The version every taker makes odd while it holds the lock, and the
    /// value, for readers that copy it without the lock (see `published`:
    /// the copy may be torn, and is used only if the version is unchanged).
    pub(crate) fn unlocked(&self) -> (&Version, *const T) {
        (&self.bias.version, self.value.get())
    }

    /// The longest any thread has waited for the ordinary lock.
    pub(crate) fn longest_wait(&self) -> Duration {
        self.lock.longest_wait()
    }

    /// Takes the lock and keeps it until [`BiasedLocked::force_unlock`]:
    /// for the `fork` prepare handler.
    pub(crate) fn lock_for_fork(&self) {
        self.lock.lock_for_fork();
        self.revoke();
    }

    /// Releases a lock taken by [`BiasedLocked::lock_for_fork`].
    ///
    /// # Safety
    /// The caller must hold it.
    pub(crate) unsafe fn force_unlock(&self) {
        // SAFETY: the caller's promise.
        unsafe { self.lock.force_unlock() };
    }

    /// Resets the lock in a forked child: unlocked and not biased.
    ///
    /// # Safety
    /// The caller must be the only thread (fork child).
    pub(crate) unsafe fn reset_in_child(&self) {
        self.bias.biased.store(false, Ordering::Relaxed);
        self.bias.owner_inside.store(false, Ordering::Relaxed);
        self.bias.quiet.store(0, Ordering::Relaxed);
        // SAFETY: the caller's promise.
        unsafe { self.lock.reset_in_child() };
    }

    /// Whether the lock is biased now (tests).
    #[cfg(test)]
    fn is_biased(&self) -> bool {
        self.bias.biased.load(Ordering::Relaxed)
    }
}

/// Access to a [`BiasedLocked`] value; released on drop.
pub(crate) struct BiasedGuard<'a, T> {
    cell: &'a BiasedLocked<T>,
    /// The ordinary lock, or none on the owner's biased path.
    locked: Option<Guard<'a, ()>>,
    /// The owner holds the ordinary lock and may bias it again.
    may_bias: bool,
}

impl<T> Deref for BiasedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access (see `Sync`).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for BiasedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive access (see `Sync`).
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for BiasedGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        let bias = &self.cell.bias;
        bias.version.end_write();
        if self.locked.is_none() {
            bias.owner_inside.store(false, Ordering::Release);
        } else if self.may_bias {
            // Still under the ordinary lock (released when `locked` drops,
            // after this).
            let quiet = bias.quiet.load(Ordering::Relaxed) + 1;
            bias.quiet.store(quiet, Ordering::Relaxed);
            if quiet >= REBIAS_AFTER {
                rebias(bias);
            }
        }
    }
}

#[cold]
#[inline(never)]
fn rebias(bias: &Bias) {
    bias.quiet.store(0, Ordering::Relaxed);
    if barrier_available() {
        bias.biased.store(true, Ordering::Relaxed);
    }
}

const BARRIER_UNKNOWN: u8 = 0;
const BARRIER_AVAILABLE: u8 = 1;
const BARRIER_MISSING: u8 = 2;
/// Whether this process may use the expedited `membarrier` (registered).
static BARRIER: AtomicU8 = AtomicU8::new(BARRIER_UNKNOWN);

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Whether revoking can use `membarrier`, registering this process for it
/// the first time it is asked (one system call; no allocation).
fn barrier_available() -> bool {
    match BARRIER.load(Ordering::Relaxed) {
        BARRIER_AVAILABLE => true,
        BARRIER_MISSING => false,
        _ => {
            // SAFETY: a system call with integer arguments only.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                    0,
                    0,
                )
            };
            let state = if rc == 0 {
                BARRIER_AVAILABLE
            } else {
                BARRIER_MISSING
            };
            BARRIER.store(state, Ordering::Relaxed);
            rc == 0
        }
    }
}

/// Makes every running thread of the process pass a full memory barrier.
/// Only called to revoke a bias, and a lock is biased only once this
/// process registered for the call, after which the call does not fail. Were
/// it to fail all the same, no lock would be biased again, and this
/// revocation falls back to a full fence on this side.
fn heavy_barrier() {
    // SAFETY: a system call with integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    if rc != 0 {
        BARRIER.store(BARRIER_MISSING, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// After `fork`, in the child: register again before the next bias (the
/// registration belongs to the parent's process).
pub(crate) fn forget_barrier_in_child() {
    BARRIER.store(BARRIER_UNKNOWN, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Revocations of a bias, in this test binary.
    pub(super) static REVOKED: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn the_owner_biases_the_lock_after_a_quiet_run_and_others_revoke_it() {
        let l = BiasedLocked::new(0u64);
        for _ in 0..REBIAS_AFTER {
            *l.lock_as_owner(true) += 1;
        }
        assert_eq!(l.is_biased(), barrier_available());
        *l.lock_as_owner(true) += 1;
        *l.lock() += 1;
        assert!(!l.is_biased(), "revoked");
        assert_eq!(*l.lock(), REBIAS_AFTER as u64 + 2);
    }

    #[test]
    fn try_lock_takes_a_biased_lock_whose_owner_is_out_and_never_waits() {
        let l = BiasedLocked::new(0u64);
        for _ in 0..=REBIAS_AFTER {
            *l.lock_as_owner(true) += 1;
        }
        assert_eq!(l.is_biased(), barrier_available());
        let inside = l.lock_as_owner(true);
        assert!(l.try_lock().is_none(), "the owner is inside");
        assert_eq!(l.is_biased(), barrier_available(), "bias kept");
        drop(inside);
        *l.try_lock().expect("the owner is out") += 1;
        assert!(!l.is_biased(), "revoked");
        let held = l.lock();
        assert!(l.try_lock().is_none());
        drop(held);
        assert_eq!(*l.lock(), REBIAS_AFTER as u64 + 2);
    }

    #[test]
    fn an_owner_on_its_biased_path_and_threads_trying_the_lock_lose_no_update() {
        let l = BiasedLocked::new(0u64);
        let others_done = AtomicU32::new(0);
        let (owner_ops, taken) = std::thread::scope(|s| {
            let owner = s.spawn(|| {
                let mut n = 0u64;
                while others_done.load(Ordering::Relaxed) < 2 {
                    add_one(l.lock_as_owner(true));
                    n += 1;
                    // Out now and then, as a real owner is: the others'
                    // tries can succeed, however loaded the machine.
                    if n.is_multiple_of(64) {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                n
            });
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let (l, others_done) = (&l, &others_done);
                    s.spawn(move || {
                        let mut taken = 0u64;
                        // 20 000 tries, and on until some succeeded.
                        for i in 0.. {
                            if i >= 20_000 && taken >= 10 {
                                break;
                            }
                            if let Some(g) = l.try_lock() {
                                add_one(g);
                                taken += 1;
                            }
                            if i % 64 == 0 {
                                std::thread::sleep(Duration::from_micros(100));
                            }
                        }
                        others_done.fetch_add(1, Ordering::Relaxed);
                        taken
                    })
                })
                .collect();
            let taken: u64 = others.into_iter().map(|t| t.join().unwrap()).sum();
            (owner.join().unwrap(), taken)
        });
        assert!(taken > 0, "no try succeeded");
        assert_eq!(*l.lock(), owner_ops + taken);
    }

    /// Adds one to the value, reading and writing it a little apart, so
    /// that two threads inside at once would lose an update.
    fn add_one(mut g: BiasedGuard<'_, u64>) {
        let v = *g;
        for _ in 0..std::hint::black_box(50) {
            std::hint::spin_loop();
        }
        *g = v + 1;
    }

    #[test]
    fn an_owner_on_its_biased_path_and_threads_revoking_lose_no_update() {
        // Three threads take the lock 10 000 times each, in bursts of 16
        // with pauses long enough for the owner, which takes it all along,
        // to bias it again in between.
        let l = BiasedLocked::new(0u64);
        let other_ops = 10_000;
        let others_done = AtomicU32::new(0);
        let revoked_before = REVOKED.load(Ordering::Relaxed);
        let owner_ops = std::thread::scope(|s| {
            let owner = s.spawn(|| {
                let mut n = 0u64;
                while others_done.load(Ordering::Relaxed) < 3 {
                    add_one(l.lock_as_owner(true));
                    n += 1;
                }
                n
            });
            for k in 0..3 {
                let (l, others_done) = (&l, &others_done);
                s.spawn(move || {
                    for i in 0..other_ops {
                        add_one(l.lock());
                        if (i + k) % 16 == 0 {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                    others_done.fetch_add(1, Ordering::Relaxed);
                });
            }
            owner.join().unwrap()
        });
        assert_eq!(*l.lock(), owner_ops + 3 * other_ops);
        if barrier_available() {
            // The pauses let the owner bias the lock again and again.
            let revoked = REVOKED.load(Ordering::Relaxed) - revoked_before;
            assert!(revoked > 0, "never revoked");
        }
    }
}
