//! A lane's share of the measuring scopes (see `testing`): which live
//! blocks belong to a scope, and what each scope's blocks did here.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::super::live::AddrMap;

/// What a measuring scope's blocks in this lane are doing.
#[derive(Default)]
pub(crate) struct ScopeRec {
    pub(in super::super) live_blocks: u64,
    pub(in super::super) live_bytes: u64,
    /// Allocations per slot made in the scope: (blocks, bytes).
    pub(in super::super) allocated: AddrMap<(u64, u64)>,
}

/// The scopes a lane knows.
pub(crate) struct Scopes {
    /// Scope of each live block allocated in a measuring scope.
    pub(in super::super) scoped: AddrMap<u32>,
    /// Each open scope's figures.
    pub(in super::super) open: AddrMap<ScopeRec>,
}

impl Scopes {
    pub(super) const fn new() -> Self {
        Scopes {
            scoped: HashMap::with_hasher(BuildHasherDefault::new()),
            open: HashMap::with_hasher(BuildHasherDefault::new()),
        }
    }

    /// A block of `scope` became live (allocated, or put back after a
    /// realloc); `counted` adds it to the scope's allocations per stack.
    pub(super) fn gained(&mut self, addr: usize, scope: u32, slot: u32, size: u64, counted: bool) {
        let s = self.open.entry(scope as u64).or_default();
        s.live_blocks += 1;
        s.live_bytes += size;
        if counted {
            let e = s.allocated.entry(slot as u64).or_default();
            e.0 += 1;
            e.1 += size;
        }
        self.scoped.insert(addr as u64, scope);
    }

    /// A block left the live set: if it belonged to a scope, the scope
    /// loses it. Returns its scope (0: none).
    #[inline(always)]
    pub(super) fn lost(&mut self, addr: usize, size: u64) -> u32 {
        if self.scoped.is_empty() {
            return 0;
        }
        let Some(scope) = self.scoped.remove(&(addr as u64)) else {
            return 0;
        };
        if let Some(s) = self.open.get_mut(&(scope as u64)) {
            s.live_blocks -= 1;
            s.live_bytes -= size;
        }
        scope
    }

    /// Starts scope `scope` afresh.
    pub(super) fn open(&mut self, scope: u32) {
        self.close(scope);
        self.open.insert(scope as u64, ScopeRec::default());
    }

    /// Forgets scope `scope` and which blocks were its.
    pub(super) fn close(&mut self, scope: u32) {
        if self.open.remove(&(scope as u64)).is_some() {
            self.scoped.retain(|_, s| *s != scope);
        }
    }

    /// Marks the slots an open scope counts allocations of.
    pub(super) fn mark_counted(&self, keep: &mut [bool]) {
        for scope in self.open.values() {
            for &slot in scope.allocated.keys() {
                keep[slot as usize] = true;
            }
        }
    }

    /// Gives each counted slot its new number (see `Sites::collect`).
    pub(super) fn renumber(&mut self, renumbered: &[u32]) {
        for scope in self.open.values_mut() {
            scope.allocated = scope
                .allocated
                .drain()
                .map(|(slot, v)| (renumbered[slot as usize] as u64, v))
                .collect();
        }
    }
}
