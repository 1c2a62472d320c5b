//! Who holds it: Guppy's `byvia`, `byrcs`, `referrers`, `referents`, `sp`
//! and `unreachable`, on the heap graph of a heap's snapshot.
//!
//! A reference is named by the referrer's type and the field at its offset,
//! from the executable's debug info: the innermost struct of the program's
//! own on the way to the pointer names it (`Request.meta`,
//! `HtmlResponse.body`), through std's wrappers (`Arc`, `RefCell`,
//! `Option` …), with a dependency's struct inside it after it
//! (`Entry.data(Bytes.ptr)`); with no struct of the program's on the way,
//! the innermost dependency's (`Bytes.ptr`). A buffer of a `Vec<T>` whose
//! `T` has no such struct reads `Vec<Box<Plugin>>[*]`; a type the debug
//! info does not describe reads `Type (unknown layout)`, whatever the
//! offset. Roots read `static NAME`, `stack of thread 'name' (N)` (or
//! `stack of thread N` for a thread with no name), `stack of the main
//! thread`.

//!
//! This file builds a heap's graph and partitions by referrer (`byvia`,
//! `byrcs`, `referrers`, `referents`); `naming` names the references,
//! `paths` finds the shortest paths from the roots (`sp`), `lost` the
//! blocks no root reaches (`unreachable`) and `retained` what blocks keep
//! alive (`retained`, `dominators`).

mod lost;
mod naming;
mod paths;
mod retained;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{Heap, Kind, Partition, Row};
use crate::graph::{Graph, Node, Referrer, Young};
use crate::symbols::{self, BlockType};
use crate::tracker::Snapshot;
use naming::Namer;
pub use paths::{PathRow, Paths};
pub use retained::{MAX_RETAINER_ROWS, RetainerRow, Retainers};

/// What the graph views say in sampled mode, where a block's referrers are
/// known only when they were sampled too.
pub(crate) const SAMPLED_NOTE: &str = "Sampled mode: a block's referrers are known only when they \
     were sampled too; the others are under [referrers not in the sample]. For every block: \
     set_mode('exact'), let the program run, and ask again.";

/// The row of sampled blocks none of whose referrers was sampled.
const NOT_IN_SAMPLE: &str = "[referrers not in the sample]";

/// The row of blocks recorded in exact mode that nothing in the graph
/// refers to, while blocks from before the switch to exact mode (known
/// only by their samples) may be what holds them.
const BEFORE_EXACT: &str = "[held from before exact mode, or by none]";

/// The row of blocks nothing refers to, when the graph holds every block.
const NO_REFERENCE: &str = "[no reference]";

/// Why a graph view cannot answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The view needs every block, and the recorder samples.
    #[error(
        "this needs exact mode, where every block is known: set_mode('exact'), let the \
         program run a while, and ask again"
    )]
    NeedsExact,
    /// Exact mode since a switch: blocks from before it are known only by
    /// their samples, and may hold blocks that would look unreachable.
    #[error(
        "about {0} bytes of the live heap predate the switch to exact mode and are not in the \
         graph: a block held only from there would look unreachable. Ask again once those \
         blocks are freed, or start the program with LEAKSCOPE_MODE=exact"
    )]
    BeforeExact(u64),
    /// Exact mode since a switch, and every block asked about is a sample
    /// from before it.
    #[error(
        "these blocks were recorded as samples before the switch to exact mode: the graph \
         holds no path to them. Ask about blocks allocated since the switch"
    )]
    OnlySamples,
}

/// A block's identity across two snapshots: its address and its birth (an
/// address alone may have been freed and handed out again in between).
type BlockKey = (usize, Duration);

/// True for the types of blocks whose bytes are never references: text
/// and buffers of numbers. Their spare capacity may hold addresses left by
/// earlier blocks, so they are not read at all. A type that may have been
/// merged (`(?)`) is read all the same.
fn holds_no_references(ty: &str) -> bool {
    const NUMBERS: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "char",
    ];
    if matches!(ty, "String" | "Box<str>" | "Rc<str>" | "Arc<str>") {
        return true;
    }
    let elem = ty
        .strip_prefix("Vec<")
        .or_else(|| ty.strip_prefix("VecDeque<"))
        .or_else(|| ty.strip_prefix("Box<["))
        .and_then(|r| r.strip_suffix('>'))
        .map(|r| r.trim_end_matches(']'));
    elem.is_some_and(|e| NUMBERS.contains(&e))
}

