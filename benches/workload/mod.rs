//! The workload the allocator benches time, shared by `alloc_overhead` and
//! the jemalloc-profiler fixture (`fixtures/jeprof`), so that both time the
//! very same loop: alloc+free pairs of mixed sizes (16 B – 4 KiB), each block
//! living for 64 operations, called through `&dyn GlobalAlloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Sizes drawn once: a fixed, mixed sequence from 16 B to 4 KiB.
pub(crate) fn sizes() -> Vec<usize> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly small, some large: like a real program.
            let r = x % 100;
            if r < 70 {
                16 + (x >> 8) as usize % 240
            } else if r < 95 {
                256 + (x >> 8) as usize % 768
            } else {
                1024 + (x >> 8) as usize % 3072
            }
        })
        .collect()
}

/// `ops` alloc+free pairs through `a`, sizes taken in turn from `sizes`.
#[inline(never)]
pub(crate) fn churn(a: &dyn GlobalAlloc, sizes: &[usize], ops: usize) {
    let mut ring: [(*mut u8, usize); 64] = [(std::ptr::null_mut(), 0); 64];
    for i in 0..ops {
        let size = sizes[i % sizes.len()];
        let slot = &mut ring[i % 64];
        // SAFETY: each block is freed with the layout it was allocated with.
        unsafe {
            if !slot.0.is_null() {
                a.dealloc(slot.0, Layout::from_size_align_unchecked(slot.1, 8));
            }
            let p = a.alloc(Layout::from_size_align_unchecked(size, 8));
            *p = i as u8;
            *slot = (p, size);
        }
    }
    for (p, size) in ring {
        if !p.is_null() {
            // SAFETY: as above.
            unsafe { a.dealloc(p, Layout::from_size_align_unchecked(size, 8)) };
        }
    }
}

/// Runs `f` under `depth` extra frames.
#[inline(never)]
pub(crate) fn deep(depth: usize, f: &mut dyn FnMut()) {
    if depth == 0 {
        f();
    } else {
        deep(depth - 1, f);
        black_box(depth);
    }
}

/// Pins the calling thread to CPU `k` (modulo the CPUs there are): worker
/// `k` of every run then runs on the same CPU, so the two runs of a pair
/// meet the same caches and the same neighbours on a shared host.
pub(crate) fn pin_to_cpu(k: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside
    // it, and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(k % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The median of `v` (NaN when empty).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nanoseconds per call of `run(sizes, ops)`'s pairs, per thread, with
/// `threads` workers started together (worker `k` pinned to CPU `k`), each
/// warmed up first. Each worker times itself: with 2 cores and 2 busy
/// workers, a timing thread would not even be scheduled until a worker
/// finished.
pub(crate) fn time_threads<F>(threads: usize, sizes: &Arc<Vec<usize>>, run: F, ops: usize) -> f64
where
    F: Fn(&[usize], usize) + Copy + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|k| {
            let barrier = barrier.clone();
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                pin_to_cpu(k);
                // Warm up this thread's caches and the allocator's thread state.
                run(&sizes, 1000);
                barrier.wait();
                let start = Instant::now();
                run(&sizes, ops);
                (start, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    (end - start).as_nanos() as f64 / ops as f64
}
