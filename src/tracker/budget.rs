//! The budget of leakscope's own memory for the views people ask for (a
//! console line, an HTTP request): past it, a view that would make a new
//! snapshot or heap graph is refused with a message that says what holds
//! the memory, and the program runs on. Work that nobody asks from outside
//! (the program's own calls, the growth history) is never refused.
//!
//! The budget is a fixed part ([`DEFAULT_VIEWS_MEMORY`], set with
//! [`set_views_memory`] or the console's `Builder::views_memory`) plus a
//! quarter of the program's live bytes: a large program gets room for the
//! views its heap needs, and many sessions keeping heaps cannot take more.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::cancel::{self, Stop};

/// The fixed part of the views' budget by default (256 MiB).
pub const DEFAULT_VIEWS_MEMORY: u64 = 256 << 20;

/// The views' budget grows by this share of the program's live bytes
/// (percent).
pub const VIEWS_MEMORY_PERCENT_OF_LIVE: u64 = 25;

/// The fixed part in force.
static FIXED: AtomicU64 = AtomicU64::new(DEFAULT_VIEWS_MEMORY);

/// Sets the fixed part of the views' budget for the whole process.
pub fn set_views_memory(bytes: u64) {
    FIXED.store(bytes, Ordering::Relaxed);
}

/// The fixed part of the views' budget in force.
pub fn views_memory() -> u64 {
    FIXED.load(Ordering::Relaxed)
}

/// The views' budget now: the fixed part plus a quarter of the program's
/// live bytes `live`.
pub fn views_budget(live: u64) -> u64 {
    FIXED
        .load(Ordering::Relaxed)
        .saturating_add(live / 100 * VIEWS_MEMORY_PERCENT_OF_LIVE)
}

/// Refuses a view asked from outside when leakscope's own memory is past
/// the views' budget: the work unwinds to the console or the endpoint
/// with [`Stop::OverBudget`]. Unwatched work goes on.
pub(crate) fn admit_view() {
    let c = super::counter_totals();
    let live = c.alloc_bytes.saturating_sub(c.free_bytes);
    if c.own_bytes > views_budget(live) {
        cancel::refuse(Stop::OverBudget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_fixed_part_and_a_quarter_of_live() {
        assert_eq!(views_budget(0), DEFAULT_VIEWS_MEMORY);
        assert_eq!(views_budget(400 << 20), DEFAULT_VIEWS_MEMORY + (100 << 20));
        // No overflow for any live figure.
        assert!(views_budget(u64::MAX) > u64::MAX / 5);
    }

    #[test]
    fn an_unwatched_view_is_never_refused() {
        // Whatever the memory, nothing unwinds outside a watch.
        cancel::refuse(Stop::OverBudget);
        let r = cancel::watched(Box::new(|| None), || {
            cancel::refuse(Stop::OverBudget);
            1
        });
        assert_eq!(r.map_err(|s| s.why), Err(Stop::OverBudget));
    }
}
