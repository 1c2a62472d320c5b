//! Building the graph: an address index of the blocks, one pass reading
//! every block and root region, then the reverse edges and the walk from
//! the roots.

use std::collections::VecDeque;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::memory::{BATCH_BYTES, Piece, Reader};
use super::{FROM_ROOT, Graph, GraphStats, Region, RootRef, UNREACHED, roots};
use crate::sys::fork::{ForkSafe, InChild};
use crate::tracker::{self, LiveBlock};

const WORD: usize = size_of::<usize>();

/// What a snapshot's block is in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Not in the graph (leakscope's own memory).
    Left,
    /// A referent whose bytes are not read: its type holds no references.
    Opaque,
    /// A referent whose words are read for references.
    Scanned,
}

/// Finds the block that contains an address: blocks sorted by address, and
/// a table from coarse address chunks to the first block of each chunk.
struct Index {
    starts: Vec<usize>,
    ends: Vec<usize>,
    ids: Vec<u32>,
    lo: usize,
    hi: usize,
    shift: u32,
    /// `chunk[c]`: how many blocks start before chunk `c`.
    chunk: Vec<u32>,
}

/// Chunks in the table at most (16 MiB of it).
const MAX_CHUNKS: usize = 1 << 22;

impl Index {
    fn new(blocks: &[LiveBlock], node: &dyn Fn(usize) -> Node) -> Index {
        let mut order: Vec<u32> = (0..blocks.len() as u32)
            .filter(|&i| node(i as usize) != Node::Left && blocks[i as usize].size > 0)
            .collect();
        order.sort_unstable_by_key(|&i| blocks[i as usize].addr);
        let starts: Vec<usize> = order.iter().map(|&i| blocks[i as usize].addr).collect();
        let ends: Vec<usize> = order
            .iter()
            .map(|&i| blocks[i as usize].addr + blocks[i as usize].size as usize)
            .collect();
        let lo = starts.first().copied().unwrap_or(0);
        let hi = ends.iter().copied().max().unwrap_or(0);
        let span = hi.saturating_sub(lo).max(1);
        let mut shift = 12;
        while (span >> shift) >= MAX_CHUNKS {
            shift += 1;
        }
        let n_chunks = (span >> shift) + 2;
        let mut chunk = vec![0u32; n_chunks];
        let mut p = 0usize;
        for (c, slot) in chunk.iter_mut().enumerate() {
            let base = lo + (c << shift);
            while p < starts.len() && starts[p] < base {
                p += 1;
            }
            *slot = p as u32;
        }
        Index {
            starts,
            ends,
            ids: order,
            lo,
            hi,
            shift,
            chunk,
        }
    }

    /// The block (snapshot index) containing `addr`.
    #[inline]
    fn find(&self, addr: usize) -> Option<u32> {
        if addr < self.lo || addr >= self.hi {
            return None;
        }
        let c = (addr - self.lo) >> self.shift;
        let (a, b) = (self.chunk[c] as usize, self.chunk[c + 1] as usize);
        // The last block starting at or before `addr`: in this chunk, or the
        // last one before it (a block spanning chunks).
        let k = a + self.starts[a..b].partition_point(|&s| s <= addr);
        let k = k.checked_sub(1)?;
        (addr < self.ends[k]).then(|| self.ids[k])
    }

    /// True when a block starts inside `[start, end)`.
    fn any_block_in(&self, start: usize, end: usize) -> bool {
        let k = self.starts.partition_point(|&s| s < start);
        k < self.starts.len() && self.starts[k] < end
    }
}

/// Splits `[addr, addr + len)` into pieces the reader takes.
fn pieces_of(addr: usize, len: usize, owner: u32, out: &mut Vec<Piece>) {
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(BATCH_BYTES);
        out.push(Piece {
            addr: addr + offset,
            len: n,
            owner,
            offset,
        });
        offset += n;
    }
}

/// Each aligned word of `bytes` (which starts at an aligned address), with
/// its byte offset.
#[inline]
fn words(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    bytes.chunks_exact(WORD).enumerate().map(|(k, w)| {
        (
            k * WORD,
            usize::from_ne_bytes(w.try_into().unwrap_or([0; WORD])),
        )
    })
}

