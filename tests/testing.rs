//! leakscope::testing under the ordinary, parallel test harness: exact
//! counts per test while other tests allocate on other threads, helpful
//! failure messages, blocks freed later on another thread.

use std::panic::{AssertUnwindSafe, catch_unwind};

use leakscope::testing::measure;
use leakscope::{assert_allocs, assert_max_bytes, assert_no_leaks};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

#[test]
fn with_capacity_is_one_block_of_capacity_times_size() {
    let m = measure(|| Vec::<u64>::with_capacity(10));
    assert_eq!((m.allocated_blocks, m.allocated_bytes), (1, 80));
    assert_eq!((m.freed_blocks, m.freed_bytes), (0, 0));
    assert_eq!(m.peak_bytes, 80);
    assert_eq!((m.live_blocks(), m.live_bytes()), (1, 80));
    let v = m.into_value();
    assert_eq!(v.capacity(), 10);
}

#[test]
fn a_string_pushed_past_capacity_shows_the_realloc() {
    let m = measure(|| {
        let mut s = String::with_capacity(4);
        s.push_str("hello world"); // 11 bytes: grows to max(2 × 4, 11) = 11
        s
    });
    // One allocation of 4 bytes, then the realloc: one more block of 11
    // bytes allocated and the 4-byte one freed.
    assert_eq!((m.allocated_blocks, m.allocated_bytes), (2, 4 + 11));
    assert_eq!((m.freed_blocks, m.freed_bytes), (1, 4));
    assert_eq!(m.peak_bytes, 11);
    assert_eq!((m.live_blocks(), m.live_bytes()), (1, 11));
    assert_eq!(m.value, "hello world");
}

#[test]
fn freeing_inside_the_closure_leaves_nothing_live() {
    let m = measure(|| {
        let a: Vec<Box<[u8; 100]>> = (0..10).map(|_| Box::new([0u8; 100])).collect();
        drop(a);
    });
    // Ten boxes and the Vec holding them (collect allocates it exactly).
    assert_eq!(
        (m.allocated_blocks, m.allocated_bytes),
        (11, 10 * 100 + 10 * 8)
    );
    assert_eq!((m.freed_blocks, m.freed_bytes), (11, 10 * 100 + 10 * 8));
    assert_eq!(m.peak_bytes, 10 * 100 + 10 * 8);
    assert_eq!(m.live_blocks(), 0);
}

#[test]
fn assert_allocs_passes_on_the_exact_count_and_returns_the_value() {
    let v = assert_allocs!(1, { Vec::<u8>::with_capacity(100) });
    assert_eq!(v.capacity(), 100);
    assert_allocs!(0, {
        let x = 1 + 1;
        assert_eq!(x, 2);
    });
}

/// Three boxes and the Vec holding them: four blocks, 3 × 4 + 3 × 8 bytes.
#[inline(never)]
#[allow(clippy::vec_box)]
fn three_boxes() -> Vec<Box<u32>> {
    vec![Box::new(1), Box::new(2), Box::new(3)]
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion must fail");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn assert_allocs_failure_lists_the_sites() {
    let msg = panic_message(|| {
        assert_allocs!(2, { three_boxes() });
    });
    assert!(
        msg.starts_with("expected 2 allocations, the code made 4 (36 bytes). Where:"),
        "{msg}"
    );
    assert!(msg.contains("testing::three_boxes"), "{msg}");
    assert!(msg.contains("Box<u32>"), "{msg}");
    assert!(msg.contains("testing.rs:"), "{msg}");
}

#[test]
fn assert_max_bytes_passes_under_and_fails_over_the_limit() {
    let v = assert_max_bytes!(1000, { vec![0u8; 1000] });
    assert_eq!(v.len(), 1000);
    let msg = panic_message(|| {
        assert_max_bytes!(1000, {
            let big = vec![0u8; 5000];
            drop(big);
        });
    });
    assert!(
        msg.starts_with("the code's heap peaked at 5000 bytes, over the limit of 1000."),
        "{msg}"
    );
}

