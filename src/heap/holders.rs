//! Who holds it: Guppy's `byvia`, `byrcs`, `referrers`, `referents`, `sp`
//! and `unreachable`, on the heap graph of a heap's snapshot.
//!
//! A reference is named by the referrer's type and the field at its offset,
//! from the executable's debug info: the innermost struct of the program's
//! own (or a dependency's) on the way to the pointer names it
//! (`Request.meta`, `HtmlResponse.body`), through std's wrappers (`Arc`,
//! `RefCell`, `Option` …). A buffer of a `Vec<T>` whose `T` has no such
//! struct reads `Vec<Box<Plugin>>[*]`; a type the debug info does not
//! describe reads `Type+0x28`. Roots read `static NAME`, `stack of thread
//! N`, `stack of the main thread`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::{Heap, Kind, Partition, Row};
use crate::graph::{Graph, Node, Referrer, RootKind, Young};
use crate::symbols::{self, BlockType, Layouts, Step};
use crate::tracker::Snapshot;

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

/// Wrappers the naming looks through: a field of theirs names nothing the
/// user wrote.
fn is_std(owner: &str) -> bool {
    let first = owner.split(['<', ':']).next().unwrap_or("");
    matches!(
        first,
        "core"
            | "alloc"
            | "std"
            | "hashbrown"
            | "leakscope"
            | "String"
            | "Vec"
            | "Box"
            | "Arc"
            | "Rc"
            | "VecDeque"
            | "BTreeMap"
            | "HashMap"
            | "HashSet"
            | "Option"
            | "RefCell"
            | "Mutex"
    ) || owner.starts_with('(')
        || owner.starts_with('[')
}

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
fn young_since(
    snapshot: &Snapshot,
    seen: &mut HashSet<(usize, std::time::Duration)>,
) -> Vec<Young> {
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

/// The name of a reference from a block of type `ty` (its label) at
/// `offset`, given the steps to that offset, if the debug info had them.
fn via_label(ty: &str, offset: u32, steps: Option<&[Step]>) -> String {
    let short = symbols::short_type(ty);
    let Some(steps) = steps.filter(|s| !s.is_empty()) else {
        return format!("{short}+{offset:#x}");
    };
    // The innermost struct of the program's on the way to the pointer.
    let program = steps.iter().rev().find_map(|s| match s {
        Step::Field { owner, field } if !is_std(owner) => Some((owner, field)),
        _ => None,
    });
    if let Some((owner, field)) = program {
        return format!("{}.{}", symbols::short_type(owner), field);
    }
    if let Step::Element = steps[0] {
        return match steps.get(1) {
            Some(Step::Field { field, owner }) if owner.starts_with('(') => {
                format!("{short}[*].{field}")
            }
            _ => format!("{short}[*]"),
        };
    }
    // Only std's types: the last field that is not a wrapper's own.
    let last = steps.iter().enumerate().rev().find_map(|(k, s)| match s {
        Step::Field { owner, field } if !is_wrapper(owner) => Some((k, owner, field)),
        _ => None,
    });
    let Some((k, owner, field)) = last else {
        return short;
    };
    let index = if matches!(steps.get(k + 1), Some(Step::Element)) {
        "[*]"
    } else {
        ""
    };
    // A B-tree's nodes are the map's own: name the map.
    let owner = if owner.starts_with("alloc::collections::btree::node::") {
        short
    } else {
        symbols::short_type(owner)
    };
    format!("{owner}.{field}{index}")
}

/// Types that only wrap a value: their field is not what a user would
/// name (`Arc`'s inner value, `RefCell`'s, a `MaybeUninit` slot's).
fn is_wrapper(owner: &str) -> bool {
    let head = owner.split('<').next().unwrap_or("");
    let last = head.rsplit("::").next().unwrap_or("");
    matches!(
        last,
        "ArcInner"
            | "RcInner"
            | "RcBox"
            | "MaybeUninit"
            | "ManuallyDrop"
            | "MaybeDangling"
            | "UnsafeCell"
            | "Cell"
            | "RefCell"
            | "Mutex"
            | "RwLock"
            | "Option"
            | "Some"
            | "InternalNode"
    )
}

/// Names references, caching by (stack, offset): blocks of one stack share
/// a type.
pub(super) struct Namer<'a> {
    heap: &'a Heap,
    layouts: Arc<Layouts>,
    cache: HashMap<(u32, u32), Arc<str>>,
    strides: HashMap<u32, Option<u64>>,
    statics: HashMap<usize, Arc<str>>,
}

impl<'a> Namer<'a> {
    pub(super) fn new(heap: &'a Heap) -> Self {
        Namer {
            heap,
            layouts: symbols::layouts(),
            cache: HashMap::new(),
            strides: HashMap::new(),
            statics: HashMap::new(),
        }
    }