/// A block allocated after the snapshot, found when the scan is over: the
/// program went on while its memory was read, and a reference read then
/// may lead through a block the snapshot does not have (a linked list's
/// new head).
#[derive(Clone, Debug)]
pub struct Young {
    /// The block.
    pub block: LiveBlock,
    /// Whether its bytes are read.
    pub node: Node,
    /// Its type's name.
    pub ty: Box<str>,
}

/// Words that missed every block at most, kept to be tried against the
/// young blocks (16 B each).
const MAX_MISSES: usize = 1 << 21;

/// Rounds of young blocks at most.
const YOUNG_ROUNDS: usize = 4;

/// A word that pointed into no block of the snapshot but into memory that
/// may hold younger blocks: (owner, offset or address, value).
#[derive(Clone, Copy)]
struct Miss {
    owner: u32,
    at: usize,
    value: usize,
}

impl Graph {
    /// Builds the graph of `blocks` (a snapshot's). `node(i)` says what
    /// block `i` is: left out (leakscope's own: neither scanned nor a
    /// referent), a referent whose bytes hold no references (a `String`'s
    /// buffer: its spare capacity may hold stale addresses), or scanned.
    /// `stack_mark` is an address in the frame of the caller that asked:
    /// of this thread's stack only the part above it is scanned, since
    /// below it are leakscope's own frames, with the addresses its
    /// snapshot and views just handled. `later()` is asked, once the
    /// snapshot's blocks are read, for the blocks allocated since: they
    /// join the graph as referrers on the way (their ids follow the
    /// snapshot's), so that a structure that grew meanwhile is not cut.
    pub fn build(
        blocks: &[LiveBlock],
        node: &dyn Fn(usize) -> Node,
        stack_mark: usize,
        later: &dyn Fn() -> Vec<Young>,
    ) -> Graph {
        let _one = one_build_at_a_time();
        let _doing = crate::sys::cancel::doing("building the heap graph");
        crate::tracker::admit_view();
        let began = Instant::now();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut scan = Scan::new(blocks, node, &maps);
        scan.read_blocks();
        // Any address of this frame tells this thread's stack apart.
        let here = &began as *const Instant as usize;
        let regions = scan.read_roots(&maps, here, stack_mark);
        scan.follow_young(later);
        let mut g = scan.into_graph(regions);
        g.stats.memory = g.memory() as u64;
        g.stats.took = began.elapsed();
        g
    }

    /// Bytes the graph holds.
    fn memory(&self) -> usize {
        4 * (self.out_start.len()
            + self.out_to.len()
            + self.out_at.len()
            + self.in_start.len()
            + self.in_edge.len()
            + self.root_start.len()
            + self.root_in.len()
            + self.parent.len())
            + self.root_refs.len() * size_of::<RootRef>()
            + self.young.len() * size_of::<Young>()
            + self.young.iter().map(|y| y.ty.len()).sum::<usize>()
    }
}

/// Held by the build of a heap graph under way: one at a time in the
/// process. Each reads the whole heap and holds its edges; several at once
/// (eight console sessions asking together) would share the CPU and
/// multiply the memory.
static BUILDING: ForkSafe<()> = ForkSafe::new((), InChild::Keep);

/// Waits for the build under way, if any, to end (a watched wait stops as
/// its work would); then holds the place until dropped.
fn one_build_at_a_time() -> MutexGuard<'static, ()> {
    if let Some(one) = BUILDING.try_lock() {
        return one;
    }
    let _doing = crate::sys::cancel::doing("waiting for another view's heap graph");
    loop {
        std::thread::sleep(Duration::from_millis(5));
        crate::sys::cancel::batch_point();
        if let Some(one) = BUILDING.try_lock() {
            return one;
        }
    }
}

/// Memory where blocks younger than the snapshot may be: the anonymous
/// mappings that are not roots, sorted.
struct Heapish(Vec<(usize, usize)>);

impl Heapish {
    /// Whether `w` is an aligned address in that memory: a word worth
    /// trying against the young blocks once they are known.
    fn may_be_block(&self, w: usize) -> bool {
        w.is_multiple_of(WORD) && {
            let k = self.0.partition_point(|&(_, end)| end <= w);
            k < self.0.len() && self.0[k].0 <= w
        }
    }
}

