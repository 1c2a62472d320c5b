//! Growth shapes: the ways a program's heap blocks reach their size
//! (allocated at once, pushed, shrunk, grown in steps, and std's growing
//! containers). Sampled mode must estimate each without bias: a block's
//! chance to be in the sample depends on its size now, however it got
//! there. Shared by `tests/alloc_sampled.rs` (small, at a short sampling
//! mean) and `benches/sampling.rs` (larger, at the default mean).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hint::black_box;

use leakscope::Mode;
use leakscope::tracker;

/// The sizes of one shape's blocks: 48 of them from 64 B to 96 KiB times
/// `scale` (about 0.8 MB in all at scale 1), so that small blocks (rarely
/// sampled, heavy when they are) and large ones (nearly always sampled) are
/// both in the mix.
fn sizes(scale: usize) -> impl Iterator<Item = usize> {
    (0..48usize)
        .map(move |i| ((64usize << (i % 12)) >> (i % 5 == 0) as u32).clamp(64, 96 << 10) * scale)
}

/// Allocated at its size at once.
#[inline(never)]
fn shape_once(scale: usize) -> Vec<Vec<u8>> {
    black_box(sizes(scale).map(|s| vec![7u8; s]).collect())
}

/// Grown by pushing (amortised doubling: reallocs across size classes).
#[inline(never)]
fn shape_pushed(scale: usize) -> Vec<Vec<u8>> {
    black_box(
        sizes(scale)
            .map(|s| {
                let mut v = Vec::new();
                for _ in 0..s / 16 {
                    v.extend_from_slice(&[1u8; 16]);
                }
                v
            })
            .collect(),
    )
}

/// Allocated four times too large, then shrunk to size.
#[inline(never)]
fn shape_shrunk(scale: usize) -> Vec<Vec<u8>> {
    black_box(
        sizes(scale)
            .map(|s| {
                let mut v = Vec::with_capacity(s * 4);
                v.resize(s, 3u8);
                v.shrink_to_fit();
                v
            })
            .collect(),
    )
}

/// Grown by a realloc in sixteen equal steps (large blocks grow in place
/// in jemalloc).
#[inline(never)]
fn shape_stepped(scale: usize) -> Vec<Vec<u8>> {
    black_box(
        sizes(scale)
            .map(|s| {
                let mut v: Vec<u8> = Vec::new();
                for k in 1..=16 {
                    v.reserve_exact(s * k / 16 - v.len());
                    v.resize(s * k / 16, 5u8);
                }
                v
            })
            .collect(),
    )
}

/// A `VecDeque` grown by `push_back`.
#[inline(never)]
fn shape_deque(scale: usize) -> Vec<VecDeque<u64>> {
    black_box(
        sizes(scale)
            .map(|s| (0..s as u64 / 8).collect::<VecDeque<u64>>())
            .collect(),
    )
}

/// A `String` grown by `push_str`.
#[inline(never)]
fn shape_string(scale: usize) -> Vec<String> {
    black_box(
        sizes(scale)
            .map(|s| {
                let mut t = String::new();
                for _ in 0..s / 8 {
                    t.push_str("abcdefgh");
                }
                t
            })
            .collect(),
    )
}

/// A `HashMap` grown by `insert`.
#[inline(never)]
fn shape_map(scale: usize) -> Vec<HashMap<u64, u64>> {
    black_box(
        sizes(scale)
            .map(|s| (0..s as u64 / 32).map(|k| (k, k)).collect())
            .collect(),
    )
}

/// A `BTreeMap` grown by `insert` (fixed-size nodes, no realloc).
#[inline(never)]
fn shape_btree(scale: usize) -> Vec<BTreeMap<u64, u64>> {
    black_box(
        sizes(scale)
            .map(|s| (0..s as u64 / 32).map(|k| (k, k)).collect())
            .collect(),
    )
}

/// Four `Vec<u64>` pushed one element at a time to 4 MiB times `scale`
/// each (through jemalloc's small and large classes; large blocks often
/// grow in place), held in an array so that no small block joins them.
#[inline(never)]
fn shape_big(scale: usize) -> [Vec<u64>; 4] {
    black_box(std::array::from_fn(|_| {
        let mut v = Vec::new();
        for i in 0..(scale as u64) << 19 {
            v.push(i);
        }
        v
    }))
}

/// One growth shape: its site (the function that builds it), and a run of
/// it at a scale that keeps what it made alive while `inside` runs.
pub(crate) struct Shape {
    /// The allocation site of its blocks.
    pub site: &'static str,
    /// Builds it at a scale, runs `inside`, frees it.
    pub run: fn(usize, &mut dyn FnMut()),
}

macro_rules! shape {
    ($f:ident) => {
        Shape {
            site: concat!(module_path!(), "::", stringify!($f)),
            run: |scale, inside| {
                let kept = $f(scale);
                inside();
                drop(black_box(kept));
            },
        }
    };
}

