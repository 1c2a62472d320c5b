//! The live-block table: address → record, in 256 shards whose shares of
//! the address hashes grow geometrically (so they double at spread-out
//! moments, never all at once), each an open-addressing table of its own;
//! and the hasher the recorder's other maps use.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::stacks::MAX_STACKS;
use crate::sys::published::{Published, Version};

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
    /// size (39 bits) | unfiltered (1 bit) | thread index's low 16 bits |
    /// sampling epoch (8 bits)
    packed: u64,
    /// The stack's slot in the lane that holds the record: a lane has a
    /// slot per global stack at most, and there are fewer than 2^16 of
    /// those (see [`MAX_STACKS`]).
    stack: u16,
    /// The thread index's high 16 bits.
    thread_high: u16,
    pub(super) born: u32,
}

// A lane's slots are its global stacks, the store's stand-in for stacks it
// could not keep among them: every slot fits a record's 16 bits.
const _: () = assert!(MAX_STACKS < u16::MAX as usize);

impl LiveRec {
    #[inline]
    pub(super) fn new(
        size: usize,
        thread: u32,
        epoch: u8,
        stack: u32,
        born: u32,
        unfiltered: bool,
    ) -> Self {
        debug_assert!(stack <= u16::MAX as u32, "stack slot {stack}");
        let size = (size as u64).min(SIZE_MASK);
        LiveRec {
            packed: size
                | if unfiltered { UNFILTERED } else { 0 }
                | (thread as u16 as u64) << 40
                | (epoch as u64) << 56,
            stack: stack as u16,
            thread_high: (thread >> 16) as u16,
            born,
        }
    }
    #[inline]
    pub(super) fn size(&self) -> u64 {
        self.packed & SIZE_MASK
    }
    /// The stack's slot in the lane that holds the record.
    #[inline]
    pub(super) fn stack(&self) -> u32 {
        self.stack as u32
    }
    #[inline]
    pub(super) fn thread(&self) -> u32 {
        (self.thread_high as u32) << 16 | (self.packed >> 40) as u16 as u32
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
            self.stack(),
            now,
            self.unfiltered(),
        )
    }
    /// The same record with another slot and filter state.
    #[inline]
    pub(super) fn relabelled(self, stack: u32, unfiltered: bool) -> Self {
        debug_assert!(stack <= u16::MAX as u32, "stack slot {stack}");
        LiveRec {
            packed: (self.packed & !UNFILTERED) | if unfiltered { UNFILTERED } else { 0 },
            stack: stack as u16,
            thread_high: self.thread_high,
            born: self.born,
        }
    }
}

/// Shards of the live-block table: a snapshot copies one shard per lock
/// hold, so an allocating thread never waits for a whole-table copy.
pub(crate) const LIVE_SHARDS: usize = 256;

/// Where each shard's share of the address hashes starts, out of 2^32:
/// shard `i` gets a share proportional to 2^(i/256). The shards' sizes so
/// span one octave, they double at evenly spread moments, and the table's
/// memory per block stays near its average (about 40 bytes) instead of
/// swinging from 27 to 55 as equal shards would, all doubling
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

/// The live blocks, split by address into [`LIVE_SHARDS`] shards.
pub(super) struct LiveTable {
    pub(super) shards: [Shard; LIVE_SHARDS],
    pub(super) len: usize,
}