/// One build of the graph, phase by phase: the snapshot's blocks are read,
/// then the roots, then the blocks allocated meanwhile; what was found
/// becomes the graph.
struct Scan<'a> {
    blocks: &'a [LiveBlock],
    node: &'a dyn Fn(usize) -> Node,
    index: Index,
    heapish: Heapish,
    reader: Reader,
    stats: GraphStats,
    pieces: Vec<Piece>,
    /// Edges (from, to, offset).
    edges: Vec<(u32, u32, u32)>,
    /// Words of blocks that missed every block, to try on the young ones.
    misses: Vec<Miss>,
    root_refs: Vec<RootRef>,
    /// The block each of `root_refs` points into.
    root_to: Vec<u32>,
    /// Words of roots that missed every block.
    root_misses: Vec<Miss>,
    young: Vec<Young>,
}

impl<'a> Scan<'a> {
    fn new(blocks: &'a [LiveBlock], node: &'a dyn Fn(usize) -> Node, maps: &str) -> Self {
        Scan {
            blocks,
            node,
            index: Index::new(blocks, node),
            heapish: Heapish(roots::anonymous(maps)),
            reader: Reader::new(),
            stats: GraphStats::default(),
            pieces: Vec::with_capacity(4096),
            edges: Vec::new(),
            misses: Vec::new(),
            root_refs: Vec::new(),
            root_to: Vec::new(),
            root_misses: Vec::new(),
            young: Vec::new(),
        }
    }

    /// Reads every scanned block of the snapshot for references, a batch
    /// of pieces at a time.
    fn read_blocks(&mut self) {
        let Scan {
            blocks,
            node,
            index,
            heapish,
            reader,
            stats,
            pieces,
            edges,
            misses,
            ..
        } = self;
        let n = blocks.len();
        let mut next = 0usize;
        while next < n {
            pieces.clear();
            let mut bytes = 0;
            while next < n && pieces.len() < 4096 && bytes < 4 * BATCH_BYTES {
                let b = &blocks[next];
                if node(next) == Node::Scanned && b.addr.is_multiple_of(WORD) {
                    pieces_of(b.addr, b.size as usize, next as u32, pieces);
                    bytes += b.size as usize;
                    stats.blocks += 1;
                }
                next += 1;
            }
            reader.read_all(pieces, |p, data| {
                stats.bytes_read += data.len() as u64;
                for (at, w) in words(data) {
                    match index.find(w) {
                        Some(t) if t != p.owner => {
                            edges.push((p.owner, t, (p.offset + at) as u32));
                        }
                        Some(_) => {}
                        None if misses.len() < MAX_MISSES && heapish.may_be_block(w) => misses
                            .push(Miss {
                                owner: p.owner,
                                at: p.offset + at,
                                value: w,
                            }),
                        None => {}
                    }
                }
            });
        }
    }

    /// Reads the root regions (statics, stacks, thread-locals, `brk`) for
    /// references; of this thread's stack (the one holding `here`), only
    /// the caller's part, above `stack_mark`. Returns the regions.
    fn read_roots(&mut self, maps: &str, here: usize, stack_mark: usize) -> Vec<Region> {
        let Scan {
            index,
            heapish,
            reader,
            stats,
            pieces,
            root_refs,
            root_to,
            root_misses,
            ..
        } = self;
        let threads = tracker::thread_local_addresses();
        let registered: Vec<u32> = threads.iter().map(|t| t.2).collect();
        let others = roots::other_stack_pointers(&registered);
        let threads: Vec<(usize, u32)> = threads.iter().map(|t| (t.0, t.1)).collect();
        let mut regions: Vec<Region> = roots::regions(maps, &threads, others.as_deref())
            .into_iter()
            .filter(|r| !index.any_block_in(r.start, r.end))
            .filter(|r| !is_tools_stack(&r.kind))
            .collect();
        for r in &mut regions {
            if (r.start..r.end).contains(&here) {
                r.start = stack_mark.clamp(r.start, r.end) & !(WORD - 1);
            }
        }
        pieces.clear();
        for (k, r) in regions.iter().enumerate() {
            pieces_of(r.start, r.end - r.start, k as u32, pieces);
        }
        // The recorder's own addresses of blocks are not references.
        let own = tracker::own_static_ranges();
        reader.read_all(pieces, |p, data| {
            stats.bytes_read += data.len() as u64;
            for (at, w) in words(data) {
                let addr = p.addr + at;
                if own.iter().any(|&(a, b)| (a..b).contains(&addr)) {
                    continue;
                }
                match index.find(w) {
                    Some(t) => {
                        root_refs.push(RootRef {
                            region: p.owner,
                            addr,
                        });
                        root_to.push(t);
                    }
                    None if root_misses.len() < MAX_MISSES && heapish.may_be_block(w) => {
                        root_misses.push(Miss {
                            owner: p.owner,
                            at: addr,
                            value: w,
                        })
                    }
                    None => {}
                }
            }
        });
        regions
    }