/// Every shape.
pub(crate) fn all() -> Vec<Shape> {
    vec![
        shape!(shape_once),
        shape!(shape_pushed),
        shape!(shape_shrunk),
        shape!(shape_stepped),
        shape!(shape_deque),
        shape!(shape_string),
        shape!(shape_map),
        shape!(shape_btree),
        shape!(shape_big),
    ]
}

/// The standard deviation theory gives a sampled estimate of blocks of
/// these sizes at mean `r`: a block of `z` bytes is in the sample with
/// probability `p = 1 - e^(-z/r)` and then weighs `z / p`.
pub(crate) fn theory_sd(sizes: &[u64], r: f64) -> f64 {
    sizes
        .iter()
        .map(|&z| {
            let z = z as f64;
            let p = -(-z / r).exp_m1();
            z * z * (1.0 - p) / p
        })
        .sum::<f64>()
        .sqrt()
}

/// One shape measured: the truth from an exact run, and `runs` sampled
/// estimates of its live bytes, each from a fresh recorder.
pub(crate) struct Measured {
    /// The site.
    pub site: &'static str,
    /// Its live bytes in exact mode.
    pub truth: f64,
    /// Its live blocks in exact mode.
    pub blocks: usize,
    /// The standard deviation of one estimate, in theory.
    pub theory_sd: f64,
    /// The sampled estimates, one per run.
    pub estimates: Vec<f64>,
}

impl Measured {
    /// The mean of the estimates.
    pub(crate) fn mean(&self) -> f64 {
        self.estimates.iter().sum::<f64>() / self.estimates.len() as f64
    }

    /// The mean's distance from the truth, in standard errors (theory's
    /// spread over the square root of the runs).
    pub(crate) fn bias_in_se(&self) -> f64 {
        let n = self.estimates.len() as f64;
        let off = self.mean() - self.truth;
        if off == 0.0 {
            // Also where theory allows no spread (every block sampled).
            return 0.0;
        }
        off / (self.theory_sd / n.sqrt())
    }

    /// The estimates' sample standard deviation.
    pub(crate) fn spread(&self) -> f64 {
        let n = self.estimates.len() as f64;
        let mean = self.mean();
        (self
            .estimates
            .iter()
            .map(|e| (e - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt()
    }

    /// One line: truth, mean error, its distance in standard errors, and
    /// the spread against theory's.
    pub(crate) fn line(&self) -> String {
        format!(
            "{:<14} {:>10.0} B {:>5} blocks  mean {:+6.2}% ({:+5.1} SE)  spread {:6.2}% (theory {:6.2}%)",
            self.site.rsplit("::").next().unwrap_or(self.site),
            self.truth,
            self.blocks,
            (self.mean() / self.truth - 1.0) * 100.0,
            self.bias_in_se(),
            self.spread() / self.truth * 100.0,
            self.theory_sd / self.truth * 100.0
        )
    }
}

/// The shapes together, run by run (each run's estimates summed): the
/// whole heap's estimate.
pub(crate) fn whole(measured: &[Measured]) -> Measured {
    let runs = measured.first().map_or(0, |m| m.estimates.len());
    Measured {
        site: "whole heap",
        truth: measured.iter().map(|m| m.truth).sum(),
        blocks: measured.iter().map(|m| m.blocks).sum(),
        theory_sd: measured
            .iter()
            .map(|m| m.theory_sd.powi(2))
            .sum::<f64>()
            .sqrt(),
        estimates: (0..runs)
            .map(|k| measured.iter().map(|m| m.estimates[k]).sum())
            .collect(),
    }
}

/// Measures `shape` at `scale`: one exact run for the truth, then `runs`
/// sampled runs at mean `r`. Leaves the process in sampled mode at mean
/// `r`.
pub(crate) fn measure(shape: &Shape, scale: usize, r: u64, runs: usize) -> Measured {
    leakscope::set_mode(Mode::Exact);
    tracker::reset();
    let mut sizes = Vec::new();
    (shape.run)(scale, &mut || {
        let snap = tracker::snapshot();
        let ids = super::site_stacks(&snap, shape.site);
        sizes = snap
            .blocks
            .iter()
            .filter(|b| ids.contains(&b.stack))
            .map(|b| b.size)
            .collect();
    });
    leakscope::set_mode(Mode::Sampled);
    leakscope::set_sample_bytes(r);
    let mut estimates = Vec::with_capacity(runs);
    for _ in 0..runs {
        tracker::reset();
        (shape.run)(scale, &mut || {
            let snap = tracker::snapshot();
            estimates.push(super::site_totals(&snap, shape.site).live_bytes as f64);
        });
    }
    tracker::reset();
    Measured {
        site: shape.site,
        truth: sizes.iter().sum::<u64>() as f64,
        blocks: sizes.len(),
        theory_sd: theory_sd(&sizes, r as f64),
        estimates,
    }
}