#[inline(never)]
fn leaky_function() {
    let leaked: &'static mut [u8; 48] = Box::leak(Box::new([1u8; 48]));
    std::hint::black_box(leaked);
}

#[test]
fn assert_no_leaks_passes_on_clean_code_and_names_the_leaking_function() {
    assert_no_leaks!({
        let v: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(v.len(), 50);
    });
    let msg = panic_message(|| {
        assert_no_leaks!({ leaky_function() });
    });
    assert!(
        msg.starts_with("the code leaked 1 blocks (48 bytes). Allocated at:"),
        "{msg}"
    );
    assert!(msg.contains("testing::leaky_function"), "{msg}");
}

#[test]
fn a_block_freed_later_on_another_thread_is_not_a_leak_once_freed() {
    let (tx, rx) = std::sync::mpsc::channel::<Box<[u8; 100]>>();
    // Warm the channel: its first send allocates the channel's own buffer.
    tx.send(Box::new([0u8; 100])).unwrap();
    drop(rx.recv().unwrap());
    let m = measure(|| {
        tx.send(Box::new([7u8; 100])).unwrap();
    });
    assert_eq!((m.allocated_blocks, m.allocated_bytes), (1, 100));
    assert_eq!(
        (m.live_blocks(), m.live_bytes()),
        (1, 100),
        "still in the channel"
    );
    let consumer = std::thread::spawn(move || {
        let b = rx.recv().unwrap();
        assert_eq!(b[0], 7);
        drop(b);
    });
    consumer.join().unwrap();
    assert_eq!(
        (m.live_blocks(), m.live_bytes()),
        (0, 0),
        "freed on the other thread"
    );
    assert!(m.live_sites().is_empty());
    drop(tx);
}

#[test]
fn nested_measurements_count_inner_work_in_the_outer_one() {
    let outer = measure(|| {
        let a = Vec::<u8>::with_capacity(10);
        let inner = measure(|| Vec::<u8>::with_capacity(20));
        assert_eq!((inner.allocated_blocks, inner.allocated_bytes), (1, 20));
        (a, inner.into_value())
    });
    assert_eq!((outer.allocated_blocks, outer.allocated_bytes), (2, 30));
    assert_eq!(outer.peak_bytes, 30);
}

#[test]
fn a_panicking_closure_leaves_the_thread_unmeasured() {
    let r = catch_unwind(|| {
        measure(|| panic!("boom"));
    });
    assert!(r.is_err());
    let m = measure(|| Vec::<u8>::with_capacity(7));
    assert_eq!((m.allocated_blocks, m.allocated_bytes), (1, 7));
}

/// Sixteen tests with known shapes, run in parallel by the harness; each
/// must see exactly its own allocations.
macro_rules! parallel_exact {
    ($($name:ident: $n:expr, $size:expr;)*) => {$(
        #[test]
        fn $name() {
            for _ in 0..20 {
                let m = measure(|| {
                    let v: Vec<Vec<u8>> = (0..$n).map(|_| Vec::with_capacity($size)).collect();
                    v
                });
                assert_eq!(m.allocated_blocks, $n + 1);
                assert_eq!(m.allocated_bytes, $n * $size + $n * 24);
                assert_eq!(m.freed_blocks, 0);
                assert_eq!(m.live_blocks(), $n + 1);
                drop(m);
            }
        }
    )*};
}

parallel_exact! {
    parallel_01: 1, 16;
    parallel_02: 2, 32;
    parallel_03: 3, 48;
    parallel_04: 4, 64;
    parallel_05: 5, 80;
    parallel_06: 6, 96;
    parallel_07: 7, 112;
    parallel_08: 8, 128;
    parallel_09: 9, 144;
    parallel_10: 10, 160;
    parallel_11: 11, 176;
    parallel_12: 12, 192;
    parallel_13: 13, 208;
    parallel_14: 14, 224;
    parallel_15: 15, 240;
    parallel_16: 16, 256;
}
