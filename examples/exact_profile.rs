//! Profiling aid: exact-mode alloc/free churn (for `perf record`).
#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::with_default_mode(leakscope::Mode::Exact);
fn main() {
    let mut ring: Vec<Option<Vec<u8>>> = (0..64).map(|_| None).collect();
    let mut x = 1u64;
    for i in 0..3_000_000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ring[i % 64] = Some(vec![0u8; 16 + (x % 1000) as usize]);
    }
    std::hint::black_box(ring);
}
