//! The heap graph of a snapshot: which block refers to which.
//!
//! Every live block's words are read (through `process_vm_readv` on the
//! process itself, so a block freed meanwhile reads as an error, never a
//! fault) and each aligned word that points into a live block, interior
//! pointers included, becomes an edge from the referrer to the referent,
//! with the referrer's byte offset. The roots are the memory that is not a
//! heap block: the writable data of the executable and its libraries
//! (statics), every thread's stack and thread-locals, and the C library's
//! `brk` heap. A breadth-first walk from the roots gives every reachable
//! block its shortest path; the rest are unreachable (`Rc` cycles,
//! `mem::forget`).
//!
//! The scan is conservative: an integer that happens to look like a pointer
//! into a block is taken for one, which can only make a block look held,
//! never the other way round.
//!
//! The graph is built on the caller's thread: allocating threads never
//! stop for it, and the recorder's locks are not taken at all. Its memory is
//! leakscope's own (shown by `stats()`), given back with the heap it
//! belongs to. The program runs on while its memory is read: a structure
//! changed meanwhile (a vector moved to a new buffer) can show a stale
//! reference, which is why `unreachable` confirms what it reports with a
//! second snapshot.

mod build;
mod dominators;
mod memory;
mod roots;

pub use build::{Node, Trust, Young};
pub use dominators::{Dominators, TOP};
pub use roots::{Region, RootKind};

use std::time::Duration;

/// `parent` value of a block no root reaches.
const UNREACHED: u32 = u32::MAX;
/// Set in `parent` when the block is referred to by a root reference.
const FROM_ROOT: u32 = 1 << 31;

/// A reference from root memory into a block.
#[derive(Clone, Copy, Debug)]
pub struct RootRef {
    /// Index of the root region in [`Graph::regions`].
    pub region: u32,
    /// Address of the word that holds the reference.
    pub addr: usize,
}

/// One reference into a block: from another block, or from a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Referrer {
    /// From block `block` (an index into the snapshot's blocks), in its word
    /// at byte `offset`.
    Block {
        /// The referring block.
        block: u32,
        /// Byte offset of the reference inside it.
        offset: u32,
    },
    /// From root memory: index into the graph's root references.
    Root(u32),
}

/// What building the graph did, for the views' headings and the benches.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct GraphStats {
    /// Blocks scanned.
    pub blocks: u64,
    /// Bytes read from blocks and roots.
    pub bytes_read: u64,
    /// References between blocks.
    pub edges: u64,
    /// References from roots.
    pub root_refs: u64,
    /// Blocks (or root pieces) that could not be read: freed and given
    /// back while the scan ran.
    pub unreadable: u64,
    /// Blocks of the snapshot no root reaches.
    pub unreachable: u64,
    /// Blocks allocated while the scan ran that references led through.
    pub young: u64,
    /// Time the build took.
    pub took: Duration,
    /// Bytes the graph holds.
    pub memory: u64,
}

/// The heap graph of one snapshot's blocks.
pub struct Graph {
    /// Edges out of block `i`: `out_to[out_start[i]..out_start[i + 1]]`,
    /// with the offsets in `out_at`.
    out_start: Vec<u32>,
    out_to: Vec<u32>,
    out_at: Vec<u32>,
    /// Edges into block `j`: indices into `out_*`.
    in_start: Vec<u32>,
    in_edge: Vec<u32>,
    /// Root references into block `j`: indices into `root_refs`.
    root_start: Vec<u32>,
    root_in: Vec<u32>,
    root_refs: Vec<RootRef>,
    regions: Vec<Region>,
    /// The shortest path's last step into each block: an edge index, a
    /// root reference (`FROM_ROOT | index`) or `UNREACHED`.
    parent: Vec<u32>,
    /// Blocks `0..snapshot_blocks` are the snapshot's; the rest are
    /// `young`, allocated while the scan ran.
    snapshot_blocks: u32,
    young: Vec<Young>,
    stats: GraphStats,
}

impl Drop for Graph {
    fn drop(&mut self) {
        // Built untracked (leakscope's own memory): given back the same way.
        let parts = (
            std::mem::take(&mut self.out_start),
            std::mem::take(&mut self.out_to),
            std::mem::take(&mut self.out_at),
            std::mem::take(&mut self.in_start),
            std::mem::take(&mut self.in_edge),
            std::mem::take(&mut self.root_start),
            std::mem::take(&mut self.root_in),
            std::mem::take(&mut self.root_refs),
            std::mem::take(&mut self.regions),
            std::mem::take(&mut self.parent),
            std::mem::take(&mut self.young),
        );
        crate::tracker::untracked(|| drop(parts));
    }
}