    /// Takes in the blocks allocated meanwhile: what missed may lead
    /// through them, and what they refer to may be younger still. A few
    /// rounds, each with a shorter window than the last.
    fn follow_young(&mut self, later: &dyn Fn() -> Vec<Young>) {
        let Scan {
            blocks,
            index,
            heapish,
            reader,
            stats,
            pieces,
            edges,
            misses,
            root_refs,
            root_to,
            root_misses,
            young,
            ..
        } = self;
        let n = blocks.len();
        let mut indexes: Vec<(u32, Index)> = Vec::new();
        for round in 0..YOUNG_ROUNDS {
            if misses.is_empty() && root_misses.is_empty() {
                break;
            }
            let fresh = later();
            if fresh.is_empty() {
                break;
            }
            let base = (n + young.len()) as u32;
            let fresh_blocks: Vec<LiveBlock> = fresh.iter().map(|y| y.block).collect();
            let fresh_index = Index::new(&fresh_blocks, &|k| fresh[k].node);
            for miss in misses.drain(..) {
                if let Some(k) = fresh_index.find(miss.value) {
                    edges.push((miss.owner, base + k, miss.at as u32));
                }
            }
            if round == 0 {
                for miss in root_misses.drain(..) {
                    if let Some(k) = fresh_index.find(miss.value) {
                        root_refs.push(RootRef {
                            region: miss.owner,
                            addr: miss.at,
                        });
                        root_to.push(base + k);
                    }
                }
            }
            root_misses.clear();
            indexes.push((base, fresh_index));
            pieces.clear();
            for (k, y) in fresh.iter().enumerate() {
                if y.node == Node::Scanned && y.block.addr.is_multiple_of(WORD) {
                    pieces_of(y.block.addr, y.block.size as usize, k as u32, pieces);
                }
            }
            reader.read_all(pieces, |p, data| {
                stats.bytes_read += data.len() as u64;
                let owner = base + p.owner;
                for (at, w) in words(data) {
                    let to = index
                        .find(w)
                        .or_else(|| indexes.iter().find_map(|(b, ix)| ix.find(w).map(|k| b + k)));
                    match to {
                        Some(t) if t != owner => edges.push((owner, t, (p.offset + at) as u32)),
                        Some(_) => {}
                        None if misses.len() < MAX_MISSES && heapish.may_be_block(w) => misses
                            .push(Miss {
                                owner,
                                at: p.offset + at,
                                value: w,
                            }),
                        None => {}
                    }
                }
            });
            young.extend(fresh);
        }
    }

    /// The graph of what was found: the edges grouped by referrer and by
    /// referent, and every block's shortest path from the roots.
    fn into_graph(self, regions: Vec<Region>) -> Graph {
        let Scan {
            blocks,
            node,
            index,
            heapish,
            reader,
            mut stats,
            pieces,
            edges,
            misses,
            mut root_refs,
            root_to,
            root_misses,
            young,
        } = self;
        stats.unreadable = reader.unreadable;
        // What only the reading needed goes before the graph is laid out.
        drop((index, heapish, reader, pieces, misses, root_misses));
        let (n, m) = (blocks.len(), young.len());
        stats.edges = edges.len() as u64;
        stats.root_refs = root_refs.len() as u64;
        // Edges grouped by referrer and by referent; the shortest paths.
        let layout = Layout::new(n, m, edges, root_to);
        let parent = &layout.parent;
        stats.unreachable = (0..n)
            .filter(|&j| node(j) != Node::Left && parent[j] == UNREACHED)
            .count() as u64;
        stats.young = m as u64;
        root_refs.shrink_to_fit();
        layout.into_graph(n, young, root_refs, regions, stats)
    }
}