/// How a block of type `ty` (its label, ` (?)` included) is read.
fn node_for(ty: &BlockType) -> Node {
    if !ty.ambiguous && holds_no_references(&ty.name) {
        Node::Opaque
    } else {
        Node::Scanned
    }
}

/// The program's blocks allocated since `snapshot` was taken, other than
/// those in `seen` (which gets them).
fn young_since(snapshot: &Snapshot, seen: &mut HashSet<BlockKey>) -> Vec<Young> {
    let now = crate::tracker::snapshot();
    if seen.is_empty() {
        seen.extend(snapshot.blocks.iter().map(|b| (b.addr, b.born)));
    }
    let old = seen;
    let mut types: HashMap<u32, Option<(Node, Box<str>)>> = HashMap::new();
    now.blocks
        .iter()
        .filter(|b| old.insert((b.addr, b.born)))
        .filter_map(|b| {
            let seen = types.entry(b.stack).or_insert_with(|| {
                let frames = symbols::resolve_stack(&now.stacks[b.stack as usize].frames);
                if symbols::tool_owned(&frames) {
                    return None;
                }
                let ty = symbols::block_type(&frames);
                Some((node_for(&ty), ty.name.into()))
            });
            let (node, ty) = seen.as_ref()?;
            Some(Young {
                block: *b,
                node: *node,
                ty: ty.clone(),
            })
        })
        .collect()
}

/// The rows of (label → members), largest first.
fn rows_from(groups: HashMap<String, Vec<u32>>, heap: &Heap) -> Vec<Row> {
    let groups = groups
        .into_iter()
        .map(|(label, members)| {
            let (c, s) = Heap::totals_of(
                members
                    .iter()
                    .map(|&i| &heap.data.snapshot.blocks[i as usize]),
            );
            (label, (c, s, members))
        })
        .collect();
    super::largest_first(groups)
}

impl Heap {
    /// The heap graph of this heap's snapshot, built on first use and
    /// shared by every heap cut from the snapshot.
    #[inline(never)]
    pub fn graph(&self) -> Arc<Graph> {
        let mark = 0u8;
        self.graph_below(std::ptr::addr_of!(mark) as usize)
    }

    /// [`Heap::graph`], asked from the frame that holds `mark`.
    pub(super) fn graph_below(&self, mark: usize) -> Arc<Graph> {
        self.data
            .graph
            .get_or_init(|| {
                let data = &self.data;
                let _doing = crate::sys::cancel::doing("reading the blocks' allocation stacks");
                // Resolved first: facts are kept with the heap, tracked.
                let nodes: Vec<Node> = data
                    .snapshot
                    .blocks
                    .iter()
                    .map(|b| {
                        crate::sys::cancel::point();
                        let f = data.facts(b.stack);
                        if f.tool_owned {
                            Node::Left
                        } else {
                            node_for(&f.ty)
                        }
                    })
                    .collect();
                // The graph is leakscope's memory (shown by `stats()`), not
                // the program's; it is given back untracked too.
                // (The `Arc` around it is the heap's, like the heap.)
                Arc::new(crate::tracker::untracked(|| {
                    let seen = std::cell::RefCell::new(HashSet::new());
                    let later = || young_since(&data.snapshot, &mut seen.borrow_mut());
                    Graph::build(&data.snapshot.blocks, &|i| nodes[i], mark, &later)
                }))
            })
            .clone()
    }

    /// At most `n` of this heap's blocks, spread evenly over it (all of
    /// them when it has no more): views that name what holds a set of
    /// blocks look at this many, whatever the heap's size.
    pub(crate) fn spread(&self, n: usize) -> Heap {
        let len = self.members.len();
        if len <= n {
            return self.clone();
        }
        let picked = (0..n).map(|k| self.members[k * len / n]).collect();
        self.sub_heap(picked)
    }

    /// The blocks of this heap recorded exactly, without the samples (a
    /// heap taken in exact mode after a switch from sampled mode holds
    /// both).
    pub(crate) fn recorded_exactly(&self) -> Heap {
        let exact = self
            .members
            .iter()
            .copied()
            .filter(|&j| !self.data.snapshot.blocks[j as usize].sampled)
            .collect();
        self.sub_heap(exact)
    }

    /// Whether the snapshot holds sampled blocks, which the graph knows no
    /// referrers of.
    fn has_samples(&self) -> bool {
        self.data.snapshot.blocks.iter().any(|b| b.sampled)
    }

