//! Retained sizes and the dominator tree, as Eclipse MAT has them for
//! Java: what would be freed with a set of blocks (`x.retained`), and the
//! blocks that keep the most alive (`dominators()`), grouped by type and
//! allocation site, each row a drill-down into what it retains.

use std::collections::HashMap;
use std::sync::Arc;

use super::naming::Namer;
use super::{GraphError, Heap};
use crate::graph::{Dominators, Graph, TOP};

/// Rows a dominators view keeps at most (the largest).
pub const MAX_RETAINER_ROWS: usize = 100;

/// The blocks that retain the most, grouped by type and allocation site:
/// MAT's dominator tree, one level of it (its `Display` is the console's
/// table).
#[derive(Clone)]
#[non_exhaustive]
pub struct Retainers {
    /// The rows, most retained first (at most [`MAX_RETAINER_ROWS`]).
    pub rows: Vec<RetainerRow>,
    /// Rows left out past [`MAX_RETAINER_ROWS`].
    pub more_rows: usize,
    /// Bytes of every block a root reaches: the whole the `%` column is
    /// of.
    pub reachable: u64,
    /// Blocks of the heap asked about that no root reaches (not in the
    /// tree; `hpy().unreachable()` lists them).
    pub unreachable: u64,
    /// What the rows are: the heap's blocks that no other of its blocks
    /// dominates (`None`), or what the row of this type and site retains.
    pub of: Option<(String, String)>,
    heap: Heap,
    tree: Arc<Dominators>,
}

/// Blocks of one type, allocated at one site, and what they retain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainerRow {
    /// The blocks' type.
    pub ty: String,
    /// Their allocation site.
    pub site: String,
    /// How many blocks.
    pub count: u64,
    /// Their own bytes.
    pub shallow: u64,
    /// The bytes they retain: theirs, and those of every block only they
    /// keep alive.
    pub retained: u64,
    members: Arc<[u32]>,
}

impl std::fmt::Debug for Retainers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retainers")
            .field("rows", &self.rows)
            .field("reachable", &self.reachable)
            .field("unreachable", &self.unreachable)
            .finish_non_exhaustive()
    }
}

impl Retainers {
    /// What this view keeps alive, for the console's budget (as
    /// [`Heap`]'s): its rows' blocks, and the snapshot it shares.
    pub(crate) fn memory(&self) -> (usize, (usize, usize)) {
        let (own, shared) = self.heap.memory();
        let rows: usize = self
            .rows
            .iter()
            .map(|r| size_of::<RetainerRow>() + r.ty.len() + r.site.len() + r.members.len() * 4)
            .sum();
        (own + rows, shared)
    }

    /// The rows, most retained first.
    pub fn rows(&self) -> &[RetainerRow] {
        &self.rows
    }

    /// What row `i` retains: the blocks its blocks dominate directly,
    /// grouped the same way (empty past the last row).
    pub fn row(&self, i: usize) -> Retainers {
        let Some(r) = self.rows.get(i) else {
            return self.with_rows(Vec::new(), Some((String::new(), String::new())));
        };
        let tree = &self.tree;
        let mine: std::collections::HashSet<u32> =
            r.members.iter().filter_map(|&j| tree.position(j)).collect();
        let n = self.heap.data.snapshot.blocks.len() as u32;
        let below: Vec<u32> = (0..n)
            .filter(|&j| {
                tree.position(j)
                    .is_some_and(|p| mine.contains(&tree.dominator_of(p)))
            })
            .collect();
        let rows = self.heap.retainer_rows(&below, tree);
        self.with_rows(rows, Some((r.ty.clone(), r.site.clone())))
    }

    /// Row `i`'s blocks as a heap, to partition further.
    pub fn heap(&self, i: usize) -> Heap {
        let members = self.rows.get(i).map_or(Vec::new(), |r| r.members.to_vec());
        self.heap.sub_heap(members)
    }

    /// The row that dominates the most of `blocks` (blocks of the same
    /// snapshot), and how many of them it dominates: where a set of blocks
    /// is kept alive from, MAT's accumulation point.
    pub fn dominating_row(&self, blocks: &Heap) -> Option<(usize, u64)> {
        if !Arc::ptr_eq(&self.heap.data, &blocks.data) {
            return None;
        }
        let tree = &self.tree;
        // Each position's row once found (`None`: no row above it).
        let mut row_at: HashMap<u32, Option<usize>> = HashMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            for &j in r.members.iter() {
                if let Some(p) = tree.position(j) {
                    row_at.insert(p, Some(i));
                }
            }
        }
        let mut counts = vec![0u64; self.rows.len()];
        let mut path = Vec::new();
        for &j in blocks.members.iter() {
            let Some(mut p) = tree.position(j) else {
                continue;
            };
            path.clear();
            let found = loop {
                if let Some(&known) = row_at.get(&p) {
                    break known;
                }
                if p == TOP {
                    break None;
                }
                path.push(p);
                p = tree.dominator_of(p);
            };
            for &q in &path {
                row_at.insert(q, found);
            }
            if let Some(i) = found {
                counts[i] += 1;
            }
        }
        let (i, &n) = counts
            .iter()
            .enumerate()
            .max_by_key(|&(i, n)| (*n, usize::MAX - i))?;
        (n > 0).then_some((i, n))
    }

    fn with_rows(&self, mut rows: Vec<RetainerRow>, of: Option<(String, String)>) -> Retainers {
        let more_rows = rows.len().saturating_sub(MAX_RETAINER_ROWS);
        rows.truncate(MAX_RETAINER_ROWS);
        Retainers {
            rows,
            more_rows,
            reachable: self.reachable,
            unreachable: 0,
            of,
            heap: self.heap.clone(),
            tree: self.tree.clone(),
        }
    }
}

