//! The registry of live threads' counters (summed on read), the counters of
//! threads that have exited, the counters-mode peak estimate, and what
//! `fork` must do with them.

use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, Ordering};

use super::recorder;
use super::thread::{Counters, THREAD, ThreadState, untracked};
use crate::sys::lock::RawLocked;

/// The part of a thread's state other threads read: its counters and the
/// registry link.
pub(super) struct SharedThread {
    pub(super) counters: Counters,
    pub(super) next: AtomicPtr<SharedThread>,
    /// The thread's index (as in [`crate::tracker::LiveBlock::thread`]),
    /// set before it is registered.
    pub(super) index: AtomicU32,
    /// The thread's id in the kernel, set before it is registered.
    pub(super) os_id: AtomicU32,
}

pub(super) struct Registry {
    pub(super) head: *mut SharedThread,
}

// SAFETY: the pointers are to thread-locals that unlink themselves under the
// registry lock before their thread's storage goes away.
unsafe impl Send for Registry {}

impl Registry {
    pub(super) fn unlink(&mut self, me: *mut SharedThread) {
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

pub(super) static REGISTRY: RawLocked<Registry> = RawLocked::new(Registry {
    head: ptr::null_mut(),
});
/// Counters of threads that have exited, and of allocations made during a
/// thread's teardown after its counters were unregistered.
pub(super) static EXITED: Counters = Counters::new();
pub(super) static THREAD_COUNT: AtomicU32 = AtomicU32::new(0);

/// Live bytes summed over threads as of each thread's last countdown event,
/// and the peak of that sum: the peak estimate outside exact mode.
static FLUSHED_LIVE: AtomicI64 = AtomicI64::new(0);
static FLUSHED_PEAK: AtomicI64 = AtomicI64::new(0);

/// Adds this thread's change in live bytes since its last event to the
/// global sum and raises the peak. Runs once every ~mean-gap bytes
/// allocated, so the peak estimate misses at most about that much per thread.
#[cold]
pub(super) fn flush_live(t: &ThreadState) {
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

/// The address of each live thread's leakscope thread-local, with the
/// thread's index and its operating-system id: the address lies in that
/// thread's thread-local storage (at the top of its stack, for spawned
/// threads), which the heap graph scans as a root.
pub(crate) fn thread_local_addresses() -> Vec<(usize, u32, u32)> {
    untracked(|| {
        // Room made before the lock: nothing allocates while it is held.
        let mut out = Vec::with_capacity(THREAD_COUNT.load(Ordering::Relaxed) as usize + 64);
        let reg = REGISTRY.lock();
        let mut cur = reg.head;
        while !cur.is_null() && out.len() < out.capacity() {
            // SAFETY: registered entries are live while the lock is held.
            unsafe {
                out.push((
                    cur as usize,
                    (*cur).index.load(Ordering::Relaxed),
                    (*cur).os_id.load(Ordering::Relaxed),
                ));
                cur = (*cur).next.load(Ordering::Relaxed);
            }
        }
        drop(reg);
        out
    })
}

/// The name the kernel keeps for the registered thread of index `index`
/// (its first 15 bytes, as `ps`, `top` and debuggers show it:
/// `tokio-runtime-w` for `tokio-runtime-worker`), if it has one and is
/// still registered.
pub(crate) fn thread_name(index: u32) -> Option<String> {
    let os_id = untracked(|| {
        let reg = REGISTRY.lock();
        let mut cur = reg.head;
        while !cur.is_null() {
            // SAFETY: registered entries are live while the lock is held.
            unsafe {
                if (*cur).index.load(Ordering::Relaxed) == index {
                    return Some((*cur).os_id.load(Ordering::Relaxed));
                }
                cur = (*cur).next.load(Ordering::Relaxed);
            }
        }
        None
    })?;
    let comm = std::fs::read_to_string(format!("/proc/self/task/{os_id}/comm")).ok()?;
    let name = comm.trim_end_matches('\n');
    (!name.is_empty()).then(|| name.to_string())
}

/// The counters-mode estimate of the peak of live bytes.
pub(crate) fn flushed_peak() -> i64 {
    FLUSHED_PEAK.load(Ordering::Relaxed)
}

/// Counts an allocation of a thread that is not live: tearing down (its
/// counters already folded into EXITED) or not yet registered.
#[cold]
pub(super) fn count_shared_alloc(size: usize) {
    EXITED.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
    EXITED.alloc_blocks.fetch_add(1, Ordering::Relaxed);
}

/// Bytes leakscope holds for itself: allocated, less freed, while a thread
/// ran tracker code (the recorder, symbol tables, snapshots' buffers).
static OWN_BYTES: AtomicI64 = AtomicI64::new(0);

/// Counts `delta` bytes of leakscope's own (on the tracker's own path
/// only, never the program's).
#[cold]
pub(super) fn count_own(delta: i64) {
    OWN_BYTES.fetch_add(delta, Ordering::Relaxed);
}

/// What [`count_own`] has counted.
pub(crate) fn own_bytes() -> u64 {
    OWN_BYTES.load(Ordering::Relaxed).max(0) as u64
}

/// Counts a free of a thread that is not live.
#[cold]
pub(super) fn count_shared_free(size: usize) {
    EXITED.free_bytes.fetch_add(size as u64, Ordering::Relaxed);
    EXITED.free_blocks.fetch_add(1, Ordering::Relaxed);
}

pub(super) extern "C" fn fork_prepare() {
    super::gate::fork_prepare();
    REGISTRY.lock_for_fork();
    recorder::fork_prepare();
}

pub(super) extern "C" fn fork_parent() {
    recorder::fork_parent();
    // SAFETY: this thread took the lock in fork_prepare.
    unsafe { REGISTRY.force_unlock() };
    super::gate::fork_parent();
}

pub(super) extern "C" fn fork_child() {
    // The child has one thread: this one. Other threads' counters are folded
    // into EXITED (their thread-locals are gone with them) and the locks,
    // possibly held by threads that no longer exist, are reset.
    super::gate::fork_child();
    let kept = THREAD
        .try_with(|t| recorder::index_of(&t.lane))
        .unwrap_or(0);
    recorder::fork_child(kept);
    // SAFETY: only this thread exists in the child.
    unsafe {
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
