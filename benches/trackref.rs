//! trackref's costs: register + drop of one `ObjectRef` on 1 thread and on
//! 2 threads registering the same class at once, and `prefs()` over 100 000
//! live instances of 20 classes.
//!
//! Run: `cargo bench --bench trackref`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use leakscope::trackref::{self, ObjectRef};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

struct Request {
    _r: ObjectRef<Request>,
}

/// ns per register + drop, per thread, fastest of `rounds`.
fn register_drop(threads: usize, ops: usize, rounds: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let barrier = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    drop(black_box(Request {
                        _r: ObjectRef::new(),
                    }));
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..ops {
                        drop(black_box(Request {
                            _r: ObjectRef::new(),
                        }));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap();
        let end = spans.iter().map(|s| s.1).max().unwrap();
        best = best.min((end - start).as_nanos() as f64 / ops as f64);
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let one = register_drop(1, 1_000_000, 7);
    let two = register_drop(2, 1_000_000, 7);
    println!("# trackref\n");
    println!("| measure | result | target |");
    println!("|---|---:|---:|");
    println!("| register + drop, 1 thread | {one:.1} ns | ≤ 100 ns |");
    println!(
        "| register + drop, 2 threads, same class | {two:.1} ns ({:.2}× one thread) | ≤ 2× |",
        two / one
    );

    const NAMES: [&str; 20] = [
        "C00", "C01", "C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11", "C12",
        "C13", "C14", "C15", "C16", "C17", "C18", "C19",
    ];
    let kept: Vec<ObjectRef<()>> = (0..100_000)
        .map(|i| ObjectRef::with_class(NAMES[i % 20], &[]))
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..9 {
        let start = Instant::now();
        black_box(trackref::format_live_refs(&[]));
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    println!("| prefs() over 100 000 instances of 20 classes | {best:.2} ms | ≤ 10 ms |");
    drop(kept);
}