    /// Whether only exact-mode records are missing from this heap's
    /// graph's knowledge because of a switch: the mode is exact now, yet
    /// samples from before remain.
    fn switched_to_exact(&self) -> bool {
        crate::tracker::mode() == crate::Mode::Exact && self.has_samples()
    }

    /// How much of the live heap the graph does not hold: the bytes the
    /// snapshot's samples stand for (an unbiased estimate of what is still
    /// live of the heap from before the switch to exact mode).
    fn outside_graph(&self) -> u64 {
        self.data
            .snapshot
            .blocks
            .iter()
            .filter(|b| b.sampled)
            .map(|b| b.est_bytes)
            .sum()
    }

    /// The note a graph view of this heap carries: what the graph cannot
    /// see (sampled mode's limits, or the blocks from before a switch to
    /// exact mode).
    pub fn graph_note(&self) -> Option<String> {
        if self.switched_to_exact() {
            return Some(format!(
                "Exact mode since a switch: about {} bytes of the live heap predate it, are \
                 known only by their samples and are not in the graph; a block held only from \
                 there is under {BEFORE_EXACT}.",
                self.outside_graph()
            ));
        }
        self.estimated()
            .then(|| SAMPLED_NOTE.to_string())
            .filter(|_| self.has_samples())
    }

    /// The row of a member of this heap that nothing in the graph refers
    /// to.
    fn unreferenced(&self, j: u32) -> &'static str {
        if self.data.snapshot.blocks[j as usize].sampled {
            NOT_IN_SAMPLE
        } else if self.has_samples() {
            BEFORE_EXACT
        } else {
            NO_REFERENCE
        }
    }

    /// Guppy's `byvia`: the blocks by the reference that holds them, one
    /// row per distinct name (`Request.meta`, `static REGISTRY`); a block
    /// held by several references is counted under each, and a block
    /// nothing refers to is under `[no reference]`.
    pub fn byvia(&self) -> Partition {
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let _doing = crate::sys::cancel::doing("naming the references that hold each block");
        let mut namer = Namer::new(self);
        let mut groups: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        for &j in self.members.iter() {
            crate::sys::cancel::point();
            names.clear();
            for r in namer.referrers(&graph, j) {
                let n = namer.name(&graph, r);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            if names.is_empty() {
                names.push(self.unreferenced(j).into());
            }
            if names.len() > 1 {
                names = one_per_field(names.drain(..));
            }
            for n in names.drain(..) {
                groups.entry(n).or_default().push(j);
            }
        }
        let groups = groups
            .into_iter()
            .map(|(name, blocks)| (name.to_string(), blocks))
            .collect();
        self.partition_of(Kind::Via, rows_from(groups, self))
    }

    /// Guppy's `byrcs`: the blocks by the kinds of their referrers (each
    /// block once, under the set of its referrers' types).
    pub fn byrcs(&self) -> Partition {
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let _doing = crate::sys::cancel::doing("grouping blocks by their referrers' types");
        let mut namer = Namer::new(self);
        let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
        for &j in self.members.iter() {
            crate::sys::cancel::point();
            let kinds: BTreeSet<String> = namer
                .referrers(&graph, j)
                .into_iter()
                .map(|r| namer.kind_of(&graph, r))
                .collect();
            let label = if kinds.is_empty() {
                self.unreferenced(j).to_string()
            } else {
                kinds.into_iter().collect::<Vec<_>>().join(", ")
            };
            groups.entry(label).or_default().push(j);
        }
        self.partition_of(Kind::Referrers, rows_from(groups, self))
    }

    fn sub_heap(&self, mut members: Vec<u32>) -> Heap {
        members.sort_unstable();
        members.dedup();
        Heap {
            data: self.data.clone(),
            members: members.into(),
        }
    }

    /// Guppy's `referrers`: the blocks that refer to a block of this heap
    /// (one step up), as a heap to partition again.
    pub fn referrers(&self) -> Heap {
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let mine: HashSet<u32> = self.members.iter().copied().collect();
        let mut namer = Namer::new(self);
        let up = self
            .members
            .iter()
            .flat_map(|&j| namer.referrers(&graph, j))
            .filter_map(|r| match r {
                Referrer::Block { block, .. }
                    if !mine.contains(&block) && graph.young(block).is_none() =>
                {
                    Some(block)
                }
                _ => None,
            })
            .collect();
        self.sub_heap(up)
    }

    /// Guppy's `referents`: the blocks a block of this heap refers to (one
    /// step down).
    pub fn referents(&self) -> Heap {
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let mine: HashSet<u32> = self.members.iter().copied().collect();
        let down = self
            .members
            .iter()
            .flat_map(|&i| graph.referents(i))
            .map(|(t, _)| t)
            .filter(|&t| !mine.contains(&t) && graph.young(t).is_none())
            .collect();
        self.sub_heap(down)
    }

    /// The identity of member `j` of the snapshot.
    fn key(&self, j: u32) -> BlockKey {
        let b = &self.data.snapshot.blocks[j as usize];
        (b.addr, b.born)
    }

    /// A fresh heap of every live block and its graph, asked from the
    /// frame that holds `mark`. The program runs on while its memory is
    /// read, so what one graph cannot find (a path, a referrer) may only
    /// have been moving: the views confirm it in this second one, matching
    /// blocks by [`Heap::key`].
    fn fresh_graph(mark: usize) -> (Heap, Arc<Graph>) {
        let again = Heap::from_snapshot(crate::tracker::snapshot(), |_| true)
            .unwrap_or_else(|e| panic!("{e}"));
        let graph = again.graph_below(mark);
        (again, graph)
    }
}