    /// The name of one reference into a block.
    pub(super) fn name(&mut self, graph: &Graph, r: Referrer) -> Arc<str> {
        match r {
            Referrer::Block { block, offset } => {
                if let Some(y) = graph.young(block) {
                    let ty = y.ty.trim_end_matches(" (?)");
                    let steps = self.layouts.block_field(ty, y.block.size, offset as u64);
                    return via_label(ty, offset, steps.as_deref()).into();
                }
                let b = &self.heap.data.snapshot.blocks[block as usize];
                let ty = self.heap.data.facts(b.stack).ty.name.clone();
                let ty = ty.trim_end_matches(" (?)");
                // Every element of an array block is named alike: one
                // cache entry per field, not per element.
                let layouts = &self.layouts;
                let stride = *self
                    .strides
                    .entry(b.stack)
                    .or_insert_with(|| layouts.block_stride(ty, b.size));
                let offset = match stride {
                    Some(s) if s <= u64::from(u32::MAX) => offset % s as u32,
                    _ => offset,
                };
                let key = (b.stack, offset);
                if let Some(n) = self.cache.get(&key) {
                    return n.clone();
                }
                let steps = self.layouts.block_field(ty, b.size, offset as u64);
                let n: Arc<str> = via_label(ty, offset, steps.as_deref()).into();
                self.cache.insert(key, n.clone());
                n
            }
            Referrer::Root(i) => {
                let rr = graph.root_ref(i);
                match &graph.regions()[rr.region as usize].kind {
                    RootKind::Statics(file) => {
                        if let Some(n) = self.statics.get(&rr.addr) {
                            return n.clone();
                        }
                        let n: Arc<str> = match symbols::static_name(rr.addr) {
                            Some(s) => format!("static {}", symbols::short_type(&s)).into(),
                            None => format!("static data of {file}").into(),
                        };
                        self.statics.insert(rr.addr, n.clone());
                        n
                    }
                    RootKind::MainStack => "stack of the main thread".into(),
                    RootKind::Thread(t) => format!("stack of thread {t}").into(),
                    RootKind::OtherThread => "stack of a thread".into(),
                    RootKind::Brk => "the C library's brk heap".into(),
                }
            }
        }
    }

    /// The referrers' type (`byrcs`): a block's type, or what root it is.
    fn kind_of(&mut self, graph: &Graph, r: Referrer) -> String {
        match r {
            Referrer::Block { block, .. } => match graph.young(block) {
                Some(y) => symbols::short_type(&y.ty),
                None => {
                    let b = &self.heap.data.snapshot.blocks[block as usize];
                    symbols::short_type(&self.heap.data.facts(b.stack).ty.name)
                }
            },
            Referrer::Root(i) => {
                let rr = graph.root_ref(i);
                match &graph.regions()[rr.region as usize].kind {
                    RootKind::Statics(_) => "static".into(),
                    RootKind::Brk => "the C library's brk heap".into(),
                    _ => "stack".into(),
                }
            }
        }
    }
}

/// The names of a path's steps; a run of one step (a linked list's
/// `next`) is shown once.
/// Named paths from the roots, shared: every block's path is its parent's
/// plus one name (a name that repeats the last one marks it repeated), so
/// the paths of all blocks, however long their chains, cost one step each.
struct PathTrie {
    /// (prefix, name, repeated) of each path.
    nodes: Vec<(u32, Arc<str>, bool)>,
    index: HashMap<(u32, Arc<str>, bool), u32>,
    /// Each graph node's path, once known (`UNKNOWN`; `NO_PATH` when no
    /// root reaches it).
    of_block: Vec<u32>,
}

/// The empty path's id (a root's name follows it).
const EMPTY_PATH: u32 = u32::MAX;
const UNKNOWN: u32 = u32::MAX - 1;
const NO_PATH: u32 = u32::MAX - 2;

