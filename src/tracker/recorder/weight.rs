//! The weight of a sampled block: a block of size `Z` sampled with mean gap
//! `R` stands for `Z / (1 - e^(-Z/R))` bytes and `1 / (1 - e^(-Z/R))`
//! blocks, so sums of weights are unbiased estimates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fixed-point unit of a block weight: sampled blocks stand for fractional
/// numbers of blocks.
pub(super) const BLOCK_UNIT: u64 = 1 << 10;

/// Sampling epochs: epoch 0 is exact tracking (weight 1), epoch `e > 0`
/// sampled with mean `SAMPLE_MEANS[e]` bytes.
pub(super) static SAMPLE_MEANS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// epoch if needed (at most 255 distinct means per process; after that the
/// last epoch is reused with its own mean, so weights stay consistent).
pub(crate) fn epoch_for_mean(mean: u64) -> u8 {
    for (i, slot) in SAMPLE_MEANS.iter().enumerate().skip(1) {
        let v = slot.load(Ordering::Relaxed);
        if v == mean {
            return i as u8;
        }
        if v == 0
            && slot
                .compare_exchange(0, mean, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return i as u8;
        }
        if slot.load(Ordering::Relaxed) == mean {
            return i as u8;
        }
    }
    255
}

/// The weight of one recorded block: (estimated bytes, estimated blocks in
/// `BLOCK_UNIT`s).
#[inline]
pub(super) fn weight(size: u64, epoch: u8) -> (u64, u64) {
    if epoch == 0 {
        return (size, BLOCK_UNIT);
    }
    let mean = SAMPLE_MEANS[epoch as usize].load(Ordering::Relaxed).max(1) as f64;
    let z = size.max(1) as f64;
    let p = -(-z / mean).exp_m1(); // 1 - e^(-z/mean), accurate for small z
    let bytes = (z / p).round() as u64;
    let blocks = (BLOCK_UNIT as f64 / p).round() as u64;
    (bytes, blocks.max(1))
}

/// The chance that a sampled block of `old` bytes keeps its record when a
/// realloc shrinks it to `new`, so that it stays in the sample with the
/// probability a block allocated at `new` bytes has: of the marked bytes
/// that put it in the sample, at least one must lie in the part it keeps,
/// which happens with `(1 - e^(-new/R)) / (1 - e^(-old/R))`. 1 for exact
/// records and for growth.
pub(super) fn keep_on_shrink(old: u64, new: u64, epoch: u8) -> f64 {
    if epoch == 0 || new >= old {
        return 1.0;
    }
    let mean = SAMPLE_MEANS[epoch as usize].load(Ordering::Relaxed).max(1) as f64;
    let chance = |z: u64| -(-(z as f64) / mean).exp_m1();
    chance(new) / chance(old)
}

#[inline]
pub(super) fn units_to_blocks(units: u64) -> u64 {
    (units + BLOCK_UNIT / 2) / BLOCK_UNIT
}