/// The names of a block's references, with those through one field of the
/// program's own struct made one: `Entry.data(Bytes.ptr)` and
/// `Entry.data(Bytes.data)` (two words of one `Bytes` that both point at
/// the block) read `Entry.data(Bytes.data, Bytes.ptr)`, so the block is
/// counted once under the field that holds it.
fn one_per_field(names: impl Iterator<Item = Arc<str>>) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = Vec::new();
    let mut by_field: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in names {
        match field_and_inner(&n) {
            Some((field, inner)) => {
                by_field
                    .entry(field.to_string())
                    .or_default()
                    .insert(inner.to_string());
            }
            None => out.push(n),
        }
    }
    for (field, inner) in by_field {
        let inner: Vec<String> = inner.into_iter().collect();
        out.push(format!("{field}({})", inner.join(", ")).into());
    }
    out
}

/// `("Entry.data", "Bytes.ptr")` for a name `Entry.data(Bytes.ptr)`: the
/// program's field and the dependency's inside it; `None` for any other
/// name (`Type (unknown layout)`, `stack of thread 'x' (2)`).
fn field_and_inner(name: &str) -> Option<(&str, &str)> {
    let body = name.strip_suffix(')')?;
    let mut depth = 0i32;
    for (i, c) in body.char_indices().rev() {
        match c {
            ')' | '>' | ']' => depth += 1,
            '<' | '[' => depth -= 1,
            '(' if depth == 0 => {
                let field = &body[..i];
                let plain = !field.is_empty() && !field.contains(' ') && field.contains('.');
                return plain.then_some((field, &body[i + 1..]));
            }
            '(' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_through_one_program_field_are_one() {
        let names = [
            "Entry.data(Bytes.ptr)",
            "Entry.data(Bytes.data)",
            "State.entries",
            "Slot<(u8, u8)>.value(Bytes.ptr)",
            "Type (unknown layout)",
            "stack of thread 'tokio-runtime-w' (2)",
            "stack of thread 'tokio-runtime-w' (3)",
        ];
        let mut got: Vec<String> = one_per_field(names.iter().map(|&n| Arc::from(n)))
            .iter()
            .map(|n| n.to_string())
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "Entry.data(Bytes.data, Bytes.ptr)",
                "Slot<(u8, u8)>.value(Bytes.ptr)",
                "State.entries",
                "Type (unknown layout)",
                "stack of thread 'tokio-runtime-w' (2)",
                "stack of thread 'tokio-runtime-w' (3)",
            ]
        );
    }

    #[test]
    fn text_and_number_buffers_are_not_read() {
        for ty in [
            "String",
            "Vec<u8>",
            "Box<[u64]>",
            "VecDeque<f32>",
            "Arc<str>",
        ] {
            assert!(holds_no_references(ty), "{ty}");
        }
        for ty in [
            "Vec<Box<u8>>",
            "Vec<String>",
            "Box<u64>",
            "Vec<*const u8>",
            "fn app::f",
        ] {
            assert!(!holds_no_references(ty), "{ty}");
        }
    }
}
