//! The live-block table: address → record, in 256 shards whose shares of
//! the address hashes grow geometrically (so their hash maps double at
//! spread-out moments, never all at once), and the hasher it uses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Largest block size a record holds exactly (512 GiB); larger sizes
/// saturate.
pub(super) const SIZE_MASK: u64 = (1 << 39) - 1;
/// Set in a record the free filter does not know (see `filter`).
const UNFILTERED: u64 = 1 << 39;

/// A fast hasher for addresses and stack hashes (a folded multiply).
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        let m = ((self.0 ^ x) as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

pub(super) type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// One live block as the recorder stores it (24 bytes with its key).
#[derive(Clone, Copy, Debug)]
pub(super) struct LiveRec {
    /// size (39 bits) | unfiltered (1 bit) | thread index (16 bits) |
    /// sampling epoch (8 bits)
    pub(super) packed: u64,
    /// The stack's slot in the lane that holds the record.
    pub(super) stack: u32,
    pub(super) born: u32,
}

impl LiveRec {
    #[inline]
    pub(super) fn new(
        size: usize,
        thread: u16,
        epoch: u8,
        stack: u32,
        born: u32,
        unfiltered: bool,
    ) -> Self {
        let size = (size as u64).min(SIZE_MASK);
        LiveRec {
            packed: size
                | if unfiltered { UNFILTERED } else { 0 }
                | (thread as u64) << 40
                | (epoch as u64) << 56,
            stack,
            born,
        }
    }
    #[inline]
    pub(super) fn size(&self) -> u64 {
        self.packed & SIZE_MASK
    }
    #[inline]
    pub(super) fn thread(&self) -> u16 {
        (self.packed >> 40) as u16
    }
    #[inline]
    pub(super) fn epoch(&self) -> u8 {
        (self.packed >> 56) as u8
    }
    /// Whether the free filter does not know this record.
    #[inline]
    pub(super) fn unfiltered(&self) -> bool {
        self.packed & UNFILTERED != 0
    }
    /// The record of the block a realloc made of this one: `size` bytes,
    /// born `now`, same thread, epoch and stack.
    #[inline]
    pub(super) fn moved(self, size: usize, now: u32) -> Self {
        LiveRec::new(
            size,
            self.thread(),
            self.epoch(),
            self.stack,
            now,
            self.unfiltered(),
        )
    }
    /// The same record with another slot and filter state.
    #[inline]
    pub(super) fn relabelled(self, stack: u32, unfiltered: bool) -> Self {
        LiveRec {
            packed: (self.packed & !UNFILTERED) | if unfiltered { UNFILTERED } else { 0 },
            stack,
            born: self.born,
        }
    }
}

/// Shards of the live-block table: a snapshot copies one shard per lock
/// hold, so an allocating thread never waits for a whole-table copy.
pub(crate) const LIVE_SHARDS: usize = 256;

/// Where each shard's share of the address hashes starts, out of 2^32:
/// shard `i` gets a share proportional to 2^(i/256). The shards' sizes so
/// span one octave, their hash maps double at evenly spread moments, and
/// the table's memory per block stays near its average (about 41 bytes)
/// instead of swinging from 29 to 57 as equal shards would, all doubling
/// together.
pub(super) const SHARD_BOUNDS: [u64; LIVE_SHARDS + 1] = shard_bounds();
/// The shard holding the first hash of each 1/1024 of the hash range: a
/// 1/1024 is narrower than the narrowest share, so the shard of a hash is
/// this one or the next.
pub(super) const SHARD_GUESS: [u8; 1024] = shard_guess();

pub(super) const fn shard_bounds() -> [u64; LIVE_SHARDS + 1] {
    // 2^(1/256) in fixed point with 62 fractional bits.
    const ROOT: u128 = 4_624_189_567_668_517_720;
    const ONE: u128 = 1 << 62;
    let mut out = [0u64; LIVE_SHARDS + 1];
    let mut x = ONE;
    let mut i = 0;
    while i < LIVE_SHARDS {
        out[i] = ((x - ONE) >> 30) as u64;
        x = (x * ROOT) >> 62;
        i += 1;
    }
    out[LIVE_SHARDS] = 1 << 32;
    out
}

pub(super) const fn shard_guess() -> [u8; 1024] {
    let bounds = shard_bounds();
    let mut out = [0u8; 1024];
    let (mut j, mut i) = (0, 0);
    while j < 1024 {
        while bounds[i + 1] <= (j as u64) << 22 {
            i += 1;
        }
        out[j] = i as u8;
        j += 1;
    }
    out
}

/// The live blocks, split by address into [`LIVE_SHARDS`] hash maps.
pub(super) struct LiveTable {
    pub(super) shards: [AddrMap<LiveRec>; LIVE_SHARDS],
    pub(super) len: usize,
}

impl LiveTable {
    pub(super) const fn new() -> Self {
        LiveTable {
            shards: [const { HashMap::with_hasher(BuildHasherDefault::new()) }; LIVE_SHARDS],
            len: 0,
        }
    }

    #[inline]
    pub(super) fn shard_of(addr: usize) -> usize {
        let hash = (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let guess = SHARD_GUESS[(hash >> 22) as usize] as usize;
        guess + (hash >= SHARD_BOUNDS[guess + 1]) as usize
    }

    #[inline(always)]
    pub(super) fn insert(&mut self, addr: usize, rec: LiveRec) -> Option<LiveRec> {
        let old = self.shards[Self::shard_of(addr)].insert(addr as u64, rec);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    #[inline(always)]
    pub(super) fn remove(&mut self, addr: usize) -> Option<LiveRec> {
        let old = self.shards[Self::shard_of(addr)].remove(&(addr as u64));
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    #[inline]
    pub(super) fn get(&self, addr: usize) -> Option<&LiveRec> {
        self.shards[Self::shard_of(addr)].get(&(addr as u64))
    }

    pub(super) fn bytes(&self) -> u64 {
        self.shards.iter().map(map_bytes).sum()
    }
}

/// Bytes a hash map of this capacity holds (hashbrown: buckets of entries
/// plus one control byte each, and a trailing group).
pub(super) fn map_bytes<K, V, S>(m: &HashMap<K, V, S>) -> u64 {
    if m.capacity() == 0 {
        return 0;
    }
    let buckets = if m.capacity() < 8 {
        (m.capacity() + 1).next_power_of_two()
    } else {
        (m.capacity() * 8 / 7).next_power_of_two()
    };
    (buckets * (std::mem::size_of::<(K, V)>() + 1) + 16) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn shard_shares_grow_geometrically_over_one_octave() {
        let b = SHARD_BOUNDS;
        assert_eq!((b[0], b[LIVE_SHARDS]), (0, 1 << 32));
        let share = |i: usize| (b[i + 1] - b[i]) as f64;
        for i in 1..LIVE_SHARDS - 1 {
            let ratio = share(i) / share(i - 1);
            assert!(
                (ratio - 2f64.powf(1.0 / 256.0)).abs() < 1e-6,
                "shard {i}: {ratio}"
            );
        }
        let span = share(LIVE_SHARDS - 1) / share(0);
        assert!((span - 2f64.powf(255.0 / 256.0)).abs() < 1e-6, "{span}");
        // A guess bucket (2^22 hashes) is narrower than any share, so the
        // shard of a hash is its bucket's guess or the next one.
        assert!(share(0) > (1u64 << 22) as f64);
    }

    #[test]
    pub(super) fn shard_of_finds_the_share_holding_the_hash() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = (x & 0x7fff_ffff_fff8) as usize;
            let hash = (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            let i = LiveTable::shard_of(addr);
            assert!(
                SHARD_BOUNDS[i] <= hash && hash < SHARD_BOUNDS[i + 1],
                "{addr:#x}"
            );
        }
    }
}
