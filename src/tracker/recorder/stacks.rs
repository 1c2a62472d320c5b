//! Interned stacks: the table each lane keeps, and the global one where
//! every distinct stack any thread has recorded has the id snapshots use.
//! Threads reach the global table only when their own lane meets a stack
//! for the first time (see `lane`), so its lock is off the common path.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::live::{AddrMap, map_bytes};
use crate::sys::lock::RawLocked;
use crate::sys::published::Published;

/// One interned stack: its frames in [`StackTable::frames`], and the next
/// stack with the same hash.
#[derive(Clone, Copy)]
struct StackEntry {
    start: u32,
    len: u32,
    hash: u64,
    next_same_hash: u32,
}

/// No stack: ends a chain of stacks with the same hash.
const NO_STACK: u32 = u32::MAX;

/// Interned stacks by id, found by hash and frames: each lane keeps one
/// (its slots), and [`STACKS`] is the global one. The frames are compared,
/// so two stacks with one hash are never merged.
///
/// A stack never changes once pushed, and a push writes its frames, then
/// its entry, each before the length that counts it: snapshots copy the
/// global table without its lock (see [`StackTable::copy_racy`]).
pub(super) struct StackTable {
    frames: Published<usize>,
    entries: Published<StackEntry>,
    index: AddrMap<u32>,
    /// The stack last found or added for each [`RECENT`]th of the hashes:
    /// a program allocates from a few stacks over and over, and one array
    /// read finds those without a hash-map lookup.
    recent: [u32; RECENT],
}

/// Entries in [`StackTable::recent`].
const RECENT: usize = 256;

/// A hash's entry in [`StackTable::recent`] (its top bits: the stack hash
/// ends in a folded multiply, whose top bits are as mixed as any).
#[inline(always)]
fn recent_of(hash: u64) -> usize {
    (hash >> (64 - RECENT.trailing_zeros())) as usize
}

/// The global table: every stack any lane has met, under the id snapshots
/// use. Ids are never reused or dropped but by `reset`, which empties every
/// lane in the same step, so an id a lane holds always names the same stack.
pub(super) static STACKS: RawLocked<StackTable> = RawLocked::new(StackTable::new());

impl StackTable {
    pub(super) const fn new() -> Self {
        StackTable {
            frames: Published::new(),
            entries: Published::new(),
            index: HashMap::with_hasher(BuildHasherDefault::new()),
            recent: [NO_STACK; RECENT],
        }
    }

    /// The id of `frames` (whose hash is `hash`), if they are here.
    #[inline(always)]
    pub(super) fn find(&mut self, frames: &[usize], hash: u64) -> Option<u32> {
        let recent = &mut self.recent[recent_of(hash)];
        let id = *recent;
        if id != NO_STACK {
            let e = &self.entries.as_slice()[id as usize];
            if e.hash == hash && self.frames_of(id) == frames {
                return Some(id);
            }
        }
        let id = self.find_in_index(frames, hash)?;
        self.recent[recent_of(hash)] = id;
        Some(id)
    }

    /// [`StackTable::find`] past the recent stacks.
    #[inline(never)]
    fn find_in_index(&self, frames: &[usize], hash: u64) -> Option<u32> {
        let mut id = self.index.get(&hash).copied().unwrap_or(NO_STACK);
        while id != NO_STACK {
            let e = &self.entries.as_slice()[id as usize];
            if e.hash == hash && self.frames_of(id) == frames {
                return Some(id);
            }
            id = e.next_same_hash;
        }
        None
    }

    /// Adds `frames`, which are not here; returns their id. The caller's
    /// thread is busy (its allocations here are the tracker's own).
    pub(super) fn push(&mut self, frames: &[usize], hash: u64) -> u32 {
        let id = self.entries.len() as u32;
        let head = self.index.insert(hash, id).unwrap_or(NO_STACK);
        let start = self.frames.len() as u32;
        self.frames.extend_from_slice(frames);
        self.entries.push(StackEntry {
            start,
            len: frames.len() as u32,
            hash,
            next_same_hash: head,
        });
        self.recent[recent_of(hash)] = id;
        id
    }

    /// The global store's [`StackTable::intern`], within its bound:
    /// `Ok(id)` of `frames`, or, when [`MAX_STACKS`] stacks are stored and
    /// `frames` are new, `Err(id)` of the one stack whose only frame is
    /// [`STORE_FULL_FRAME`], which then stands for them; a collection is
    /// asked for (see [`collect_due`]).
    pub(super) fn intern_bounded(
        &mut self,
        frames: &[usize],
        hash: u64,
        now: u32,
    ) -> Result<u32, u32> {
        if let Some(id) = self.find(frames, hash) {
            return Ok(id);
        }
        if self.len() < MAX_STACKS && self.frames.len() + frames.len() <= MAX_STORED_FRAMES {
            return Ok(self.push(frames, hash));
        }
        ask_for_collection(now);
        Err(self.intern(&[STORE_FULL_FRAME], STORE_FULL_HASH))
    }

    /// The id of `frames`, adding them if they are new.
    pub(super) fn intern(&mut self, frames: &[usize], hash: u64) -> u32 {
        match self.find(frames, hash) {
            Some(id) => id,
            None => self.push(frames, hash),
        }
    }

    /// The frames of stack `id`.
    #[inline(always)]
    pub(super) fn frames_of(&self, id: u32) -> &[usize] {
        let e = &self.entries.as_slice()[id as usize];
        &self.frames.as_slice()[e.start as usize..(e.start + e.len) as usize]
    }