/// A graph's edges grouped by referrer and by referent, its root
/// references grouped by referent, and every block's shortest path.
struct Layout {
    out_start: Vec<u32>,
    out_to: Vec<u32>,
    out_at: Vec<u32>,
    in_start: Vec<u32>,
    in_edge: Vec<u32>,
    root_start: Vec<u32>,
    root_in: Vec<u32>,
    parent: Vec<u32>,
}

impl Layout {
    /// The layout of `n` snapshot blocks and `m` young ones, with `edges`
    /// (referrer, referent, offset) and a root reference into each block
    /// of `root_to`.
    fn new(n: usize, m: usize, edges: Vec<(u32, u32, u32)>, root_to: Vec<u32>) -> Layout {
        let total = n + m;
        let (out_start, order) = reverse(total, &edges.iter().map(|e| e.0).collect::<Vec<_>>());
        let out_to: Vec<u32> = order.iter().map(|&e| edges[e as usize].1).collect();
        let out_at: Vec<u32> = order.iter().map(|&e| edges[e as usize].2).collect();
        drop((edges, order));
        let (in_start, in_edge) = reverse(total, &out_to);
        let (root_start, root_in) = reverse(total, &root_to);
        drop(root_to);
        let parent = shortest_paths(
            n,
            m,
            &out_start,
            &out_to,
            &root_start,
            &root_in,
            &mut |_, _| Trust::Sure,
        );
        Layout {
            out_start,
            out_to,
            out_at,
            in_start,
            in_edge,
            root_start,
            root_in,
            parent,
        }
    }

    fn into_graph(
        self,
        n: usize,
        young: Vec<Young>,
        root_refs: Vec<RootRef>,
        regions: Vec<Region>,
        stats: GraphStats,
    ) -> Graph {
        Graph {
            out_start: self.out_start,
            out_to: self.out_to,
            out_at: self.out_at,
            in_start: self.in_start,
            in_edge: self.in_edge,
            root_start: self.root_start,
            root_in: self.root_in,
            root_refs,
            regions,
            parent: self.parent,
            snapshot_blocks: n as u32,
            young,
            stats,
        }
    }
}

impl Graph {
    /// A graph of `n` blocks, the references `edges` (referrer, referent)
    /// between them and one root reference into each block of `roots`:
    /// for tests of what is computed on a graph.
    #[cfg(test)]
    pub(crate) fn from_edges(n: usize, edges: &[(u32, u32)], roots: &[u32]) -> Graph {
        let edges = edges
            .iter()
            .enumerate()
            .map(|(k, &(from, to))| (from, to, k as u32 * 8))
            .collect();
        let refs = roots
            .iter()
            .map(|_| RootRef { region: 0, addr: 0 })
            .collect();
        Layout::new(n, 0, edges, roots.to_vec()).into_graph(
            n,
            Vec::new(),
            refs,
            Vec::new(),
            GraphStats::default(),
        )
    }
}

/// Whether a root region is the stack of one of leakscope's own threads
/// (the console's, the growth history's …): what they hold is the tool's
/// work on the program's blocks, not the program's hold on them.
fn is_tools_stack(kind: &roots::RootKind) -> bool {
    match kind {
        roots::RootKind::Thread(index) => {
            tracker::thread_name(*index).is_some_and(|n| n.starts_with(OWN_THREAD_PREFIX))
        }
        _ => false,
    }
}

/// The name every thread leakscope starts begins with.
const OWN_THREAD_PREFIX: &str = "leakscope-";

/// How far a view trusts an edge when it looks for shortest paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A reference the referrer's layout describes.
    Sure,
    /// A word that may be a stale one: taken only for blocks no sure path
    /// reaches (the referrer's layout is unknown).
    Doubtful,
    /// Not a reference (the layout says the word holds a number).
    Never,
}

