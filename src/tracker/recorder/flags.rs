//! The global flags that say whether any lane holds a block (the gate's
//! live flag) or a block the free filter does not know (its unfiltered
//! flag), counted as lanes fill and empty.

use super::super::gate::{GATE_LIVE, GATE_UNFILTERED, set_flag};
use crate::sys::lock::RawLocked;

/// How many lanes hold a live block, and how many hold one the filter does
/// not know: the gate's flags follow them.
pub(super) struct Flags {
    nonempty: u32,
    unfiltered: u32,
}

pub(super) static FLAGS: RawLocked<Flags> = RawLocked::new(Flags {
    nonempty: 0,
    unfiltered: 0,
});

/// A lane got its first live block.
pub(super) fn lane_filled() {
    let mut f = FLAGS.lock();
    f.nonempty += 1;
    set_flag(GATE_LIVE, true);
}

/// A lane lost its last live block.
pub(super) fn lane_emptied() {
    let mut f = FLAGS.lock();
    f.nonempty = f.nonempty.saturating_sub(1);
    set_flag(GATE_LIVE, f.nonempty > 0);
}

/// A lane got its first record the filter does not know (`true`), or lost
/// its last one.
pub(super) fn lane_unfiltered(any: bool) {
    let mut f = FLAGS.lock();
    if any {
        f.unfiltered += 1;
    } else {
        f.unfiltered = f.unfiltered.saturating_sub(1);
    }
    set_flag(GATE_UNFILTERED, f.unfiltered > 0);
}
