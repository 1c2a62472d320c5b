//! The dominator tree of the heap graph: a block dominates another when
//! every path from the roots to the other passes through it, so freeing
//! the one would make the other unreachable. Each block's retained size is
//! its own bytes and those of every block it dominates: what would be
//! freed with it.
//!
//! Computed by the iterative two-finger method: the blocks in reverse
//! postorder of a depth-first walk from the roots, each block's immediate
//! dominator the nearest common dominator of its referrers, repeated until
//! nothing changes (heap graphs are close to trees: two or three passes).
//! It keeps 16 bytes per reachable block (its position, its dominator's,
//! its retained bytes) and 4 per unreachable one.

use super::Graph;
use crate::sys::cancel::{doing, point};

/// The position of the roots themselves: every block that a root
/// reference holds has a referrer there.
pub const TOP: u32 = 0;
/// The position of a block no root reaches.
const UNREACHED: u32 = u32::MAX;
/// A dominator not found yet.
const UNDEFINED: u32 = u32::MAX;

/// The dominator tree of a [`Graph`], with each block's retained bytes.
pub struct Dominators {
    /// Each node's position in reverse postorder from the roots (from 1),
    /// or `UNREACHED`.
    pos: Vec<u32>,
    /// The immediate dominator of the node at each position, as a
    /// position ([`TOP`] for a block only roots keep alive).
    idom: Vec<u32>,
    /// The bytes retained by the node at each position ([`TOP`]: every
    /// reachable block).
    retained: Vec<u64>,
}

impl Dominators {
    /// Node `j`'s position, if a root reaches it. Positions order the tree:
    /// a block's dominator comes before it.
    pub fn position(&self, j: u32) -> Option<u32> {
        let p = *self.pos.get(j as usize)?;
        (p != UNREACHED).then_some(p)
    }

    /// The immediate dominator's position of the block at `position`
    /// ([`TOP`] when only the roots keep it alive).
    pub fn dominator_of(&self, position: u32) -> u32 {
        self.idom[position as usize]
    }

    /// Bytes retained by node `j` (itself included): `None` when no root
    /// reaches it.
    pub fn retained(&self, j: u32) -> Option<u64> {
        self.position(j).map(|p| self.retained[p as usize])
    }

    /// Bytes of every block the roots reach.
    pub fn reachable_bytes(&self) -> u64 {
        self.retained[TOP as usize]
    }

    /// How many positions there are ([`TOP`] and each reachable block).
    pub fn positions(&self) -> usize {
        self.idom.len()
    }

    /// Bytes it holds.
    pub fn memory(&self) -> u64 {
        (self.pos.capacity() * 4 + self.idom.capacity() * 4 + self.retained.capacity() * 8) as u64
    }
}

impl Drop for Dominators {
    fn drop(&mut self) {
        // Built untracked (leakscope's own memory), given back the same way.
        let parts = (
            std::mem::take(&mut self.pos),
            std::mem::take(&mut self.idom),
            std::mem::take(&mut self.retained),
        );
        crate::tracker::untracked(|| drop(parts));
    }
}

