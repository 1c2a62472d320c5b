//! Guppy's `unreachable`: the blocks no root reaches (`Rc`/`Arc` cycles,
//! `mem::forget`), confirmed in a second snapshot.

use std::collections::HashSet;

use super::{BlockKey, GraphError, Heap};

impl Heap {
    /// The blocks of this heap that no root reaches: `Rc`/`Arc` cycles and
    /// `mem::forget`, Valgrind's "definitely lost", while the program runs.
    ///
    /// The program keeps running while its memory is read, so a block can
    /// look unreachable only because the structure holding it was being
    /// changed (a vector growing into a new buffer). A block is reported
    /// only when a second snapshot's graph, taken right after, finds it
    /// unreachable too (same address, same birth).
    #[inline(never)]
    pub fn unreachable(&self) -> Result<Heap, GraphError> {
        let mark = 0u8;
        self.unreachable_below(std::ptr::addr_of!(mark) as usize)
    }

    /// [`Heap::unreachable`], asked from the frame that holds `mark`.
    pub(in crate::heap) fn unreachable_below(&self, mark: usize) -> Result<Heap, GraphError> {
        if self.has_samples() {
            return Err(if crate::tracker::mode() == crate::Mode::Exact {
                GraphError::BeforeExact(self.outside_graph())
            } else {
                GraphError::NeedsExact
            });
        }
        let graph = self.graph_below(mark);
        let _doing = crate::sys::cancel::doing("finding the blocks no root reaches");
        let candidates: Vec<u32> = self
            .members
            .iter()
            .copied()
            .filter(|&j| {
                crate::sys::cancel::point();
                !graph.reachable(j)
            })
            .collect();
        if candidates.is_empty() {
            return Ok(self.sub_heap(candidates));
        }
        let (again, graph2) = Heap::fresh_graph(mark);
        let still: HashSet<BlockKey> = again
            .members
            .iter()
            .filter(|&&j| !graph2.reachable(j))
            .map(|&j| again.key(j))
            .collect();
        let lost = candidates
            .into_iter()
            .filter(|&j| still.contains(&self.key(j)))
            .collect();
        Ok(self.sub_heap(lost))
    }
}
