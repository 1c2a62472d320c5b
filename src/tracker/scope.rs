//! Measuring scopes (`testing::measure`): while a thread is in one, every
//! allocation it makes is counted in the scope and recorded exactly with
//! the scope's id.

use std::sync::atomic::Ordering;

use super::gate::count_scoped_thread;
use super::init::ensure_init;
use super::settings::MODE_SAMPLED;
pub(crate) use super::thread::ScopeFigures;
use super::thread::{STATE_NEW, THREAD, register_thread};

/// The outer scope a thread was in when it entered one: what
/// [`exit_scope`] and [`discard_scope`] restore.
#[must_use]
pub(crate) struct SavedScope {
    prev: u32,
    outer: ScopeFigures,
    outer_net: i64,
}

/// Enters scope `id` on this thread. Registers the thread if needed,
/// whatever the mode.
pub(crate) fn enter_scope(id: u32) -> SavedScope {
    ensure_init(MODE_SAMPLED);
    THREAD.with(|t| {
        if t.state.get() == STATE_NEW {
            register_thread(t);
        }
        let outer_net = t.scope_counts.net.get();
        let outer = t.scope_counts.take();
        if t.scope.get() == 0 {
            // Before anything is allocated in the scope: the gate must send
            // this thread's allocations to the tracked paths.
            count_scoped_thread(true);
        }
        let prev = t.scope.replace(id);
        t.refresh_fast();
        SavedScope {
            prev,
            outer,
            outer_net,
        }
    })
}

/// Leaves the scope entered by [`enter_scope`]: returns its figures and
/// restores the outer scope, which also counts them.
pub(crate) fn exit_scope(saved: SavedScope) -> ScopeFigures {
    THREAD.with(|t| {
        let inner = t.scope_counts.figures();
        if saved.prev != 0 {
            t.scope_counts.merge(saved.outer, saved.outer_net);
        } else {
            t.scope_counts.take();
        }
        t.scope.set(saved.prev);
        t.refresh_fast();
        if saved.prev == 0 {
            count_scoped_thread(false);
        }
        inner
    })
}

/// Leaves a scope entered by [`enter_scope`] as if it never happened: the
/// outer scope's figures are restored untouched.
pub(crate) fn discard_scope(saved: SavedScope) {
    THREAD.with(|t| {
        t.scope_counts.take();
        if saved.prev != 0 {
            t.scope_counts.merge(saved.outer, saved.outer_net);
        }
        t.scope.set(saved.prev);
        t.refresh_fast();
        if saved.prev == 0 {
            count_scoped_thread(false);
        }
    })
}

/// How many blocks this thread has counted (whether its allocations reach
/// leakscope: the thread is registered and its counters move).
pub(crate) fn thread_alloc_blocks() -> u64 {
    THREAD.with(|t| t.shared.counters.alloc_blocks.load(Ordering::Relaxed))
}

/// Starts keeping scope `id`'s records in the recorder (its blocks and
/// per-stack allocations).
pub(crate) fn open_records(id: u32) {
    super::untracked(|| super::recorder::open_scope(id));
}

/// Forgets scope `id`'s records.
pub(crate) fn close_records(id: u32) {
    super::untracked(|| super::recorder::close_scope(id));
}

pub(crate) use super::recorder::scope_report;
