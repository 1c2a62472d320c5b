//! What the allocator records: live blocks and per-stack totals.
//!
//! Every recorded block is one 24-byte entry (address → size, stack id,
//! birth time, thread, sampling epoch) in a hash map; stacks are interned so
//! that a block costs a 4-byte id. Per stack the recorder keeps what DHAT's
//! program points keep: total bytes and blocks, summed lifetimes, the
//! current value, its own maximum and the value at the global peak. The value
//! at the global peak is kept lazily (a stack saves its current value the
//! first time it changes after a new peak), so no operation walks all stacks.
//!
//! In sampled mode each recorded block carries the weight of the blocks it
//! stands for (`Z / (1 - e^(-Z/R))` bytes, `1 / (1 - e^(-Z/R))` blocks, see
//! REFERENCE.md): every figure here is then an unbiased estimate, and
//! [`Snapshot::estimated`] says so.
//!
//! The recorder's own memory is allocated with the allocator's reentrancy
//! flag set, so it is never tracked; readers copy out under the lock into
//! buffers they reserved beforehand, so nothing allocates while it is held.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::lock::RawLocked;

/// Identifies an interned stack in a [`Snapshot`] (an index into
/// [`Snapshot::stacks`]).
pub type StackId = u32;

/// Fixed-point unit of a block weight: sampled blocks stand for fractional
/// numbers of blocks.
const BLOCK_UNIT: u64 = 1 << 10;

/// Length of one recorder tick (the clock used for ages and lifetimes).
pub const TICK: Duration = Duration::from_millis(4);

/// Largest block size a record holds exactly (1 TiB); larger sizes saturate.
const SIZE_MASK: u64 = (1 << 40) - 1;

/// Sampling epochs: epoch 0 is exact tracking (weight 1), epoch `e > 0`
/// sampled with mean `SAMPLE_MEANS[e]` bytes.
static SAMPLE_MEANS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Set while the recorder holds at least one live block: lets frees skip the
/// filter when nothing is recorded.
pub(crate) static HAS_LIVE: AtomicBool = AtomicBool::new(false);

const FILTER_BITS: u32 = 18;
/// A counting filter over recorded addresses, read without the lock by the
/// free path: a zero means "certainly not recorded". Counters saturate at 255
/// and then stay (always "maybe").
static FILTER: [AtomicU8; 1 << FILTER_BITS] = [const { AtomicU8::new(0) }; 1 << FILTER_BITS];

/// The filter slot of an address: one byte per 16 bytes of address space,
/// repeating every 4 MiB. Not hashed on purpose: blocks freed close together
/// in time tend to lie close together in memory, so their slots share cache
/// lines and the check on the free path rarely misses the cache.
#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &FILTER[(addr >> 4) & ((1 << FILTER_BITS) - 1)]
}

/// Sets [`HAS_LIVE`], writing the shared line only when it changes (it is
/// read on every free).
#[inline]
fn mark_live() {
    if !HAS_LIVE.load(Ordering::Relaxed) {
        HAS_LIVE.store(true, Ordering::Relaxed);
    }
}

/// Whether `addr` may be a recorded block (no false negatives).
#[inline(always)]
pub(crate) fn maybe_recorded(addr: usize) -> bool {
    HAS_LIVE.load(Ordering::Relaxed) && filter_slot(addr).load(Ordering::Relaxed) != 0
}

fn filter_add(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v != u8::MAX {
        s.store(v + 1, Ordering::Relaxed);
    }
}

fn filter_remove(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v != u8::MAX && v != 0 {
        s.store(v - 1, Ordering::Relaxed);
    }
}

