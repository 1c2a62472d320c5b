//! Profiling aid: pure alloc/free churn through the global allocator, mode
//! from `LEAKSCOPE_MODE` (for `perf` or `valgrind --tool=callgrind`).
#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut ring: Vec<Option<Box<[u8]>>> = (0..64).map(|_| None).collect();
    let mut x = 1u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 16 + (x % 1000) as usize;
        // SAFETY: uninitialised bytes are never read.
        ring[i % 64] = Some(unsafe { Box::new_uninit_slice(size).assume_init() });
    }
    std::hint::black_box(ring);
}