/// Breadth first from the roots: every block's shortest path, as the edge
/// (or `FROM_ROOT` and the root reference) it is reached by. First through
/// the edges `trust(referrer, edge)` calls sure; then, for what those leave
/// unreached, through the doubtful ones too. In each, first through the
/// snapshot's `n` blocks alone; then the `m` young ones join, for what
/// only they lead to (a reference read from a young block may be a stale
/// one its memory held before).
pub(super) fn shortest_paths(
    n: usize,
    m: usize,
    out_start: &[u32],
    out_to: &[u32],
    root_start: &[u32],
    root_in: &[u32],
    trust: &mut dyn FnMut(u32, u32) -> Trust,
) -> Vec<u32> {
    let total = n + m;
    let mut parent = vec![UNREACHED; total];
    let mut queue: VecDeque<u32> = VecDeque::new();
    let mut reached: Vec<u32> = Vec::new();
    let mut doubtful_seen = false;
    for take_doubtful in [false, true] {
        if take_doubtful && !doubtful_seen {
            break;
        }
        for with_young in [false, true] {
            if with_young && m == 0 {
                continue;
            }
            // A later round starts again from everything reached so far.
            queue.extend(reached.iter().copied());
            for j in 0..total {
                if parent[j] == UNREACHED
                    && (with_young || j < n)
                    && root_start[j] < root_start[j + 1]
                {
                    parent[j] = FROM_ROOT | root_in[root_start[j] as usize];
                    queue.push_back(j as u32);
                    reached.push(j as u32);
                }
            }
            while let Some(i) = queue.pop_front() {
                crate::sys::cancel::point();
                let (a, b) = (
                    out_start[i as usize] as usize,
                    out_start[i as usize + 1] as usize,
                );
                for (e, &t) in out_to.iter().enumerate().take(b).skip(a) {
                    let t = t as usize;
                    if parent[t] != UNREACHED || !(with_young || t < n) {
                        continue;
                    }
                    let take = match trust(i, e as u32) {
                        Trust::Sure => true,
                        Trust::Doubtful => {
                            doubtful_seen = true;
                            take_doubtful
                        }
                        Trust::Never => false,
                    };
                    if take {
                        parent[t] = e as u32;
                        queue.push_back(t as u32);
                        reached.push(t as u32);
                    }
                }
            }
        }
    }
    parent
}

/// The reverse of a list of edge targets, as (start per target, edge
/// indices).
fn reverse(n: usize, targets: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n + 1];
    for &t in targets {
        start[t as usize + 1] += 1;
    }
    for j in 0..n {
        start[j + 1] += start[j];
    }
    let mut fill = start.clone();
    let mut edges = vec![0u32; targets.len()];
    for (e, &t) in targets.iter().enumerate() {
        edges[fill[t as usize] as usize] = e as u32;
        fill[t as usize] += 1;
    }
    (start, edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_graph_is_built_at_a_time_and_a_watched_wait_stops() {
        use crate::sys::cancel::{Stop, Stopped, watched};
        let held = one_build_at_a_time();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(50);
            let stopped = watched(
                Box::new(move || (Instant::now() > deadline).then_some(Stop::Deadline)),
                || drop(one_build_at_a_time()),
            );
            tx.send(()).unwrap();
            // Unwatched, it waits its turn.
            drop(one_build_at_a_time());
            stopped
        });
        rx.recv().unwrap();
        drop(held);
        assert_eq!(
            waiter.join().unwrap(),
            Err(Stopped {
                why: Stop::Deadline,
                doing: "waiting for another view's heap graph"
            })
        );
    }
    use std::time::Duration;

    fn block(addr: usize, size: u64) -> LiveBlock {
        LiveBlock {
            addr,
            size,
            stack: 0,
            born: Duration::ZERO,
            thread: 0,
            est_bytes: size,
            est_blocks: 1.0,
            sampled: false,
        }
    }

    #[test]
    fn the_index_finds_interior_addresses_and_nothing_between_blocks() {
        let blocks = [block(0x1000, 16), block(0x5000, 0x3000), block(0x2000, 8)];
        let idx = Index::new(&blocks, &|_| Node::Scanned);
        assert_eq!(idx.find(0x1000), Some(0));
        assert_eq!(idx.find(0x100f), Some(0));
        assert_eq!(idx.find(0x1010), None);
        assert_eq!(idx.find(0x2007), Some(2));
        assert_eq!(idx.find(0x6fff), Some(1), "inside a block spanning chunks");
        assert_eq!(idx.find(0x8000), None);
        assert_eq!(idx.find(0xfff), None);
        assert!(idx.any_block_in(0x1800, 0x2001));
        assert!(!idx.any_block_in(0x2008, 0x5000));
    }

    #[test]
    fn reverse_lists_each_targets_edges() {
        let (start, edges) = reverse(3, &[2, 0, 2]);
        assert_eq!(start, [0, 1, 1, 3]);
        assert_eq!(edges, [1, 0, 2]);
    }
}