impl LiveTable {
    pub(super) const fn new() -> Self {
        LiveTable {
            shards: [const { Shard::new() }; LIVE_SHARDS],
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
        let old = self.shards[Self::shard_of(addr)].remove(addr as u64);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    #[inline]
    pub(super) fn get(&self, addr: usize) -> Option<&LiveRec> {
        self.shards[Self::shard_of(addr)].get(addr as u64)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.shards.iter().map(Shard::bytes).sum()
    }
}

/// One entry of a [`Shard`]: a block's address (0: the entry is empty; no
/// block lives at address 0) and its record.
#[derive(Clone, Copy)]
struct Entry {
    addr: u64,
    rec: LiveRec,
}

const EMPTY: Entry = Entry {
    addr: 0,
    rec: LiveRec {
        packed: 0,
        stack: 0,
        thread_high: 0,
        born: 0,
    },
};

/// One shard of the live table: address → record, by open addressing with
/// linear probing in a power-of-two array, at most [`MAX_LOAD_EIGHTHS`]/8
/// full. A removal moves the entries of its run back into the gap it
/// leaves (no tombstones), so a lookup never walks past entries that are
/// gone. Entries are 24 bytes with no control bytes, and a lookup usually
/// reads one cache line: cheaper than a general hash map for keys that are
/// already well spread once multiplied.
///
/// Snapshots copy a shard without its lane's lock (see
/// [`Shard::copy_racy`]): every change is made inside a write of the
/// shard's own [`Version`], and the array is a [`Published`] one, so a
/// copy torn by a change is seen to be and made again, and an array
/// replaced by a growth stays readable until the copy ends.
pub(super) struct Shard {
    entries: Published<Entry>,
    version: Version,
    /// 64 less the log2 of the capacity: an address's home entry is the
    /// top bits of its multiplied hash.
    shift: u32,
    len: usize,
    /// The record count at which the next insert doubles the capacity
    /// ([`MAX_LOAD_EIGHTHS`]/8 of it; 0 while there is none).
    grow_at: usize,
}

/// Why a copy of a shard without its lock failed (see [`Shard::copy_racy`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Retry {
    /// A writer was in the middle of a change.
    Busy,
    /// A change overlapped the copy.
    Torn,
    /// The buffer needs room for this many more entries.
    Room(usize),
}

/// Largest share of a shard's entries in use, in eighths.
const MAX_LOAD_EIGHTHS: usize = 7;
/// The smallest capacity a shard grows to.
const MIN_CAPACITY: usize = 4;

impl Shard {
    pub(super) const fn new() -> Self {
        Shard {
            entries: Published::new(),
            version: Version::new(),
            shift: 64,
            len: 0,
            grow_at: 0,
        }
    }

