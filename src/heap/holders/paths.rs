//! Guppy's `sp`: the shortest path from a root to each block, named
//! step by step and grouped by path.

use std::collections::HashMap;
use std::sync::Arc;

use super::naming::Namer;
use super::{BlockKey, GraphError, Heap};
use crate::graph::{Graph, Referrer};
use crate::symbols;

/// The shortest paths from the roots to a heap's blocks, the most common
/// first: Guppy's `sp`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Paths {
    /// Distinct paths, most blocks first.
    pub rows: Vec<PathRow>,
    /// Blocks of the heap, and their bytes.
    pub count: u64,
    /// Bytes of the heap.
    pub size: u64,
    /// Blocks of the heap that no root reaches.
    pub unreachable: u64,
    /// Blocks of the heap recorded as samples: not in the graph, so no
    /// path is known for them.
    pub from_samples: u64,
    /// Whether blocks from before a switch to exact mode remain (then a
    /// block no root reaches may be held from there).
    pub before_exact: bool,
}

/// One distinct path and the blocks at its end.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PathRow {
    /// The root, then each reference's name, then the blocks' type.
    pub steps: Vec<String>,
    /// Blocks at the end of it.
    pub count: u64,
    /// Their bytes.
    pub size: u64,
}

/// Paths kept in [`Paths::rows`] at most.
pub(crate) const MAX_PATHS: usize = 10;
/// Steps shown of a long path at most (its first and last ones).
pub(crate) const MAX_STEPS: usize = 12;

/// Named paths from the roots, shared: every block's path is its parent's
/// plus one name (a name that repeats the last one marks it repeated), so
/// the paths of all blocks, however long their chains, cost one step each;
/// a run of one step (a linked list's `next`) is shown once.
struct PathTrie {
    /// (prefix, name, repeated) of each path.
    nodes: Vec<(u32, Arc<str>, bool)>,
    index: HashMap<(u32, Arc<str>, bool), u32>,
    /// Each graph node's path, once known (`UNKNOWN`; `NO_PATH` when no
    /// root reaches it).
    of_block: Vec<u32>,
    /// The graph's shortest paths through the words that can be references
    /// (see `Namer::trust`): a `bool` or a `u16` field is never a step, and
    /// a word in a block of unknown layout only where no other path is.
    parents: Vec<u32>,
}

/// The empty path's id (a root's name follows it).
const EMPTY_PATH: u32 = u32::MAX;
const UNKNOWN: u32 = u32::MAX - 1;
const NO_PATH: u32 = u32::MAX - 2;

impl PathTrie {
    fn new(namer: &mut Namer<'_>, graph: &Graph) -> PathTrie {
        PathTrie {
            nodes: Vec::new(),
            index: HashMap::new(),
            of_block: vec![UNKNOWN; graph.nodes()],
            parents: graph.parents_trusting(|block, offset| namer.trust(graph, block, offset)),
        }
    }

    /// The path `prefix` followed by `name`.
    fn child(&mut self, prefix: u32, name: Arc<str>) -> u32 {
        let key = match self.nodes.get(prefix as usize) {
            Some((before, last, _)) if *last == name => (*before, name, true),
            _ => (prefix, name, false),
        };
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        self.nodes.push(key.clone());
        let id = (self.nodes.len() - 1) as u32;
        self.index.insert(key, id);
        id
    }

    /// Block `j`'s path, naming each step once for all the blocks whose
    /// paths share it; `None` when no root reaches it.
    fn path_of(&mut self, namer: &mut Namer<'_>, graph: &Graph, j: u32) -> Option<u32> {
        // Up the parents to a block whose path is known, or to the root.
        let mut chain = Vec::new();
        let mut cur = j;
        let mut base = EMPTY_PATH;
        loop {
            crate::sys::cancel::point();
            match self.of_block[cur as usize] {
                UNKNOWN => {}
                NO_PATH => {
                    base = NO_PATH;
                    break;
                }
                known => {
                    base = known;
                    break;
                }
            }
            match graph.parent_in(&self.parents, cur) {
                None => {
                    base = NO_PATH;
                    break;
                }
                Some(r @ Referrer::Root(_)) => {
                    chain.push((cur, r));
                    break;
                }
                Some(r @ Referrer::Block { block, .. }) => {
                    chain.push((cur, r));
                    cur = block;
                    if chain.len() > self.of_block.len() {
                        base = NO_PATH;
                        break;
                    }
                }
            }
        }
        // Down again, each block's path from its parent's.
        let mut path = base;
        for &(block, r) in chain.iter().rev() {
            crate::sys::cancel::point();
            if path != NO_PATH {
                path = self.child(path, namer.name(graph, r));
            }
            self.of_block[block as usize] = path;
        }
        let known = self.of_block[j as usize];
        (known != NO_PATH && known != UNKNOWN).then_some(known)
    }