    /// The hash of stack `id`.
    pub(super) fn hash_of(&self, id: u32) -> u64 {
        self.entries.as_slice()[id as usize].hash
    }

    /// How many stacks there are (ids are below this).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many frames all stacks hold together.
    pub(super) fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Bytes the table holds.
    pub(super) fn bytes(&self) -> u64 {
        self.frames.bytes() + self.entries.bytes() + map_bytes(&self.index)
    }

    /// Copies the table's stacks into `spans` (each stack's first frame in
    /// `frames` and its frame count) and `frames`, without its lock and
    /// without allocating: `Err((stacks, frames))`, the room to reserve
    /// before trying again, when a buffer is too small or the copy is torn
    /// (a table replaced meanwhile by a reset or a collection: the caller
    /// also checks the reset count). Stacks pushed meanwhile may be left
    /// out.
    ///
    /// # Safety
    /// `this` stays allocated during the call, and the caller is inside a
    /// [`crate::sys::published::ReadSection`].
    pub(super) unsafe fn copy_racy(
        this: *const StackTable,
        spans: &mut Vec<(u32, u32)>,
        frames: &mut Vec<usize>,
    ) -> Result<(), (usize, usize)> {
        spans.clear();
        frames.clear();
        // SAFETY: the caller's promise; the lengths are atomics.
        let (n, f) = unsafe { ((*this).entries.len(), (*this).frames.len()) };
        let wanted = (n + 64, f + 64 * 32);
        if spans.capacity() < n || frames.capacity() < f {
            return Err(wanted);
        }
        // Entries first: each one's frames were stored before it.
        let mut fit = true;
        // SAFETY: the caller's promise.
        unsafe {
            Published::for_each_racy(std::ptr::addr_of!((*this).entries), |_, e: StackEntry| {
                if spans.len() < spans.capacity() {
                    spans.push((e.start, e.len));
                } else {
                    fit = false;
                }
            })
        };
        // SAFETY: as above.
        let copied = unsafe { Published::copy_racy(std::ptr::addr_of!((*this).frames), frames) };
        let whole = fit
            && copied.is_ok()
            && spans
                .iter()
                .all(|&(start, len)| start as usize + len as usize <= frames.len());
        if whole {
            Ok(())
        } else {
            Err((
                wanted.0.max(spans.len() + 64),
                wanted.1.max(frames.len() + 64 * 32),
            ))
        }
    }
}

/// How many times `reset` emptied the global table (and every lane): a record
/// taken out of a lane before a reset and put back after must not come
/// back with its old stack id.
static RESETS: AtomicU64 = AtomicU64::new(0);

/// The global table's reset count (read under a lane's lock: `reset` counts while
/// it holds them all).
pub(super) fn resets() -> u64 {
    RESETS.load(Ordering::Relaxed)
}

/// Counts a reset (under every lane's lock).
pub(super) fn count_reset() {
    RESETS.fetch_add(1, Ordering::Relaxed);
}

/// The most distinct stacks the global store keeps (each lane keeps at
/// most the ones it uses of them). Past it, or past [`MAX_STORED_FRAMES`],
/// new stacks are counted in one "stack store full" stack until a
/// collection drops the stacks that no live block was allocated from.
pub const MAX_STACKS: usize = 16_384;

/// The most frames the global store keeps, all stacks together: 2 MiB of
/// return addresses (8 192 stacks of 32 frames). With the stacks' entries,
/// their index and a lane's copy of them, the store stays under 10 MiB
/// while one thread records, whatever the program does.
pub const MAX_STORED_FRAMES: usize = 1 << 18;

/// The one frame of the stack that stands for every stack the full store
/// could not keep: not a return address any code has, so `symbols` names it.
pub const STORE_FULL_FRAME: usize = 1;

/// The hash the full store's stack is interned under (any fixed value: it
/// is compared with its frame).
pub(super) const STORE_FULL_HASH: u64 = 0x5707_e5f0_11ed_0001;

/// Set when the store is full and a collection may run: the next thread
/// to finish recording runs it (see `recorder::collect_stacks`).
static COLLECT_DUE: AtomicBool = AtomicBool::new(false);

/// The tick of the last collection (at most one a second: a store full of
/// stacks that live blocks use is not made smaller by collecting again).
static LAST_COLLECTION: AtomicU32 = AtomicU32::new(0);

/// How many collections ran.
static COLLECTIONS: AtomicU64 = AtomicU64::new(0);

fn ask_for_collection(now: u32) {
    let last = LAST_COLLECTION.load(Ordering::Relaxed);
    let second = (1_000 / crate::sys::clock::TICK.as_millis()) as u32;
    if COLLECTIONS.load(Ordering::Relaxed) == 0 || now.wrapping_sub(last) >= second {
        COLLECT_DUE.store(true, Ordering::Relaxed);
    }
}

/// Whether a collection is due (one load: read after every new stack's
/// record).
#[inline(always)]
pub(super) fn collect_due() -> bool {
    COLLECT_DUE.load(Ordering::Relaxed)
}

/// Counts a collection that ran at `now` (under every lane's lock).
pub(super) fn count_collection(now: u32) {
    COLLECT_DUE.store(false, Ordering::Relaxed);
    LAST_COLLECTION.store(now, Ordering::Relaxed);
    COLLECTIONS.fetch_add(1, Ordering::Relaxed);
}

/// How many collections of the stack store have run.
pub(crate) fn collections() -> u64 {
    COLLECTIONS.load(Ordering::Relaxed)
}