    /// The records in the shard.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Where `addr` would be if nothing were in its way. A multiplier other
    /// than the one that picks the shard, so that the addresses of one
    /// shard spread over all of its entries.
    #[inline(always)]
    fn home(&self, addr: u64) -> usize {
        (addr.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> self.shift) as usize
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// Puts `rec` at `addr`; returns the record it replaced, if any.
    #[inline(always)]
    pub(super) fn insert(&mut self, addr: u64, rec: LiveRec) -> Option<LiveRec> {
        if self.len >= self.grow_at {
            self.grow();
        }
        self.version.begin_write();
        let old = self.insert_in_place(addr, rec);
        self.version.end_write();
        old
    }

    /// [`Shard::insert`] with room to spare, inside a write.
    #[inline(always)]
    fn insert_in_place(&mut self, addr: u64, rec: LiveRec) -> Option<LiveRec> {
        let mask = self.mask();
        let mut i = self.home(addr);
        let entries = self.entries.as_mut_slice();
        loop {
            let e = &mut entries[i];
            if e.addr == addr {
                return Some(std::mem::replace(&mut e.rec, rec));
            }
            if e.addr == 0 {
                *e = Entry { addr, rec };
                self.len += 1;
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The index of `addr`'s entry, if it is here.
    #[inline(always)]
    fn find(&self, addr: u64) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(addr);
        let entries = self.entries.as_slice();
        loop {
            let e = entries[i].addr;
            if e == addr {
                return Some(i);
            }
            if e == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The record at `addr`, if any.
    #[inline]
    pub(super) fn get(&self, addr: u64) -> Option<&LiveRec> {
        self.find(addr).map(|i| &self.entries.as_slice()[i].rec)
    }

    /// Takes the record at `addr` out, if any.
    #[inline(always)]
    pub(super) fn remove(&mut self, addr: u64) -> Option<LiveRec> {
        let found = self.find(addr)?;
        let mask = self.mask();
        let home_of =
            |a: u64, shift: u32| (a.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> shift) as usize;
        let shift = self.shift;
        self.version.begin_write();
        let entries = self.entries.as_mut_slice();
        let rec = entries[found].rec;
        // Each later entry of the run moves into the gap if the gap lies
        // between its home and where it is (so a lookup from its home still
        // meets it before an empty entry); the gap then moves to it.
        let mut gap = found;
        let mut j = (found + 1) & mask;
        loop {
            let e = entries[j];
            if e.addr == 0 {
                break;
            }
            let home = home_of(e.addr, shift);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(gap) & mask {
                entries[gap] = e;
                gap = j;
            }
            j = (j + 1) & mask;
        }
        entries[gap].addr = 0;
        self.version.end_write();
        self.len -= 1;
        Some(rec)
    }

    /// Doubles the capacity (the caller's thread is busy: the array is the
    /// tracker's own memory). The old array is retired, not freed, while a
    /// snapshot may be copying it.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(MIN_CAPACITY);
        self.version.begin_write();
        let old = std::mem::replace(&mut self.entries, Published::filled(capacity, EMPTY));
        self.shift = 64 - capacity.trailing_zeros();
        self.grow_at = capacity * MAX_LOAD_EIGHTHS / 8;
        self.len = 0;
        for e in old.as_slice() {
            if e.addr != 0 {
                self.insert_in_place(e.addr, e.rec);
            }
        }
        self.version.end_write();
        drop(old);
    }

    /// Every (address, record) in the shard.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &LiveRec)> {
        self.entries
            .as_slice()
            .iter()
            .filter(|e| e.addr != 0)
            .map(|e| (e.addr, &e.rec))
    }

    /// Calls `f` on every (address, record) in the shard, the records
    /// writable.
    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut LiveRec)) {
        self.version.begin_write();
        for e in self.entries.as_mut_slice() {
            if e.addr != 0 {
                f(e.addr, &mut e.rec);
            }
        }
        self.version.end_write();
    }

    /// Copies the shard's records into `out` without its lane's lock and
    /// without allocating, as a snapshot does: `Ok` once a copy no change
    /// overlapped is in `out`; else `out` is as it was, and the error says
    /// why.
    ///
    /// # Safety
    /// `this` points to a shard of a lane (lanes are never freed), and the
    /// caller is inside a [`crate::sys::published::ReadSection`].
    pub(super) unsafe fn copy_racy(
        this: *const Shard,
        out: &mut Vec<(u64, LiveRec)>,
    ) -> Result<(), Retry> {
        let start = out.len();
        // SAFETY: the caller's promise: the shard outlives the call.
        let version = unsafe { &*std::ptr::addr_of!((*this).version) };
        let v = version.begin_read().ok_or(Retry::Busy)?;
        let mut room = true;
        // SAFETY: as above, inside a read section.
        unsafe {
            Published::for_each_racy(std::ptr::addr_of!((*this).entries), |_, e: Entry| {
                if e.addr == 0 {
                } else if out.len() < out.capacity() {
                    out.push((e.addr, e.rec));
                } else {
                    room = false;
                }
            })
        };
        if !version.unchanged_since(v) {
            out.truncate(start);
            return Err(Retry::Torn);
        }
        if !room {
            // SAFETY: as above; the length is only a hint for the room.
            let n = unsafe { crate::sys::published::read_racy(std::ptr::addr_of!((*this).len)) };
            out.truncate(start);
            return Err(Retry::Room(n + n / 8 + 16));
        }
        Ok(())
    }

    /// The record at `addr`, read without the lane's lock: `Err` when a
    /// writer was in the middle of a change ([`Retry::Busy`]) or made one
    /// meanwhile ([`Retry::Torn`]).
    ///
    /// # Safety
    /// As for [`Shard::copy_racy`].
    pub(super) unsafe fn get_racy(this: *const Shard, addr: u64) -> Result<Option<LiveRec>, Retry> {
        // SAFETY: the caller's promise: the shard outlives the call.
        let version = unsafe { &*std::ptr::addr_of!((*this).version) };
        let v = version.begin_read().ok_or(Retry::Busy)?;
        // SAFETY: as above; the shift is read racily and only trusted once
        // the version says it was whole, and every index is masked to the
        // array read with it.
        let shift = unsafe { crate::sys::published::read_racy(std::ptr::addr_of!((*this).shift)) };
        let home = (addr.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> shift.min(63)) as usize;
        let mut found = None;
        // SAFETY: as above, inside a read section.
        unsafe {
            Published::scan_racy(std::ptr::addr_of!((*this).entries), home, |e: Entry| {
                if e.addr == addr {
                    found = Some(e.rec);
                    return false;
                }
                e.addr != 0
            })
        };
        if version.unchanged_since(v) {
            Ok(found)
        } else {
            Err(Retry::Torn)
        }
    }

    /// Bytes the shard holds.
    pub(super) fn bytes(&self) -> u64 {
        self.entries.bytes()
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
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn rec(n: u32) -> LiveRec {
        LiveRec::new(n as usize, n, 0, n & 0xffff, n, false)
    }

    /// Checks a shard against a model: same records, every one findable,
    /// the count right, and no more than 7/8 of the entries in use.
    fn agrees(shard: &Shard, model: &HashMap<u64, u32>) {
        assert_eq!(shard.len(), model.len());
        assert_eq!(shard.iter().count(), model.len());
        for (&addr, &n) in model {
            assert_eq!(shard.get(addr).map(|r| r.born), Some(n), "{addr:#x}");
        }
        for (addr, r) in shard.iter() {
            assert_eq!(model.get(&addr), Some(&r.born));
        }
        assert!(shard.len() * 8 <= shard.entries.len() * MAX_LOAD_EIGHTHS);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Random inserts, replacements and removals (of present and absent
        /// addresses) over few distinct addresses, so runs of entries form,
        /// wrap around the end of the array and are cut by removals.
        #[test]
        fn a_shard_keeps_exactly_what_a_map_would(
            ops in proptest::collection::vec((any::<bool>(), 1u64..200, any::<u32>()), 1..600)
        ) {
            let mut shard = Shard::new();
            let mut model = HashMap::new();
            for (insert, key, n) in ops {
                let addr = key * 16;
                if insert {
                    let old = shard.insert(addr, rec(n)).map(|r| r.born);
                    prop_assert_eq!(old, model.insert(addr, n));
                } else {
                    let old = shard.remove(addr).map(|r| r.born);
                    prop_assert_eq!(old, model.remove(&addr));
                }
            }
            agrees(&shard, &model);
            for addr in model.keys().copied().collect::<Vec<_>>() {
                prop_assert_eq!(shard.remove(addr).map(|r| r.born), model.remove(&addr));
                agrees(&shard, &model);
            }
            prop_assert_eq!(shard.iter().count(), 0);
        }
    }

    #[test]
    fn a_record_keeps_a_32_bit_thread_index_beside_its_other_fields() {
        let fields = |r: LiveRec| {
            let packed = (r.size(), r.epoch(), r.stack(), r.born, r.unfiltered());
            (r.thread(), packed)
        };
        for thread in [0, 4_465, 70_001, 65_536, u32::MAX] {
            let r = LiveRec::new(1 << 38, thread, 0xa5, 16_384, 7, true);
            assert_eq!(fields(r), (thread, (1 << 38, 0xa5, 16_384, 7, true)));
            let r = r.moved(24, 9).relabelled(3, false);
            assert_eq!(fields(r), (thread, (24, 0xa5, 3, 9, false)));
        }
        assert_eq!(std::mem::size_of::<LiveRec>(), 16);
    }

    #[test]
    fn a_full_run_that_wraps_around_survives_removing_its_head() {
        // Addresses whose home is the last entry of a 4-entry shard: each
        // insert lands one further, wrapping to the start.
        let mut shard = Shard::new();
        shard.insert(16, rec(0));
        let last: Vec<u64> = (1u64..)
            .map(|k| k * 16)
            .filter(|&a| shard.home(a) == 3)
            .take(3)
            .collect();
        shard.remove(16);
        for (i, &a) in last.iter().enumerate() {
            assert!(shard.insert(a, rec(i as u32)).is_none());
        }
        assert_eq!(shard.entries.len(), 4, "3 of 4 entries: no growth yet");
        assert_eq!(shard.entries.as_slice()[3].addr, last[0]);
        assert_eq!(shard.entries.as_slice()[0].addr, last[1], "wrapped");
        assert!(shard.remove(last[0]).is_some());
        // The wrapped entries moved back towards their home.
        assert_eq!(shard.entries.as_slice()[3].addr, last[1]);
        assert_eq!(shard.entries.as_slice()[0].addr, last[2]);
        assert_eq!(shard.get(last[2]).map(|r| r.born), Some(2));
        assert_eq!(shard.len(), 2);
    }

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