impl Heap {
    /// A node's bytes for the tree: the program's blocks' sizes, nothing
    /// for leakscope's own.
    fn node_size(&self, graph: &Graph, j: u32) -> u64 {
        match self.data.snapshot.blocks.get(j as usize) {
            Some(b) if !self.data.facts(b.stack).tool_owned => b.size,
            Some(_) => 0,
            None => graph.young(j).map_or(0, |y| y.block.size),
        }
    }

    /// Why the graph cannot give exact retained sizes of this heap's
    /// snapshot, if it cannot.
    fn needs_every_block(&self) -> Result<(), GraphError> {
        if self.has_samples() {
            return Err(if crate::tracker::mode() == crate::Mode::Exact {
                GraphError::BeforeExact(self.outside_graph())
            } else {
                GraphError::NeedsExact
            });
        }
        Ok(())
    }

    /// The dominator tree of this heap's snapshot, built on first use and
    /// shared by every heap cut from it.
    fn dominator_tree(&self, graph: &Graph) -> Arc<Dominators> {
        self.data
            .dominators
            .get_or_init(|| {
                let mut namer = Namer::new(self);
                let size = |j: u32| self.node_size(graph, j);
                // The tree is leakscope's memory, not the program's.
                Arc::new(crate::tracker::untracked(|| {
                    graph.dominators(&size, &mut |block, offset| {
                        namer.may_point(graph, block, offset)
                    })
                }))
            })
            .clone()
    }

    /// The bytes that would be freed if this heap's blocks were: theirs,
    /// and those of every block the roots reach only through them (exact
    /// mode). MAT's retained size of a set.
    #[inline(never)]
    pub fn retained(&self) -> Result<u64, GraphError> {
        self.needs_every_block()?;
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let mut namer = Namer::new(self);
        let size = |j: u32| self.node_size(&graph, j);
        Ok(crate::tracker::untracked(|| {
            graph.retained_by(&self.members, &size, &mut |block, offset| {
                namer.may_point(&graph, block, offset)
            })
        }))
    }

    /// MAT's dominator tree: the blocks of this heap that no other of its
    /// blocks dominates, grouped by type and allocation site, most retained
    /// first; [`Retainers::row`] descends into what a row retains (exact
    /// mode).
    #[inline(never)]
    pub fn dominators(&self) -> Result<Retainers, GraphError> {
        self.needs_every_block()?;
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let tree = self.dominator_tree(&graph);
        // A member is on top unless another member is above it in the
        // tree: each position's answer is kept as it is found (0 not known
        // yet, 1 below a member, 2 not), so the tree is walked once.
        let mut member = vec![false; tree.positions()];
        for &j in self.members.iter() {
            if let Some(p) = tree.position(j) {
                member[p as usize] = true;
            }
        }
        let mut below = vec![0u8; tree.positions()];
        let mut path = Vec::new();
        let mut top = Vec::new();
        let mut unreachable = 0;
        for &j in self.members.iter() {
            let Some(p) = tree.position(j) else {
                unreachable += 1;
                continue;
            };
            let mut q = tree.dominator_of(p);
            path.clear();
            let answer = loop {
                if q == TOP {
                    break 2;
                }
                if member[q as usize] || below[q as usize] == 1 {
                    break 1;
                }
                if below[q as usize] == 2 {
                    break 2;
                }
                path.push(q);
                q = tree.dominator_of(q);
            };
            for &s in &path {
                below[s as usize] = answer;
            }
            if answer == 2 {
                top.push(j);
            }
        }
        let rows = self.retainer_rows(&top, &tree);
        let more_rows = rows.len().saturating_sub(MAX_RETAINER_ROWS);
        let mut rows = rows;
        rows.truncate(MAX_RETAINER_ROWS);
        Ok(Retainers {
            rows,
            more_rows,
            reachable: tree.reachable_bytes(),
            unreachable,
            of: None,
            heap: self.clone(),
            tree,
        })
    }

    /// `blocks` grouped by type and site, with what they retain, most
    /// first.
    fn retainer_rows(&self, blocks: &[u32], tree: &Dominators) -> Vec<RetainerRow> {
        let mut groups: HashMap<(String, String), (u64, u64, Vec<u32>)> = HashMap::new();
        for &j in blocks {
            let b = &self.data.snapshot.blocks[j as usize];
            let f = self.data.facts(b.stack);
            if f.tool_owned {
                continue;
            }
            let g = groups
                .entry((f.ty.name.clone(), f.site.clone()))
                .or_default();
            g.0 += b.size;
            g.1 += tree.retained(j).unwrap_or(b.size);
            g.2.push(j);
        }
        let mut rows: Vec<RetainerRow> = groups
            .into_iter()
            .map(|((ty, site), (shallow, retained, members))| RetainerRow {
                ty,
                site,
                count: members.len() as u64,
                shallow,
                retained,
                members: members.into(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.retained
                .cmp(&a.retained)
                .then_with(|| a.ty.cmp(&b.ty))
                .then_with(|| a.site.cmp(&b.site))
        });
        rows
    }
}