    /// The names of path `id`, root first.
    fn names(&self, mut id: u32) -> Vec<Arc<str>> {
        let mut names = Vec::new();
        while let Some((prefix, name, repeated)) = self.nodes.get(id as usize) {
            names.push(if *repeated {
                format!("{name} (repeated)").into()
            } else {
                name.clone()
            });
            id = *prefix;
        }
        names.reverse();
        names
    }
}

impl Heap {
    /// Guppy's `sp`: the shortest path from a root to each block, as a
    /// chain of reference names, grouped; the 10 most common.
    pub fn sp(&self) -> Result<Paths, GraphError> {
        // Sampled blocks have no known path: the exact ones are answered,
        // and the others counted.
        let from_samples = self
            .members
            .iter()
            .filter(|&&j| self.data.snapshot.blocks[j as usize].sampled)
            .count() as u64;
        if from_samples == self.members.len() as u64 && from_samples > 0 {
            return Err(if crate::tracker::mode() == crate::Mode::Exact {
                GraphError::OnlySamples
            } else {
                GraphError::NeedsExact
            });
        }
        let before_exact = self.has_samples();
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let _doing = crate::sys::cancel::doing("finding each block's shortest path from a root");
        // Path → (its blocks, the blocks' type).
        type Groups = HashMap<Vec<Arc<str>>, (Vec<u32>, Vec<String>)>;
        let mut groups: Groups = HashMap::new();
        let ty_of = |j: u32| {
            let b = &self.data.snapshot.blocks[j as usize];
            symbols::short_type(&self.data.facts(b.stack).ty.name)
        };
        let mut missing = Vec::new();
        {
            let mut namer = Namer::new(self);
            let mut trie = PathTrie::new(&mut namer, &graph);
            let mut by_path: HashMap<u32, Vec<u32>> = HashMap::new();
            for &j in self.members.iter() {
                if self.data.snapshot.blocks[j as usize].sampled {
                    continue;
                }
                match trie.path_of(&mut namer, &graph, j) {
                    Some(path) => by_path.entry(path).or_default().push(j),
                    None => missing.push(j),
                }
            }
            for (path, members) in by_path {
                let e = groups.entry(trie.names(path)).or_default();
                if e.0.is_empty() {
                    e.1 = vec![ty_of(members[0])];
                }
                e.0.extend(members);
            }
        }
        // The program changed while its memory was read (a reference moved
        // from a structure not yet read to one already read): a fresh
        // snapshot's graph gives those blocks their paths.
        let mut unreachable = 0;
        if !missing.is_empty() {
            let (again, graph2) = Heap::fresh_graph(std::ptr::addr_of!(mark) as usize);
            let at: HashMap<BlockKey, u32> =
                again.members.iter().map(|&k| (again.key(k), k)).collect();
            let mut namer = Namer::new(&again);
            let mut trie = PathTrie::new(&mut namer, &graph2);
            for j in missing {
                crate::sys::cancel::point();
                let path = at
                    .get(&self.key(j))
                    .and_then(|&k| trie.path_of(&mut namer, &graph2, k));
                match path {
                    Some(path) => {
                        let e = groups.entry(trie.names(path)).or_default();
                        if e.0.is_empty() {
                            e.1 = vec![ty_of(j)];
                        }
                        e.0.push(j);
                    }
                    None => unreachable += 1,
                }
            }
        }
        let mut rows: Vec<PathRow> = groups
            .into_iter()
            .map(|(names, (members, last))| {
                let (c, s) = Heap::totals_of(
                    members
                        .iter()
                        .map(|&i| &self.data.snapshot.blocks[i as usize]),
                );
                let mut steps: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                if steps.len() > MAX_STEPS {
                    let cut = steps.len() - MAX_STEPS;
                    let keep_head = MAX_STEPS / 2;
                    steps.splice(
                        keep_head..keep_head + cut,
                        [format!("… {cut} more steps …")],
                    );
                }
                steps.extend(last);
                PathRow {
                    steps,
                    count: c.round() as u64,
                    size: s,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.size.cmp(&a.size))
                .then_with(|| a.steps.cmp(&b.steps))
        });
        rows.truncate(MAX_PATHS);
        let t = self.totals();
        Ok(Paths {
            rows,
            count: t.count,
            size: t.size,
            unreachable,
            from_samples,
            before_exact,
        })
    }
}
