//! Building the graph: an address index of the blocks, one pass reading
//! every block and root region, then the reverse edges and the walk from
//! the roots.

use std::collections::VecDeque;
use std::time::Instant;

use super::memory::{BATCH_BYTES, Piece, Reader};
use super::{FROM_ROOT, Graph, GraphStats, Region, RootRef, UNREACHED, roots};
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

    fn memory(&self) -> usize {
        self.starts.capacity() * WORD * 2 + self.ids.capacity() * 4 + self.chunk.capacity() * 4
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

impl Graph {
    /// Builds the graph of `blocks` (a snapshot's). `node(i)` says what
    /// block `i` is: left out (leakscope's own: neither scanned nor a
    /// referent), a referent whose bytes hold no references (a `String`'s
    /// buffer: its spare capacity may hold stale addresses), or scanned. `stack_mark` is an address in the frame of
    /// the caller that asked: of this thread's stack only the part above it
    /// is scanned, since below it are leakscope's own frames, with the
    /// addresses its snapshot and views just handled.
    pub fn build(blocks: &[LiveBlock], node: &dyn Fn(usize) -> Node, stack_mark: usize) -> Graph {
        let began = Instant::now();
        let n = blocks.len();
        let index = Index::new(blocks, node);
        let mut reader = Reader::new();
        let mut stats = GraphStats::default();

        // Edges out of every block, in block order.
        let mut out_start = vec![0u32; n + 1];
        let mut out_to: Vec<u32> = Vec::new();
        let mut out_at: Vec<u32> = Vec::new();
        let mut pieces = Vec::with_capacity(4096);
        let mut next = 0usize;
        let mut filled = 0usize;
        while next < n {
            pieces.clear();
            let mut bytes = 0;
            while next < n && pieces.len() < 4096 && bytes < 4 * BATCH_BYTES {
                let b = &blocks[next];
                if node(next) == Node::Scanned && b.addr.is_multiple_of(WORD) {
                    pieces_of(b.addr, b.size as usize, next as u32, &mut pieces);
                    bytes += b.size as usize;
                    stats.blocks += 1;
                }
                next += 1;
            }
            reader.read_all(&pieces, |p, data| {
                let owner = p.owner as usize;
                while filled < owner {
                    filled += 1;
                    out_start[filled] = out_to.len() as u32;
                }
                stats.bytes_read += data.len() as u64;
                for (at, w) in words(data) {
                    if let Some(t) = index.find(w)
                        && t as usize != owner
                    {
                        out_to.push(t);
                        out_at.push((p.offset + at) as u32);
                    }
                }
            });
        }
        while filled < n {
            filled += 1;
            out_start[filled] = out_to.len() as u32;
        }
        stats.edges = out_to.len() as u64;

        // References from the roots; of this thread's stack, the caller's part.
        let here = &began as *const Instant as usize;
        let threads = tracker::thread_local_addresses();
        let mut regions: Vec<Region> = roots::current(&threads)
            .into_iter()
            .filter(|r| !index.any_block_in(r.start, r.end))
            .collect();
        for r in &mut regions {
            if (r.start..r.end).contains(&here) {
                r.start = stack_mark.clamp(r.start, r.end) & !(WORD - 1);
            }
        }
        let mut root_refs: Vec<RootRef> = Vec::new();
        let mut root_to: Vec<u32> = Vec::new();
        pieces.clear();
        for (k, r) in regions.iter().enumerate() {
            pieces_of(r.start, r.end - r.start, k as u32, &mut pieces);
        }
        // The recorder's own addresses of blocks are not references.
        let own = tracker::own_static_ranges();
        reader.read_all(&pieces, |p, data| {
            stats.bytes_read += data.len() as u64;
            for (at, w) in words(data) {
                let addr = p.addr + at;
                if own.iter().any(|&(a, b)| (a..b).contains(&addr)) {
                    continue;
                }
                if let Some(t) = index.find(w) {
                    root_refs.push(RootRef {
                        region: p.owner,
                        addr: p.addr + at,
                    });
                    root_to.push(t);
                }
            }
        });
        stats.root_refs = root_refs.len() as u64;
        stats.unreadable = reader.unreadable;
        let index_memory = index.memory();
        drop(index);
        drop(reader);

        let (in_start, in_edge) = reverse(n, &out_to);
        let (root_start, root_in) = reverse(n, &root_to);
        drop(root_to);

        // Breadth first from the roots: every block's shortest path.
        let mut parent = vec![UNREACHED; n];
        let mut queue: VecDeque<u32> = VecDeque::new();
        for j in 0..n {
            if let Some(&r) = root_in.get(root_start[j] as usize)
                && root_start[j] < root_start[j + 1]
            {
                parent[j] = FROM_ROOT | r;
                queue.push_back(j as u32);
            }
        }
        while let Some(i) = queue.pop_front() {
            let (a, b) = (
                out_start[i as usize] as usize,
                out_start[i as usize + 1] as usize,
            );
            for (e, &t) in out_to.iter().enumerate().take(b).skip(a) {
                let t = t as usize;
                if parent[t] == UNREACHED {
                    parent[t] = e as u32;
                    queue.push_back(t as u32);
                }
            }
        }
        stats.unreachable = (0..n)
            .filter(|&j| node(j) != Node::Left && parent[j] == UNREACHED)
            .count() as u64;

        let mut g = Graph {
            out_start,
            out_to,
            out_at,
            in_start,
            in_edge,
            root_start,
            root_in,
            root_refs,
            regions,
            parent,
            stats,
        };
        g.out_to.shrink_to_fit();
        g.out_at.shrink_to_fit();
        g.root_refs.shrink_to_fit();
        let held = 4
            * (g.out_start.len()
                + g.out_to.len()
                + g.out_at.len()
                + g.in_start.len()
                + g.in_edge.len()
                + g.root_start.len()
                + g.root_in.len()
                + g.parent.len())
            + g.root_refs.len() * size_of::<RootRef>();
        g.stats.memory = held as u64;
        let _ = index_memory;
        g.stats.took = began.elapsed();
        g
    }
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