impl PathTrie {
    fn new(blocks: usize) -> PathTrie {
        PathTrie {
            nodes: Vec::new(),
            index: HashMap::new(),
            of_block: vec![UNKNOWN; blocks],
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
            match graph.parent_of(cur) {
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

fn rows_from(groups: HashMap<String, Vec<u32>>, heap: &Heap) -> Vec<Row> {
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(label, members)| {
            let (c, s) = Heap::totals_of(
                members
                    .iter()
                    .map(|&i| &heap.data.snapshot.blocks[i as usize]),
            );
            Row {
                label,
                count: c.round() as u64,
                size: s,
                members: members.into(),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.label.cmp(&b.label)));
    rows
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
                // Resolved first: facts are kept with the heap, tracked.
                let nodes: Vec<Node> = data
                    .snapshot
                    .blocks
                    .iter()
                    .map(|b| {
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
        let mut namer = Namer::new(self);
        let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
        let mut names: HashSet<Arc<str>> = HashSet::new();
        for &j in self.members.iter() {
            names.clear();
            for r in graph.referrers(j) {
                names.insert(namer.name(&graph, r));
            }
            if names.is_empty() {
                names.insert(self.unreferenced(j).into());
            }
            for n in names.drain() {
                groups.entry(n.to_string()).or_default().push(j);
            }
        }
        self.partition_of(Kind::Via, rows_from(groups, self))
    }

    /// Guppy's `byrcs`: the blocks by the kinds of their referrers (each
    /// block once, under the set of its referrers' types).
    pub fn byrcs(&self) -> Partition {
        let mark = 0u8;
        let graph = self.graph_below(std::ptr::addr_of!(mark) as usize);
        let mut namer = Namer::new(self);
        let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
        for &j in self.members.iter() {
            let kinds: BTreeSet<String> = graph
                .referrers(j)
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
        let up = self
            .members
            .iter()
            .flat_map(|&j| graph.referrers(j))
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
            let mut trie = PathTrie::new(graph.nodes());
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
            let again = Heap::from_snapshot(crate::tracker::snapshot(), |_| true);
            let graph2 = again.graph_below(std::ptr::addr_of!(mark) as usize);
            let at: HashMap<(usize, std::time::Duration), u32> = again
                .members
                .iter()
                .map(|&k| {
                    let b = &again.data.snapshot.blocks[k as usize];
                    ((b.addr, b.born), k)
                })
                .collect();
            let mut namer = Namer::new(&again);
            let mut trie = PathTrie::new(graph2.nodes());
            for j in missing {
                let b = &self.data.snapshot.blocks[j as usize];
                let path = at
                    .get(&(b.addr, b.born))
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
    pub(super) fn unreachable_below(&self, mark: usize) -> Result<Heap, GraphError> {
        if self.has_samples() {
            return Err(if crate::tracker::mode() == crate::Mode::Exact {
                GraphError::BeforeExact(self.outside_graph())
            } else {
                GraphError::NeedsExact
            });
        }
        let graph = self.graph_below(mark);
        let candidates: Vec<u32> = self
            .members
            .iter()
            .copied()
            .filter(|&j| !graph.reachable(j))
            .collect();
        if candidates.is_empty() {
            return Ok(self.sub_heap(candidates));
        }
        let again = Heap::from_snapshot(crate::tracker::snapshot(), |_| true);
        let graph2 = again.graph_below(mark);
        let still: HashSet<(usize, std::time::Duration)> = again
            .members
            .iter()
            .filter(|&&j| !graph2.reachable(j))
            .map(|&j| {
                let b = &again.data.snapshot.blocks[j as usize];
                (b.addr, b.born)
            })
            .collect();
        let lost = candidates
            .into_iter()
            .filter(|&j| {
                let b = &self.data.snapshot.blocks[j as usize];
                still.contains(&(b.addr, b.born))
            })
            .collect();
        Ok(self.sub_heap(lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(owner: &str, field: &str) -> Step {
        Step::Field {
            owner: owner.into(),
            field: field.into(),
        }
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

    #[test]
    fn the_innermost_program_struct_names_a_reference() {
        let steps = [
            field(
                "alloc::sync::ArcInner<leakscope::trackref::tracked::TrackedInner<app::HtmlResponse>>",
                "data",
            ),
            field(
                "leakscope::trackref::tracked::TrackedInner<app::HtmlResponse>",
                "value",
            ),
            field("app::HtmlResponse", "request"),
            field("app::Request", "meta"),
            field(
                "core::option::Option<leakscope::trackref::Tracked<app::HtmlResponse>>",
                "Some",
            ),
        ];
        assert_eq!(via_label("Arc<x>", 0x40, Some(&steps)), "Request.meta");
        let buffer = [Step::Element];
        assert_eq!(
            via_label("Vec<Box<app::Plugin>>", 8, Some(&buffer)),
            "Vec<Box<Plugin>>[*]"
        );
        let node = [
            field(
                "alloc::collections::btree::node::LeafNode<u64, Box<app::Session>>",
                "vals",
            ),
            Step::Element,
        ];
        assert_eq!(
            via_label("BTreeMap<u64, Box<app::Session>>", 0x60, Some(&node)),
            "BTreeMap<u64, Box<Session>>.vals[*]"
        );
        let mutex = [
            field("alloc::sync::ArcInner<Mutex<Vec<u8>>>", "data"),
            field("Mutex<Vec<u8>>", "data"),
        ];
        assert_eq!(
            via_label("Arc<Mutex<Vec<u8>>>", 0x18, Some(&mutex)),
            "Arc<Mutex<Vec<u8>>>"
        );
        assert_eq!(via_label("fn app::load", 0x28, None), "fn load+0x28");
    }
}
