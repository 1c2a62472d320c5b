//! The registry: classes, their sharded live instances, registration.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicUsize, Ordering};
use std::sync::{MutexGuard, Weak};

use crate::sys::fork::{ForkSafe, InChild, ResetInChild, on_child};
use crate::tracker::untracked;

pub(super) const SHARDS: usize = 16;

/// How to read a tracked object's fields: serialises the value behind a
/// type-erased `Tracked` allocation.
pub(super) type FieldsFn = fn(&(dyn Any + Send + Sync)) -> Option<serde_json::Value>;

#[derive(Default)]
pub(super) struct Entry {
    /// Creation order: the coarse monotonic clock in ms in the high 44 bits
    /// (557 years), this shard's sequence number in the low 20, so instances
    /// created by one thread in the same tick keep their order. 0 marks a
    /// free slot.
    pub(super) created: u64,
    pub(super) object: Option<(Weak<dyn Any + Send + Sync>, FieldsFn)>,
}

#[derive(Default)]
pub(super) struct Shard {
    pub(super) entries: Vec<Entry>,
    pub(super) free: Vec<u32>,
    pub(super) live: usize,
    pub(super) seq: u64,
}

pub(super) const SEQ_BITS: u32 = 20;

/// The creation time of an `Entry::created` value, in ns.
pub(super) fn created_ns(created: u64) -> u64 {
    (created >> SEQ_BITS) * 1_000_000
}

/// One tracked class: its name, base names and live instances.
pub(super) struct Class {
    pub(super) name: &'static str,
    pub(super) bases: &'static [&'static str],
    pub(super) shards: [ForkSafe<Shard>; SHARDS],
    /// Each shard's generation: a forked child that had to empty a shard
    /// (a thread held it at the fork) starts a new one, and registrations
    /// from before it are not taken out of the new shard.
    generations: [AtomicU16; SHARDS],
    /// Live count at the previous printed report (for the change column).
    pub(super) reported: AtomicI64,
}

impl Class {
    pub(super) fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock_owned()
    }
}

/// Every class ever registered, by name. Classes are small and few; they
/// stay for the life of the process (their instances do not). A forked
/// child keeps them.
pub(super) static CLASSES: ForkSafe<Vec<&'static Class>> = ForkSafe::new(Vec::new(), InChild::Keep);

/// Puts the shards right in a forked child: a shard a thread held at the
/// fork is emptied (its instances are no longer listed there) and its
/// generation moves on.
struct Shards;

impl ResetInChild for Shards {
    fn reset_in_child(&self) {
        for class in CLASSES.lock().iter() {
            for (shard, generation) in class.shards.iter().zip(&class.generations) {
                if shard.reset_now() {
                    generation.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

thread_local! {
    /// This thread's shard, and a cache from (type, class name) to class.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    static CLASS_CACHE: RefCell<Vec<(TypeId, usize, &'static Class)>> = const { RefCell::new(Vec::new()) };
}
pub(super) static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// The coarse monotonic clock (served from memory by the vDSO, a few ms
/// resolution: ages are reported in whole seconds).
pub(super) fn now_ns() -> u64 {
    crate::sys::clock::coarse_ns()
}

pub(super) fn this_shard() -> usize {
    SHARD.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(v);
        }
        v
    })
}

/// This thread's cached class for (type, key): key 0 for the type's own
/// name, else the address of an explicit class name.
pub(super) fn cached_class(type_id: TypeId, key: usize) -> Option<&'static Class> {
    CLASS_CACHE
        .try_with(|c| {
            c.borrow()
                .iter()
                .find(|(t, k, _)| *t == type_id && *k == key)
                .map(|e| e.2)
        })
        .ok()
        .flatten()
}

#[cold]
pub(super) fn class_for(
    type_id: TypeId,
    key: usize,
    name: &'static str,
    bases: &'static [&'static str],
) -> &'static Class {
    let class = untracked(|| {
        let mut all = CLASSES.lock();
        if let Some(c) = all.iter().find(|c| c.name == name) {
            return *c;
        }
        if all.is_empty() {
            on_child(&Shards);
        }
        let c: &'static Class = Box::leak(Box::new(Class {
            name,
            bases,
            shards: std::array::from_fn(|_| {
                ForkSafe::reset_by_owner(Shard::default(), InChild::Keep)
            }),
            generations: std::array::from_fn(|_| AtomicU16::new(0)),
            reported: AtomicI64::new(0),
        }));
        all.push(c);
        c
    });
    let _ = CLASS_CACHE.try_with(|c| untracked(|| c.borrow_mut().push((type_id, key, class))));
    class
}

/// A registration: which class, shard and slot.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    pub(super) class: &'static Class,
    pub(super) shard: u8,
    /// The shard's generation at registration.
    generation: u16,
    pub(super) index: u32,
}

pub(super) fn register(
    class: &'static Class,
    object: Option<(Weak<dyn Any + Send + Sync>, FieldsFn)>,
) -> Slot {
    let shard = this_shard();
    let now = now_ns();
    untracked(|| {
        let mut s = class.shard(shard);
        s.seq = s.seq.wrapping_add(1);
        let created = ((now / 1_000_000) << SEQ_BITS | (s.seq & ((1 << SEQ_BITS) - 1))).max(1);
        let index = match s.free.pop() {
            Some(i) => i,
            None => {
                s.entries.push(Entry::default());
                (s.entries.len() - 1) as u32
            }
        };
        s.entries[index as usize] = Entry { created, object };
        s.live += 1;
        Slot {
            class,
            shard: shard as u8,
            generation: class.generations[shard].load(Ordering::Relaxed),
            index,
        }
    })
}

pub(super) fn unregister(slot: Slot) {
    let object = untracked(|| {
        let shard = slot.shard as usize;
        let mut s = slot.class.shard(shard);
        if slot.class.generations[shard].load(Ordering::Relaxed) != slot.generation {
            // Registered before a fork emptied the shard: not in it.
            return None;
        }
        let e = std::mem::take(&mut s.entries[slot.index as usize]);
        s.free.push(slot.index);
        s.live -= 1;
        e.object
    });
    // Dropped outside: the weak handle may be the last reference to the
    // object's allocation, which belongs to the program.
    drop(object);
}