impl Graph {
    /// The dominator tree, through only the block references that
    /// `keep(referrer, offset)` accepts (as [`Graph::parents_through`]),
    /// with each node's bytes from `size`.
    pub fn dominators(
        &self,
        size: &dyn Fn(u32) -> u64,
        keep: &mut dyn FnMut(u32, u32) -> bool,
    ) -> Dominators {
        let _doing = doing("computing the dominator tree");
        let n = self.nodes();
        let held_by_root = |j: usize| self.root_start[j] < self.root_start[j + 1];
        // Which references count, asked once per edge.
        let kept: Vec<bool> = (0..n)
            .flat_map(|i| (self.out_start[i]..self.out_start[i + 1]).map(move |e| (i as u32, e)))
            .map(|(i, e)| {
                point();
                keep(i, self.out_at[e as usize])
            })
            .collect();
        // Postorder of a depth-first walk from the roots.
        let mut pos = vec![UNREACHED; n];
        let mut post: Vec<u32> = Vec::new();
        let mut stack: Vec<(u32, u32)> = Vec::new();
        const SEEN: u32 = UNREACHED - 1;
        for r in 0..n {
            if !held_by_root(r) || pos[r] != UNREACHED {
                continue;
            }
            pos[r] = SEEN;
            stack.push((r as u32, self.out_start[r]));
            while let Some(top) = stack.len().checked_sub(1) {
                point();
                let (v, mut e) = stack[top];
                let end = self.out_start[v as usize + 1];
                let mut next = None;
                while e < end {
                    let t = self.out_to[e as usize];
                    let ok = kept[e as usize];
                    e += 1;
                    if ok && pos[t as usize] == UNREACHED {
                        next = Some(t);
                        break;
                    }
                }
                stack[top].1 = e;
                match next {
                    Some(t) => {
                        pos[t as usize] = SEEN;
                        stack.push((t, self.out_start[t as usize]));
                    }
                    None => {
                        stack.pop();
                        post.push(v);
                    }
                }
            }
        }
        drop(stack);
        let reached = post.len();
        for (k, &v) in post.iter().enumerate() {
            pos[v as usize] = (reached - k) as u32;
        }
        // The node at position p is post[reached - p].
        let mut idom = vec![UNDEFINED; reached + 1];
        idom[TOP as usize] = TOP;
        let intersect = |idom: &[u32], mut a: u32, mut b: u32| {
            while a != b {
                while a > b {
                    a = idom[a as usize];
                }
                while b > a {
                    b = idom[b as usize];
                }
            }
            a
        };
        // Each edge's referrer, read once (a search per edge and pass
        // costs more than the walk itself).
        let mut from_of: Vec<u32> = vec![0; self.out_to.len()];
        for i in 0..n {
            for e in self.out_start[i]..self.out_start[i + 1] {
                from_of[e as usize] = i as u32;
            }
        }
        // A pass over the blocks in reverse postorder settles every block
        // whose referrers all come before it; another pass is needed only
        // when a referrer came after (a cycle), and until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            let mut later_referrer = false;
            for p in 1..=reached {
                point();
                let v = post[reached - p] as usize;
                let mut new = if held_by_root(v) { TOP } else { UNDEFINED };
                for &e in &self.in_edge[self.in_start[v] as usize..self.in_start[v + 1] as usize] {
                    if !kept[e as usize] {
                        continue;
                    }
                    let q = pos[from_of[e as usize] as usize];
                    if q == UNREACHED {
                        continue;
                    }
                    if q as usize >= p {
                        later_referrer = true;
                    }
                    if idom[q as usize] == UNDEFINED {
                        continue;
                    }
                    new = if new == UNDEFINED {
                        q
                    } else {
                        intersect(&idom, q, new)
                    };
                }
                if idom[p] != new {
                    idom[p] = new;
                    changed = true;
                }
            }
            changed &= later_referrer;
        }
        drop((post, kept, from_of));
        let mut retained = vec![0u64; reached + 1];
        for (j, &p) in pos.iter().enumerate() {
            if p != UNREACHED {
                retained[p as usize] = size(j as u32);
            }
        }
        for p in (1..=reached).rev() {
            let d = idom[p] as usize;
            retained[d] += retained[p];
        }
        Dominators {
            pos,
            idom,
            retained,
        }
    }

    /// The bytes that would be freed if the blocks of `set` were: the
    /// blocks the roots reach only through them (and they themselves),
    /// through the references `keep(referrer, offset)` accepts.
    pub fn retained_by(
        &self,
        set: &[u32],
        size: &dyn Fn(u32) -> u64,
        keep: &mut dyn FnMut(u32, u32) -> bool,
    ) -> u64 {
        let _doing = doing("computing what the blocks retain");
        let n = self.nodes();
        let mut removed = vec![false; n];
        for &j in set {
            if let Some(r) = removed.get_mut(j as usize) {
                *r = true;
            }
        }
        let walk = |skip: &[bool], keep: &mut dyn FnMut(u32, u32) -> bool| {
            let mut seen = vec![false; n];
            let mut queue: Vec<u32> = Vec::new();
            for j in 0..n {
                if self.root_start[j] < self.root_start[j + 1] && !skip[j] {
                    seen[j] = true;
                    queue.push(j as u32);
                }
            }
            while let Some(i) = queue.pop() {
                point();
                let i = i as usize;
                for e in self.out_start[i]..self.out_start[i + 1] {
                    let t = self.out_to[e as usize] as usize;
                    if !seen[t] && !skip[t] && keep(i as u32, self.out_at[e as usize]) {
                        seen[t] = true;
                        queue.push(t as u32);
                    }
                }
            }
            seen
        };
        let with = walk(&vec![false; n], keep);
        let without = walk(&removed, keep);
        (0..n)
            .filter(|&j| (with[j] || removed[j]) && !without[j])
            .map(|j| size(j as u32))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    //! Exact trees on graphs built by hand.
    use super::*;

    /// Block `j` has `10 * (j + 1)` bytes.
    fn size(j: u32) -> u64 {
        10 * (j as u64 + 1)
    }

    fn tree(n: usize, edges: &[(u32, u32)], roots: &[u32]) -> (Graph, Dominators) {
        let g = Graph::from_edges(n, edges, roots);
        let d = g.dominators(&size, &mut |_, _| true);
        (g, d)
    }

    /// The block whose position dominates block `j` directly, or `None`
    /// for the roots.
    fn idom(d: &Dominators, n: usize, j: u32) -> Option<u32> {
        let p = d.dominator_of(d.position(j).unwrap());
        (0..n as u32).find(|&k| d.position(k) == Some(p))
    }

    #[test]
    fn a_tree_retains_its_subtrees() {
        // root → 0 → {1, 2}, 1 → 3
        let (_, d) = tree(4, &[(0, 1), (0, 2), (1, 3)], &[0]);
        assert_eq!(d.retained(0), Some(10 + 20 + 30 + 40));
        assert_eq!(d.retained(1), Some(20 + 40));
        assert_eq!(d.retained(2), Some(30));
        assert_eq!(d.retained(3), Some(40));
        assert_eq!(idom(&d, 4, 3), Some(1));
        assert_eq!(idom(&d, 4, 0), None);
        assert_eq!(d.reachable_bytes(), 100);
    }

    #[test]
    fn a_block_held_two_ways_is_retained_by_their_common_dominator() {
        // root → 0 → {1, 2} → 3: neither 1 nor 2 alone frees 3.
        let (g, d) = tree(4, &[(0, 1), (0, 2), (1, 3), (2, 3)], &[0]);
        assert_eq!(d.retained(1), Some(20));
        assert_eq!(d.retained(2), Some(30));
        assert_eq!(d.retained(0), Some(100));
        assert_eq!(idom(&d, 4, 3), Some(0));
        // Both together free it.
        assert_eq!(
            g.retained_by(&[1, 2], &size, &mut |_, _| true),
            20 + 30 + 40
        );
        assert_eq!(g.retained_by(&[1], &size, &mut |_, _| true), 20);
    }

    #[test]
    fn a_block_a_root_also_holds_is_the_roots_alone() {
        // root → 0 → 1, and root → 1.
        let (_, d) = tree(2, &[(0, 1)], &[0, 1]);
        assert_eq!(d.retained(0), Some(10));
        assert_eq!(idom(&d, 2, 1), None);
    }

    #[test]
    fn a_cycle_no_root_reaches_is_not_in_the_tree() {
        // root → 0; 1 ⇄ 2 alone; a cycle under 0 too: 0 → 3 ⇄ 4.
        let (g, d) = tree(5, &[(1, 2), (2, 1), (0, 3), (3, 4), (4, 3)], &[0]);
        assert_eq!(d.retained(1), None);
        assert_eq!(d.retained(2), None);
        assert_eq!(d.retained(3), Some(40 + 50));
        assert_eq!(d.retained(0), Some(10 + 40 + 50));
        // Freeing an unreachable block frees itself.
        assert_eq!(g.retained_by(&[1], &size, &mut |_, _| true), 20);
    }

    #[test]
    fn references_left_out_do_not_hold() {
        // root → 0 → 1, root → 2 → 1; the word of 2 is not a reference.
        let g = Graph::from_edges(3, &[(0, 1), (2, 1)], &[0, 2]);
        let d = g.dominators(&size, &mut |from, _| from != 2);
        assert_eq!(d.retained(0), Some(10 + 20));
        assert_eq!(d.retained(2), Some(30));
        let d = g.dominators(&size, &mut |_, _| true);
        assert_eq!(d.retained(0), Some(10));
    }

    #[test]
    fn a_long_chain_is_walked_without_recursion() {
        // root → 0 → 1 → … → 199 999.
        let n = 200_000u32;
        let edges: Vec<(u32, u32)> = (0..n - 1).map(|j| (j, j + 1)).collect();
        let (_, d) = tree(n as usize, &edges, &[0]);
        let all: u64 = (0..n).map(size).sum();
        assert_eq!(d.retained(0), Some(all));
        assert_eq!(d.retained(n - 1), Some(size(n - 1)));
        assert_eq!(d.retained(n / 2), Some((n / 2..n).map(size).sum()));
    }
}
