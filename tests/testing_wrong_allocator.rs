//! `leakscope::testing` in a binary whose global allocator is not
//! leakscope's: a clear panic saying what to add, never silent zeros.

use std::panic::catch_unwind;

#[test]
fn measure_without_leakscope_allocator_panics_with_what_to_add() {
    let err = catch_unwind(|| {
        leakscope::testing::measure(|| Vec::<u8>::with_capacity(10));
    })
    .expect_err("must panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.starts_with("leakscope::testing::measure needs leakscope's allocator"),
        "{msg}"
    );
    assert!(
        msg.contains("static ALLOC: leakscope::Alloc = leakscope::Alloc::new();"),
        "{msg}"
    );
}