impl Graph {
    /// What building it did.
    pub fn stats(&self) -> GraphStats {
        self.stats
    }

    /// The root regions that were scanned.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The block allocated during the scan with graph id `id`, if `id` is
    /// not one of the snapshot's.
    pub fn young(&self, id: u32) -> Option<&Young> {
        id.checked_sub(self.snapshot_blocks)
            .and_then(|k| self.young.get(k as usize))
    }

    /// The root reference with index `i`.
    pub fn root_ref(&self, i: u32) -> RootRef {
        self.root_refs[i as usize]
    }

    fn referrer_of_edge(&self, e: u32) -> Referrer {
        // The block whose out-range holds edge `e`.
        let block = self.out_start.partition_point(|&s| s <= e) - 1;
        Referrer::Block {
            block: block as u32,
            offset: self.out_at[e as usize],
        }
    }

    /// Every reference into block `j`: roots first, then blocks.
    pub fn referrers(&self, j: u32) -> impl Iterator<Item = Referrer> + '_ {
        let j = j as usize;
        let roots = self.root_in[self.root_start[j] as usize..self.root_start[j + 1] as usize]
            .iter()
            .map(|&r| Referrer::Root(r));
        let blocks = self.in_edge[self.in_start[j] as usize..self.in_start[j + 1] as usize]
            .iter()
            .map(move |&e| self.referrer_of_edge(e));
        roots.chain(blocks)
    }

    /// The blocks block `i` refers to, with the offset of each reference.
    pub fn referents(&self, i: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (a, b) = (
            self.out_start[i as usize] as usize,
            self.out_start[i as usize + 1] as usize,
        );
        self.out_to[a..b]
            .iter()
            .copied()
            .zip(self.out_at[a..b].iter().copied())
    }

    /// How many nodes the graph has: the snapshot's blocks, then the blocks
    /// allocated while it was scanned.
    pub fn nodes(&self) -> usize {
        self.parent.len()
    }

    /// True when some root reaches block `j`.
    pub fn reachable(&self, j: u32) -> bool {
        self.parent[j as usize] != UNREACHED
    }

    /// The last step of the shortest path from a root to block `j`: the
    /// root reference, or the block reference, that reaches it; `None` when
    /// no root reaches it.
    pub fn parent_of(&self, j: u32) -> Option<Referrer> {
        self.parent_in(&self.parent, j)
    }

    /// The shortest paths again, through only the block references that
    /// `keep(referrer, offset)` accepts (every root reference is kept): a
    /// parent table for [`Graph::parent_in`]. Views that name each step use
    /// it to leave out words that the referrer's layout says cannot be
    /// references.
    pub fn parents_through(&self, mut keep: impl FnMut(u32, u32) -> bool) -> Vec<u32> {
        self.parents_trusting(|from, at| {
            if keep(from, at) {
                Trust::Sure
            } else {
                Trust::Never
            }
        })
    }

    /// [`Graph::parents_through`] with doubt: a block that sure references
    /// reach gets its shortest path through them; only the others get one
    /// through the references `trust(referrer, offset)` calls doubtful.
    pub fn parents_trusting(&self, mut trust: impl FnMut(u32, u32) -> Trust) -> Vec<u32> {
        build::shortest_paths(
            self.snapshot_blocks as usize,
            self.young.len(),
            &self.out_start,
            &self.out_to,
            &self.root_start,
            &self.root_in,
            &mut |from, e| trust(from, self.out_at[e as usize]),
        )
    }

    /// [`Graph::parent_of`] in a parent table of [`Graph::parents_through`].
    pub fn parent_in(&self, parents: &[u32], j: u32) -> Option<Referrer> {
        let p = *parents.get(j as usize)?;
        if p == UNREACHED {
            None
        } else if p & FROM_ROOT != 0 {
            Some(Referrer::Root(p & !FROM_ROOT))
        } else {
            Some(self.referrer_of_edge(p))
        }
    }

    /// The shortest path from a root to block `j`, root first: `None` when
    /// no root reaches it.
    pub fn path_to(&self, j: u32) -> Option<Vec<Referrer>> {
        let mut steps = Vec::new();
        let mut cur = j as usize;
        // A path is at most as long as there are blocks.
        for _ in 0..=self.parent.len() {
            let p = self.parent[cur];
            if p == UNREACHED {
                return None;
            }
            if p & FROM_ROOT != 0 && p != UNREACHED {
                steps.push(Referrer::Root(p & !FROM_ROOT));
                steps.reverse();
                return Some(steps);
            }
            let r = self.referrer_of_edge(p);
            steps.push(r);
            let Referrer::Block { block, .. } = r else {
                return None;
            };
            cur = block as usize;
        }
        None
    }
}