/// Returns the epoch for sampling with mean `mean` bytes, allocating a new
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
fn weight(size: u64, epoch: u8) -> (u64, u64) {
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

type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// One live block as the recorder stores it (24 bytes with its key).
#[derive(Clone, Copy, Debug)]
struct LiveRec {
    /// size (40 bits) | thread index (16 bits) | sampling epoch (8 bits)
    packed: u64,
    stack: u32,
    born: u32,
}

impl LiveRec {
    fn new(size: usize, thread: u16, epoch: u8, stack: u32, born: u32) -> Self {
        let size = (size as u64).min(SIZE_MASK);
        LiveRec {
            packed: size | (thread as u64) << 40 | (epoch as u64) << 56,
            stack,
            born,
        }
    }
    fn size(&self) -> u64 {
        self.packed & SIZE_MASK
    }
    fn thread(&self) -> u16 {
        (self.packed >> 40) as u16
    }
    fn epoch(&self) -> u8 {
        (self.packed >> 56) as u8
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
const SHARD_BOUNDS: [u64; LIVE_SHARDS + 1] = shard_bounds();
/// The shard holding the first hash of each 1/1024 of the hash range: a
/// 1/1024 is narrower than the narrowest share, so the shard of a hash is
/// this one or the next.
const SHARD_GUESS: [u8; 1024] = shard_guess();

const fn shard_bounds() -> [u64; LIVE_SHARDS + 1] {
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

const fn shard_guess() -> [u8; 1024] {
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
struct LiveTable {
    shards: [AddrMap<LiveRec>; LIVE_SHARDS],
    len: usize,
}

impl LiveTable {
    const fn new() -> Self {
        LiveTable {
            shards: [const { HashMap::with_hasher(BuildHasherDefault::new()) }; LIVE_SHARDS],
            len: 0,
        }
    }

    #[inline]
    fn shard_of(addr: usize) -> usize {
        let hash = (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let guess = SHARD_GUESS[(hash >> 22) as usize] as usize;
        guess + (hash >= SHARD_BOUNDS[guess + 1]) as usize
    }

    fn insert(&mut self, addr: usize, rec: LiveRec) -> Option<LiveRec> {
        let old = self.shards[Self::shard_of(addr)].insert(addr as u64, rec);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn remove(&mut self, addr: usize) -> Option<LiveRec> {
        let old = self.shards[Self::shard_of(addr)].remove(&(addr as u64));
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    fn contains(&self, addr: usize) -> bool {
        self.shards[Self::shard_of(addr)].contains_key(&(addr as u64))
    }

    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.shards.iter().flat_map(|s| s.keys().copied())
    }

    fn bytes(&self) -> u64 {
        self.shards.iter().map(map_bytes).sum()
    }
}

/// A block to record, as the allocator describes it.
pub(crate) struct NewBlock {
    pub(crate) addr: usize,
    pub(crate) size: usize,
    pub(crate) thread: u16,
    pub(crate) epoch: u8,
    /// The `testing::measure` scope it was allocated in (0: none).
    pub(crate) scope: u32,
}

/// What a measuring scope's blocks are doing (see `testing`).
#[derive(Default)]
struct ScopeRec {
    live_blocks: u64,
    live_bytes: u64,
    /// Allocations per stack made in the scope: (blocks, bytes).
    allocated: AddrMap<(u64, u64)>,
}

/// Per-stack accumulators, in weighted units.
#[derive(Clone, Copy, Debug, Default)]
struct SiteAcc {
    total_bytes: u64,
    total_blocks: u64,
    /// Sum over freed blocks of lifetime (ticks) × block weight.
    lifetime: f64,
    curr_bytes: u64,
    curr_blocks: u64,
    max_bytes: u64,
    max_blocks: u64,
    peak_bytes: u64,
    peak_blocks: u64,
    last_touch: u64,
}

struct StackEntry {
    start: u32,
    len: u32,
    hash: u64,
    next_same_hash: u32,
}

const NO_STACK: u32 = u32::MAX;

pub(crate) struct Recorder {
    frames: Vec<usize>,
    stacks: Vec<StackEntry>,
    sites: Vec<SiteAcc>,
    stack_index: AddrMap<u32>,
    live: LiveTable,
    /// Scope of each live block allocated in a measuring scope.
    scoped: AddrMap<u32>,
    scopes: AddrMap<ScopeRec>,
    curr_bytes: u64,
    curr_blocks: u64,
    max_bytes: u64,
    max_blocks: u64,
    max_tick: u32,
    total_bytes: u64,
    total_blocks: u64,
    sampled_live: u64,
    /// Whether any sampled block was ever recorded (figures are estimates).
    sampled_ever: bool,
    /// Operation counter and the operation at which the global peak was last
    /// reached (see the module docs).
    seq: u64,
    peak_seq: u64,
}

pub(crate) static RECORDER: RawLocked<Recorder> = RawLocked::new(Recorder::new());

static START_NS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn monotonic_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the coarse
    // clock is served by the vDSO (no syscall).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Starts the recorder's clock (idempotent).
pub(crate) fn start_clock() {
    if START_NS.load(Ordering::Relaxed) == 0 {
        let now = monotonic_ns(libc::CLOCK_MONOTONIC_COARSE).max(1);
        let _ = START_NS.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The recorder clock: ticks since the recorder started (wraps after ~198 days).
pub(crate) fn now_tick() -> u32 {
    let ns = monotonic_ns(libc::CLOCK_MONOTONIC_COARSE);
    (ns.saturating_sub(START_NS.load(Ordering::Relaxed)) / TICK.as_nanos() as u64) as u32
}

fn ticks(t: u32) -> Duration {
    TICK * t
}

/// Hash of a stack, computed before the recorder's lock is taken. Two
/// independent rotate-xor lanes (one cycle per frame each, so the chain is
/// short), mixed once at the end; interning compares the frames, so a
/// collision costs a comparison, never a wrong stack.
pub(crate) fn stack_hash(frames: &[usize]) -> u64 {
    let (mut a, mut b) = (frames.len() as u64, 0x9E37_79B9_7F4A_7C15u64);
    let mut pairs = frames.chunks_exact(2);
    for p in &mut pairs {
        a = a.rotate_left(19) ^ p[0] as u64;
        b = b.rotate_left(23) ^ p[1] as u64;
    }
    if let [last] = pairs.remainder() {
        a = a.rotate_left(19) ^ *last as u64;
    }
    let mut out = AddrHasher(a);
    out.write_u64(b);
    out.finish()
}

impl Recorder {
    const fn new() -> Self {
        Recorder {
            frames: Vec::new(),
            stacks: Vec::new(),
            sites: Vec::new(),
            stack_index: HashMap::with_hasher(BuildHasherDefault::new()),
            live: LiveTable::new(),
            scoped: HashMap::with_hasher(BuildHasherDefault::new()),
            scopes: HashMap::with_hasher(BuildHasherDefault::new()),
            curr_bytes: 0,
            curr_blocks: 0,
            max_bytes: 0,
            max_blocks: 0,
            max_tick: 0,
            total_bytes: 0,
            total_blocks: 0,
            sampled_live: 0,
            sampled_ever: false,
            seq: 0,
            peak_seq: 0,
        }
    }

    fn intern(&mut self, frames: &[usize], hash: u64) -> u32 {
        let mut id = self.stack_index.get(&hash).copied().unwrap_or(NO_STACK);
        let head = id;
        while id != NO_STACK {
            let e = &self.stacks[id as usize];
            if e.hash == hash
                && &self.frames[e.start as usize..(e.start + e.len) as usize] == frames
            {
                return id;
            }
            id = e.next_same_hash;
        }
        let id = self.stacks.len() as u32;
        self.stacks.push(StackEntry {
            start: self.frames.len() as u32,
            len: frames.len() as u32,
            hash,
            next_same_hash: head,
        });
        self.frames.extend_from_slice(frames);
        self.sites.push(SiteAcc::default());
        self.stack_index.insert(hash, id);
        id
    }

    /// Saves a site's value at the global peak before its first change after
    /// that peak.
    fn touch(&mut self, stack: u32) -> &mut SiteAcc {
        let peak_seq = self.peak_seq;
        let seq = self.seq;
        let s = &mut self.sites[stack as usize];
        if s.last_touch <= peak_seq {
            s.peak_bytes = s.curr_bytes;
            s.peak_blocks = s.curr_blocks;
        }
        s.last_touch = seq;
        s
    }

    fn after_growth(&mut self, stack: u32, now: u32) {
        let s = &mut self.sites[stack as usize];
        if s.curr_bytes >= s.max_bytes {
            s.max_bytes = s.curr_bytes;
            s.max_blocks = s.curr_blocks;
        }
        if self.curr_bytes >= self.max_bytes {
            self.max_bytes = self.curr_bytes;
            self.max_blocks = self.curr_blocks;
            self.max_tick = now;
            self.peak_seq = self.seq;
        }
    }

    /// Records a new block; `hash` is [`stack_hash`] of `frames`.
    pub(crate) fn record_alloc(&mut self, block: NewBlock, frames: &[usize], hash: u64, now: u32) {
        let NewBlock {
            addr,
            size,
            thread,
            epoch,
            scope,
        } = block;
        let stack = self.intern(frames, hash);
        if scope != 0 {
            self.scope_gained(addr, scope, stack, size as u64, true);
        }
        let rec = LiveRec::new(size, thread, epoch, stack, now);
        if let Some(stale) = self.live.insert(addr, rec) {
            // A block we never saw freed (tracking was switched off while it
            // lived): it is gone now that its address is handed out again.
            self.live.insert(addr, stale);
            self.record_free(addr, now);
            self.live.insert(addr, rec);
        }
        let (bytes, blocks) = weight(rec.size(), epoch);
        self.seq += 1;
        let s = self.touch(stack);
        s.total_bytes += bytes;
        s.total_blocks += blocks;
        s.curr_bytes += bytes;
        s.curr_blocks += blocks;
        self.total_bytes += bytes;
        self.total_blocks += blocks;
        self.curr_bytes += bytes;
        self.curr_blocks += blocks;
        if epoch != 0 {
            self.sampled_live += 1;
            self.sampled_ever = true;
        }
        filter_add(addr);
        mark_live();
        self.after_growth(stack, now);
    }

    /// A block of `scope` became live (allocated, or put back after a
    /// realloc); `counted` adds it to the scope's allocations per stack.
    fn scope_gained(&mut self, addr: usize, scope: u32, stack: u32, size: u64, counted: bool) {
        let Some(s) = self.scopes.get_mut(&(scope as u64)) else {
            return;
        };
        s.live_blocks += 1;
        s.live_bytes += size;
        if counted {
            let e = s.allocated.entry(stack as u64).or_default();
            e.0 += 1;
            e.1 += size;
        }
        self.scoped.insert(addr as u64, scope);
    }

    /// A block left the live set: if it belonged to a scope, the scope
    /// loses it. Returns its scope (0: none).
    fn scope_lost(&mut self, addr: usize, size: u64) -> u32 {
        if self.scoped.is_empty() {
            return 0;
        }
        let Some(scope) = self.scoped.remove(&(addr as u64)) else {
            return 0;
        };
        if let Some(s) = self.scopes.get_mut(&(scope as u64)) {
            s.live_blocks -= 1;
            s.live_bytes -= size;
        }
        scope
    }

    /// Forgets a freed block; returns whether it was recorded.
    pub(crate) fn record_free(&mut self, addr: usize, now: u32) -> bool {
        let Some(rec) = self.live.remove(addr) else {
            return false;
        };
        self.scope_lost(addr, rec.size());
        filter_remove(addr);
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let life = now.wrapping_sub(rec.born) as f64 * blocks as f64;
        let s = self.touch(rec.stack);
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        s.lifetime += life;
        self.curr_bytes -= bytes;
        self.curr_blocks -= blocks;
        if rec.epoch() != 0 {
            self.sampled_live -= 1;
        }
        if self.live.len == 0 {
            HAS_LIVE.store(false, Ordering::Relaxed);
        }
        true
    }

    fn totals(&self) -> HeapTotals {
        HeapTotals {
            live_bytes: self.curr_bytes,
            live_blocks: units_to_blocks(self.curr_blocks),
            peak_bytes: self.max_bytes,
            peak_blocks: units_to_blocks(self.max_blocks),
            peak_at: ticks(self.max_tick),
            total_bytes: self.total_bytes,
            total_blocks: units_to_blocks(self.total_blocks),
        }
    }

    /// Takes a recorded block out for a `realloc`: its weight leaves the
    /// live figures (nothing is counted as freed) until
    /// [`Recorder::finish_realloc`] puts it back. The allocator calls
    /// jemalloc's realloc between the two without holding the lock, so a
    /// large copy never stalls other threads.
    pub(crate) fn take_for_realloc(&mut self, addr: usize) -> Option<TakenBlock> {
        let rec = self.live.remove(addr)?;
        let scope = self.scope_lost(addr, rec.size());
        filter_remove(addr);
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let s = self.touch(rec.stack);
        s.curr_bytes -= bytes;
        s.curr_blocks -= blocks;
        self.curr_bytes -= bytes;
        self.curr_blocks -= blocks;
        Some(TakenBlock(rec, scope))
    }

    /// Puts a block taken by [`Recorder::take_for_realloc`] back: at `new`
    /// with `new_size` after a successful realloc (it keeps its stack, counts
    /// as one more block allocated, as in DHAT, and its birth restarts), or
    /// unchanged at `old` when the realloc failed (`new` null).
    /// `thread_scope` is the reallocating thread's measuring scope: a
    /// realloc in the block's own scope counts as one of its allocations.
    pub(crate) fn finish_realloc(
        &mut self,
        taken: TakenBlock,
        old: usize,
        new: usize,
        new_size: usize,
        now: u32,
        thread_scope: u32,
    ) {
        let TakenBlock(rec, scope) = taken;
        let (addr, rec, counted) = if new == 0 {
            (old, rec, false)
        } else {
            (
                new,
                LiveRec::new(new_size, rec.thread(), rec.epoch(), rec.stack, now),
                true,
            )
        };
        if self.live.contains(addr) {
            self.record_free(addr, now);
        }
        let (bytes, blocks) = weight(rec.size(), rec.epoch());
        self.seq += 1;
        let s = self.touch(rec.stack);
        if counted {
            s.total_bytes += bytes;
            s.total_blocks += blocks;
        }
        s.curr_bytes += bytes;
        s.curr_blocks += blocks;
        if counted {
            self.total_bytes += bytes;
            self.total_blocks += blocks;
        }
        self.curr_bytes += bytes;
        self.curr_blocks += blocks;
        self.live.insert(addr, rec);
        if scope != 0 {
            let counted = counted && scope == thread_scope;
            self.scope_gained(addr, scope, rec.stack, rec.size(), counted);
        }
        filter_add(addr);
        mark_live();
        self.after_growth(rec.stack, now);
    }

    /// Starts keeping the figures of measuring scope `scope`.
    pub(crate) fn open_scope(&mut self, scope: u32) {
        self.scopes.insert(scope as u64, ScopeRec::default());
    }

    /// Forgets scope `scope` and which blocks were its.
    pub(crate) fn close_scope(&mut self, scope: u32) {
        if self.scopes.remove(&(scope as u64)).is_some() {
            self.scoped.retain(|_, s| *s != scope);
        }
    }
}

/// A recorded block between [`Recorder::take_for_realloc`] and
/// [`Recorder::finish_realloc`], with its measuring scope (0: none).
pub(crate) struct TakenBlock(LiveRec, u32);

/// A measuring scope's figures now: its live blocks, and per stack what it
/// allocated and what of it is still live.
pub(crate) struct ScopeReport {
    pub(crate) live_blocks: u64,
    pub(crate) live_bytes: u64,
    /// (frames, allocated blocks, allocated bytes)
    pub(crate) allocated: Vec<(Vec<usize>, u64, u64)>,
    /// (frames, live blocks, live bytes)
    pub(crate) live: Vec<(Vec<usize>, u64, u64)>,
}

/// Reads a scope's figures (`with_sites`: also per stack). The frames are
/// copied out with tracking off, then into the caller's memory.
pub(crate) fn scope_report(scope: u32, with_sites: bool) -> Option<ScopeReport> {
    let raw = crate::alloc::untracked(|| {
        let r = RECORDER.lock();
        let s = r.scopes.get(&(scope as u64))?;
        let frames_of = |stack: u32| {
            let e = &r.stacks[stack as usize];
            r.frames[e.start as usize..(e.start + e.len) as usize].to_vec()
        };
        let mut allocated = Vec::new();
        let mut live: Vec<(Vec<usize>, u64, u64)> = Vec::new();
        if with_sites {
            allocated = s
                .allocated
                .iter()
                .map(|(stack, &(n, b))| (frames_of(*stack as u32), n, b))
                .collect();
            let mut by_stack: AddrMap<(u64, u64)> = HashMap::with_hasher(BuildHasherDefault::new());
            for (addr, sc) in r.scoped.iter() {
                if *sc == scope
                    && let Some(rec) = r.live.shards[LiveTable::shard_of(*addr as usize)].get(addr)
                {
                    let e = by_stack.entry(rec.stack as u64).or_default();
                    e.0 += 1;
                    e.1 += rec.size();
                }
            }
            live = by_stack
                .into_iter()
                .map(|(stack, (n, b))| (frames_of(stack as u32), n, b))
                .collect();
        }
        Some((s.live_blocks, s.live_bytes, allocated, live))
    })?;
    // Copied into the caller's (tracked) memory; the untracked originals are
    // dropped untracked.
    let report = ScopeReport {
        live_blocks: raw.0,
        live_bytes: raw.1,
        allocated: raw.2.iter().map(|(f, n, b)| (f.to_vec(), *n, *b)).collect(),
        live: raw.3.iter().map(|(f, n, b)| (f.to_vec(), *n, *b)).collect(),
    };
    crate::alloc::untracked(|| drop(raw));
    Some(report)
}

/// Totals per interned stack, in bytes and blocks (estimates in sampled
/// mode). The fields follow DHAT's program points.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteStats {
    /// Bytes allocated here since tracking began (`tb`).
    pub total_bytes: u64,
    /// Blocks allocated here since tracking began (`tbk`; a `realloc` counts
    /// as one more block, as in DHAT).
    pub total_blocks: u64,
    /// Sum of the lifetimes of the blocks freed so far (`tl`, without the
    /// live ones).
    pub freed_lifetime: Duration,
    /// Live bytes now (`eb`).
    pub live_bytes: u64,
    /// Live blocks now (`ebk`).
    pub live_blocks: u64,
    /// This stack's own maximum of live bytes (`mb`).
    pub max_bytes: u64,
    /// Live blocks when that maximum was reached (`mbk`).
    pub max_blocks: u64,
    /// Live bytes at the time of the global peak (`gb`).
    pub at_peak_bytes: u64,
    /// Live blocks at the time of the global peak (`gbk`).
    pub at_peak_blocks: u64,
}

/// One interned stack: its return addresses (innermost first, leakscope's own
/// frames included; `symbols` trims them) and its totals.
#[derive(Clone, Debug, PartialEq)]
pub struct StackRecord {
    /// Return addresses, innermost first.
    pub frames: Vec<usize>,
    /// What was allocated from this stack.
    pub stats: SiteStats,
}

/// One live block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveBlock {
    /// The block's address.
    pub addr: usize,
    /// Its size in bytes (as requested).
    pub size: u64,
    /// The stack that allocated it.
    pub stack: StackId,
    /// When it was allocated (or last reallocated), since the recorder started.
    pub born: Duration,
    /// Index of the allocating thread (in order of first allocation, from 0).
    pub thread: u16,
    /// The bytes this block stands for (its size in exact mode).
    pub est_bytes: u64,
    /// The number of blocks it stands for (1 in exact mode).
    pub est_blocks: f64,
}

/// Totals of the whole recorded heap (estimates in sampled mode).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeapTotals {
    /// Live bytes now.
    pub live_bytes: u64,
    /// Live blocks now.
    pub live_blocks: u64,
    /// The global peak of live bytes (`tg`).
    pub peak_bytes: u64,
    /// Live blocks at that peak.
    pub peak_blocks: u64,
    /// When the peak was reached, since the recorder started.
    pub peak_at: Duration,
    /// Bytes allocated since tracking began.
    pub total_bytes: u64,
    /// Blocks allocated since tracking began.
    pub total_blocks: u64,
}

/// A consistent copy of everything the recorder knows at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the snapshot was taken, since the recorder started.
    pub taken_at: Duration,
    /// True when any figure is an estimate from sampled blocks.
    pub estimated: bool,
    /// The live blocks, in no particular order.
    pub blocks: Vec<LiveBlock>,
    /// Every stack seen so far, indexed by [`StackId`].
    pub stacks: Vec<StackRecord>,
    /// Totals of the recorded heap.
    pub heap: HeapTotals,
}

fn units_to_blocks(units: u64) -> u64 {
    (units + BLOCK_UNIT / 2) / BLOCK_UNIT
}

/// Copies the recorder's state. The lock is held only for plain copies into
/// buffers reserved beforehand, so allocating threads wait for a memcpy, not
/// for this function's formatting work.
///
/// Live blocks are copied one shard (1/256 of the table) per lock hold, so
/// while other threads allocate, [`Snapshot::blocks`] is a union of shard
/// copies taken a moment apart rather than one instant; the per-stack totals
/// and [`Snapshot::heap`] are one instant, taken first.
pub fn snapshot() -> Snapshot {
    // Scratch buffers are tracker memory: reserved and dropped untracked, so
    // a snapshot never shows up in the heap it measures. Only the result
    // handed to the caller is the caller's own allocation.
    let mut raw = RawCopy::default();
    let total = RECORDER.lock().live.len;
    crate::alloc::untracked(|| raw.reserve_blocks(total + total / 16 + 1024));
    for shard in 0..LIVE_SHARDS {
        loop {
            let r = RECORDER.lock();
            let table = &r.live.shards[shard];
            let n = table.len();
            if n <= raw.blocks.capacity() - raw.blocks.len() {
                raw.blocks.extend(table.iter().map(|(k, v)| (*k, *v)));
                break;
            }
            drop(r);
            crate::alloc::untracked(|| raw.reserve_blocks(n + n / 8 + 16));
        }
    }
    // Stacks after blocks: stack ids only grow, so every copied block's
    // stack is in the copy.
    loop {
        let (stacks, frames) = {
            let r = RECORDER.lock();
            (r.stacks.len(), r.frames.len())
        };
        crate::alloc::untracked(|| raw.reserve_stacks(stacks, frames));
        if raw.copy_stacks(&RECORDER.lock()) {
            break;
        }
    }
    let now = now_tick();
    let snap = raw.to_snapshot(now);
    crate::alloc::untracked(|| drop(raw));
    snap
}

/// The recorder's state copied under the lock, converted after it.
#[derive(Default)]
struct RawCopy {
    blocks: Vec<(u64, LiveRec)>,
    sites: Vec<SiteAcc>,
    spans: Vec<(u32, u32)>,
    frames: Vec<usize>,
    heap: HeapTotals,
    peak_seq: u64,
    estimated: bool,
}

impl RawCopy {
    /// Reserves room for `additional` more blocks and touches it, so that
    /// the page faults of a fresh buffer happen here, not under the lock.
    fn reserve_blocks(&mut self, additional: usize) {
        self.blocks.reserve(additional);
        let spare = self.blocks.spare_capacity_mut();
        // SAFETY: writing zero bytes into uninitialised spare capacity; the
        // length is unchanged, so nothing reads them as values.
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0, spare.len()) };
    }

    fn reserve_stacks(&mut self, stacks: usize, frames: usize) {
        self.sites.reserve(stacks + 64);
        self.spans.reserve(stacks + 64);
        self.frames.reserve(frames + 64 * 32);
    }

    /// Copies the stacks and totals without allocating; false when a buffer
    /// is too small (the recorder grew since `reserve_stacks`).
    fn copy_stacks(&mut self, r: &Recorder) -> bool {
        if r.stacks.len() > self.sites.capacity() || r.frames.len() > self.frames.capacity() {
            return false;
        }
        self.sites.extend(r.sites.iter().copied());
        self.spans.extend(r.stacks.iter().map(|e| (e.start, e.len)));
        self.frames.extend_from_slice(&r.frames);
        self.heap = r.totals();
        self.peak_seq = r.peak_seq;
        self.estimated = r.sampled_ever;
        true
    }

    fn to_snapshot(&self, now: u32) -> Snapshot {
        let stacks = self
            .spans
            .iter()
            .zip(&self.sites)
            .map(|(&(start, len), s)| {
                let (pb, pk) = if s.last_touch <= self.peak_seq {
                    (s.curr_bytes, s.curr_blocks)
                } else {
                    (s.peak_bytes, s.peak_blocks)
                };
                StackRecord {
                    frames: self.frames[start as usize..(start + len) as usize].to_vec(),
                    stats: SiteStats {
                        total_bytes: s.total_bytes,
                        total_blocks: units_to_blocks(s.total_blocks),
                        freed_lifetime: TICK.mul_f64(s.lifetime / BLOCK_UNIT as f64),
                        live_bytes: s.curr_bytes,
                        live_blocks: units_to_blocks(s.curr_blocks),
                        max_bytes: s.max_bytes,
                        max_blocks: units_to_blocks(s.max_blocks),
                        at_peak_bytes: pb,
                        at_peak_blocks: units_to_blocks(pk),
                    },
                }
            })
            .collect();
        let blocks = self
            .blocks
            .iter()
            // Only a reset() between the two copies leaves a block whose
            // stack is not in the copy.
            .filter(|(_, rec)| (rec.stack as usize) < self.spans.len())
            .map(|&(addr, rec)| {
                let (b, k) = weight(rec.size(), rec.epoch());
                LiveBlock {
                    addr: addr as usize,
                    size: rec.size(),
                    stack: rec.stack,
                    born: ticks(rec.born),
                    thread: rec.thread(),
                    est_bytes: b,
                    est_blocks: k as f64 / BLOCK_UNIT as f64,
                }
            })
            .collect();
        Snapshot {
            taken_at: ticks(now),
            estimated: self.estimated,
            blocks,
            stacks,
            heap: self.heap,
        }
    }
}

/// Drops every record (live blocks, stacks, totals): tracking starts afresh.
/// Blocks allocated before stay allocated; they are simply no longer known.
pub fn reset() {
    crate::alloc::untracked(|| {
        let mut r = RECORDER.lock();
        let old = std::mem::replace(&mut *r, Recorder::new());
        for addr in old.live.keys() {
            filter_remove(addr as usize);
        }
        HAS_LIVE.store(false, Ordering::Relaxed);
        drop(r);
        drop(old);
    });
}

/// The recorder's heap totals alone (cheap: no copy of blocks or stacks).
pub fn snapshot_totals() -> HeapTotals {
    RECORDER.lock().totals()
}

/// Memory the tracker itself holds, by part (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerMemory {
    /// Fixed tables (the free filter and the sampling epochs).
    pub fixed: u64,
    /// The live-block table.
    pub live_table: u64,
    /// Interned stacks and their totals.
    pub stacks: u64,
    /// Live blocks recorded.
    pub live_blocks: u64,
}

impl TrackerMemory {
    /// Memory per live block, not counting the fixed part.
    pub fn per_live_block(&self) -> f64 {
        if self.live_blocks == 0 {
            return 0.0;
        }
        (self.live_table + self.stacks) as f64 / self.live_blocks as f64
    }
}

/// Bytes a hash map of this capacity holds (hashbrown: buckets of entries
/// plus one control byte each, and a trailing group).
fn map_bytes<K, V, S>(m: &HashMap<K, V, S>) -> u64 {
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

/// What the tracker's own data structures take now.
pub fn tracker_memory() -> TrackerMemory {
    let r = RECORDER.lock();
    TrackerMemory {
        fixed: (std::mem::size_of_val(&FILTER) + std::mem::size_of_val(&SAMPLE_MEANS)) as u64,
        live_table: r.live.bytes(),
        stacks: (r.frames.capacity() * std::mem::size_of::<usize>()
            + r.stacks.capacity() * std::mem::size_of::<StackEntry>()
            + r.sites.capacity() * std::mem::size_of::<SiteAcc>()) as u64
            + map_bytes(&r.stack_index),
        live_blocks: r.live.len as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_shares_grow_geometrically_over_one_octave() {
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
    fn shard_of_finds_the_share_holding_the_hash() {
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
