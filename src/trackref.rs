//! Live instances per class: Scrapy's `trackref` for Rust.
//!
//! Embed an [`ObjectRef`] in a struct to have its instances counted, or wrap
//! values in [`Tracked`] to also reach them later (from the console or with
//! [`oldest`] / [`all`]). Each instance is recorded with its creation time;
//! its record goes when it drops. The registry never keeps an instance
//! alive: [`Tracked`] values are held weakly, so a value dropped everywhere
//! else is gone, and can never come back through the registry.
//!
//! ```
//! use leakscope::trackref::{self, ObjectRef, Tracked};
//!
//! #[derive(serde::Serialize)]
//! struct HtmlResponse {
//!     url: String,
//!     #[serde(skip)]
//!     _ref: ObjectRef<HtmlResponse>,
//! }
//!
//! let kept = Tracked::new(HtmlResponse { url: "http://a/".into(), _ref: ObjectRef::untracked() });
//! let report = trackref::live_refs();
//! assert!(report.iter().any(|c| c.name == "HtmlResponse" && c.live >= 1));
//! let oldest = trackref::get_oldest("HtmlResponse").unwrap();
//! assert_eq!(oldest.fields().unwrap()["url"], "http://a/");
//! # drop(kept);
//! ```
//!
//! Registration costs a clock read and an uncontended lock on one of 16
//! shards (threads are spread over the shards), so it can stay on in
//! production; `LEAKSCOPE_TRACK_REFS=0` (or [`set_enabled`]) turns it into a
//! near-free no-op, as Scrapy's `TRACK_REFS`.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::alloc::untracked;

const SHARDS: usize = 16;

/// How to read a tracked object's fields: serialises the value behind a
/// type-erased `Tracked` allocation.
type FieldsFn = fn(&(dyn Any + Send + Sync)) -> Option<serde_json::Value>;

#[derive(Default)]
struct Entry {
    /// Creation order: the coarse monotonic clock in ms in the high 44 bits
    /// (557 years), this shard's sequence number in the low 20, so instances
    /// created by one thread in the same tick keep their order. 0 marks a
    /// free slot.
    created: u64,
    object: Option<(Weak<dyn Any + Send + Sync>, FieldsFn)>,
}

#[derive(Default)]
struct Shard {
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    seq: u64,
}

const SEQ_BITS: u32 = 20;

/// The creation time of an `Entry::created` value, in ns.
fn created_ns(created: u64) -> u64 {
    (created >> SEQ_BITS) * 1_000_000
}

/// One tracked class: its name, base names and live instances.
struct Class {
    name: &'static str,
    bases: &'static [&'static str],
    shards: [Mutex<Shard>; SHARDS],
    /// Live count at the previous printed report (for the change column).
    reported: AtomicI64,
}

impl Class {
    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every class ever registered, by name. Classes are small and few; they
/// stay for the life of the process (their instances do not).
static CLASSES: RwLock<Vec<&'static Class>> = RwLock::new(Vec::new());

thread_local! {
    /// This thread's shard, and a cache from (type, class name) to class.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    static CLASS_CACHE: RefCell<Vec<(TypeId, usize, &'static Class)>> = const { RefCell::new(Vec::new()) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

const ENABLED_UNKNOWN: u8 = 0;
const ENABLED_ON: u8 = 1;
const ENABLED_OFF: u8 = 2;
static ENABLED: AtomicU8 = AtomicU8::new(ENABLED_UNKNOWN);

/// Whether registration is on (`LEAKSCOPE_TRACK_REFS=0` turns it off).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ENABLED_ON => true,
        ENABLED_OFF => false,
        _ => {
            let on = std::env::var("LEAKSCOPE_TRACK_REFS").map_or(true, |v| v != "0");
            set_enabled(on);
            on
        }
    }
}

/// Turns registration on or off for objects created from now on (objects
/// already registered stay until they drop).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { ENABLED_ON } else { ENABLED_OFF }, Ordering::Relaxed);
}

/// The coarse monotonic clock (served from memory by the vDSO, a few ms
/// resolution: ages are reported in whole seconds).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn this_shard() -> usize {
    SHARD.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(v);
        }
        v
    })
}

/// The short name of a type: `app::HtmlResponse` → `HtmlResponse`,
/// `app::Cache<u32>` → `Cache<u32>`.
pub fn short_type_name(full: &str) -> &str {
    let generics = full.find('<').unwrap_or(full.len());
    match full[..generics].rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

/// This thread's cached class for (type, key): key 0 for the type's own
/// name, else the address of an explicit class name.
fn cached_class(type_id: TypeId, key: usize) -> Option<&'static Class> {
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
fn class_for(
    type_id: TypeId,
    key: usize,
    name: &'static str,
    bases: &'static [&'static str],
) -> &'static Class {
    let class = untracked(|| {
        let mut all = CLASSES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.iter().find(|c| c.name == name) {
            return *c;
        }
        let c: &'static Class = Box::leak(Box::new(Class {
            name,
            bases,
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
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
struct Slot {
    class: &'static Class,
    shard: u8,
    index: u32,
}

fn register(
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
            index,
        }
    })
}

fn unregister(slot: Slot) {
    let object = untracked(|| {
        let mut s = slot.class.shard(slot.shard as usize);
        let e = std::mem::take(&mut s.entries[slot.index as usize]);
        s.free.push(slot.index);
        s.live -= 1;
        e.object
    });
    // Dropped outside: the weak handle may be the last reference to the
    // object's allocation, which belongs to the program.
    drop(object);
}

/// A field that makes the struct holding it count as a live instance of a
/// class (by default the short name of `T`).
///
/// Cloning an `ObjectRef` registers a new instance (a cloned struct is a new
/// object). [`Default`] is [`ObjectRef::new`].
pub struct ObjectRef<T: ?Sized + 'static> {
    slot: Option<Slot>,
    _type: PhantomData<fn() -> T>,
}

impl<T: ?Sized + 'static> ObjectRef<T> {
    /// Registers an instance of class `T`'s short name.
    pub fn new() -> Self {
        if !enabled() {
            return Self::untracked();
        }
        let class = cached_class(TypeId::of::<T>(), 0).unwrap_or_else(|| {
            class_for(
                TypeId::of::<T>(),
                0,
                short_type_name(std::any::type_name::<T>()),
                &[],
            )
        });
        ObjectRef {
            slot: Some(register(class, None)),
            _type: PhantomData,
        }
    }

    /// Registers an instance of class `name` whose bases are `bases` (so
    /// that `ignore` of a base skips it, as a subclass in Python).
    pub fn with_class(name: &'static str, bases: &'static [&'static str]) -> Self {
        Self::register_as(name, bases, None)
    }

    /// A reference that counts nothing: for a struct that is wrapped in
    /// [`Tracked`], which registers it instead.
    pub const fn untracked() -> Self {
        ObjectRef {
            slot: None,
            _type: PhantomData,
        }
    }

    fn register_as(
        name: &'static str,
        bases: &'static [&'static str],
        object: Option<(Weak<dyn Any + Send + Sync>, FieldsFn)>,
    ) -> Self {
        if !enabled() {
            return Self::untracked();
        }
        let key = name.as_ptr() as usize;
        let class = cached_class(TypeId::of::<T>(), key)
            .unwrap_or_else(|| class_for(TypeId::of::<T>(), key, name, bases));
        ObjectRef {
            slot: Some(register(class, object)),
            _type: PhantomData,
        }
    }

    /// The class this instance counts under (`None` when not registered).
    pub fn class_name(&self) -> Option<&'static str> {
        self.slot.map(|s| s.class.name)
    }
}

impl<T: ?Sized + 'static> Default for ObjectRef<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized + 'static> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        match self.slot {
            Some(s) => Self::register_as(s.class.name, s.class.bases, None),
            None => Self::untracked(),
        }
    }
}

impl<T: ?Sized + 'static> Drop for ObjectRef<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            unregister(slot);
        }
    }
}

impl<T: ?Sized + 'static> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({})", self.class_name().unwrap_or("untracked"))
    }
}

struct TrackedInner<T: 'static> {
    value: T,
    _ref: ObjectRef<T>,
}

/// A shared handle (like `Arc`) to a value whose live instances can be
/// reached from the registry: [`get_oldest`], [`iter_all`], [`oldest`],
/// [`all`], and the console, which shows its fields through `Serialize`.
///
/// The registry holds it weakly: when the last `Tracked` drops, the value
/// drops and its record goes.
pub struct Tracked<T: Send + Sync + 'static> {
    inner: Arc<TrackedInner<T>>,
}

fn fields_of<T: serde::Serialize + Send + Sync + 'static>(
    any: &(dyn Any + Send + Sync),
) -> Option<serde_json::Value> {
    let inner = any.downcast_ref::<TrackedInner<T>>()?;
    serde_json::to_value(&inner.value).ok()
}

impl<T: serde::Serialize + Send + Sync + 'static> Tracked<T> {
    /// Wraps `value` as an instance of `T`'s short name.
    pub fn new(value: T) -> Self {
        Self::with_class(value, short_type_name(std::any::type_name::<T>()), &[])
    }

    /// Wraps `value` as an instance of class `name` with base names `bases`.
    pub fn with_class(value: T, name: &'static str, bases: &'static [&'static str]) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<TrackedInner<T>>| {
            let erased: Weak<dyn Any + Send + Sync> = weak.clone();
            TrackedInner {
                value,
                _ref: ObjectRef::register_as(name, bases, Some((erased, fields_of::<T>))),
            }
        });
        Tracked { inner }
    }
}

impl<T: Send + Sync + 'static> Clone for Tracked<T> {
    fn clone(&self) -> Self {
        Tracked {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + Sync + 'static> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: fmt::Debug + Send + Sync + 'static> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tracked").field(&self.inner.value).finish()
    }
}

impl<T: Send + Sync + 'static> Tracked<T> {
    /// Whether two handles point to the same value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

/// One live instance found in the registry.
#[derive(Clone)]
pub struct LiveObject {
    /// Its class.
    pub class: &'static str,
    /// How long ago it was created.
    pub age: Duration,
    created: u64,
    object: Option<(Arc<dyn Any + Send + Sync>, FieldsFn)>,
}

impl LiveObject {
    /// Its fields as JSON, for a value held in a [`Tracked`] whose type is
    /// `Serialize`; `None` for an instance counted through a bare
    /// [`ObjectRef`] (nothing to show but its class and age).
    pub fn fields(&self) -> Option<serde_json::Value> {
        let (obj, fields) = self.object.as_ref()?;
        fields(obj.as_ref())
    }

    /// The value as a [`Tracked<T>`], if it is one of that type.
    pub fn downcast<T: Send + Sync + 'static>(&self) -> Option<Tracked<T>> {
        let (obj, _) = self.object.as_ref()?;
        let inner = Arc::clone(obj).downcast::<TrackedInner<T>>().ok()?;
        Some(Tracked { inner })
    }
}

impl fmt::Debug for LiveObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveObject")
            .field("class", &self.class)
            .field("age", &self.age)
            .field("fields", &self.fields())
            .finish()
    }
}

fn find_class(name: &str) -> Option<&'static Class> {
    CLASSES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|c| c.name == name)
        .copied()
}

/// Visits every live instance of a class (strong handles taken while its
/// shard is locked, so none can die half-way), oldest order not guaranteed.
fn collect(class: &'static Class, keep: impl Fn(u64) -> bool) -> Vec<LiveObject> {
    let now = now_ns();
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let s = class.shard(i);
        for e in s
            .entries
            .iter()
            .filter(|e| e.created != 0 && keep(e.created))
        {
            let object = match &e.object {
                Some((weak, fields)) => match weak.upgrade() {
                    Some(strong) => Some((strong, *fields)),
                    // Dying right now: its drop is waiting for this shard.
                    None => continue,
                },
                None => None,
            };
            out.push(LiveObject {
                class: class.name,
                age: Duration::from_nanos(now.saturating_sub(created_ns(e.created))),
                created: e.created,
                object,
            });
        }
    }
    out
}

/// The oldest live instance of class `name`: `None` for an unknown class or
/// when all its instances are gone.
pub fn get_oldest(name: &str) -> Option<LiveObject> {
    let class = find_class(name)?;
    collect(class, |_| true)
        .into_iter()
        .min_by_key(|o| o.created)
}

/// Every live instance of class `name`, oldest first (empty for an unknown
/// class).
pub fn iter_all(name: &str) -> Vec<LiveObject> {
    let Some(class) = find_class(name) else {
        return Vec::new();
    };
    let mut all = collect(class, |_| true);
    all.sort_by_key(|o| o.created);
    all
}

/// The oldest live [`Tracked<T>`] of `T`'s class.
pub fn oldest<T: Send + Sync + 'static>() -> Option<Tracked<T>> {
    iter_all(short_type_name(std::any::type_name::<T>()))
        .iter()
        .find_map(|o| o.downcast::<T>())
}

/// Every live [`Tracked<T>`] of `T`'s class, oldest first.
pub fn all<T: Send + Sync + 'static>() -> Vec<Tracked<T>> {
    iter_all(short_type_name(std::any::type_name::<T>()))
        .iter()
        .filter_map(|o| o.downcast::<T>())
        .collect()
}

/// The live figures of one class.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClassLive {
    /// The class name.
    pub name: &'static str,
    /// Its base names.
    pub bases: &'static [&'static str],
    /// Live instances.
    pub live: usize,
    /// Age of the oldest live instance.
    pub oldest: Option<Duration>,
    /// Change in live instances since the previous printed report.
    pub change: i64,
}

/// Live instances per class, sorted by name, classes with none left out.
pub fn live_refs() -> Vec<ClassLive> {
    let classes: Vec<&'static Class> = CLASSES.read().unwrap_or_else(|e| e.into_inner()).clone();
    let now = now_ns();
    let mut out: Vec<ClassLive> = classes
        .into_iter()
        .filter_map(|c| {
            let mut live = 0;
            let mut oldest = u64::MAX;
            for i in 0..SHARDS {
                let s = c.shard(i);
                if s.live == 0 {
                    continue;
                }
                live += s.live;
                if let Some(min) = s
                    .entries
                    .iter()
                    .filter(|e| e.created != 0)
                    .map(|e| e.created)
                    .min()
                {
                    oldest = oldest.min(min);
                }
            }
            (live > 0).then(|| ClassLive {
                name: c.name,
                bases: c.bases,
                live,
                oldest: Some(Duration::from_nanos(now.saturating_sub(created_ns(oldest)))),
                change: live as i64 - c.reported.load(Ordering::Relaxed),
            })
        })
        .collect();
    out.sort_by_key(|c| c.name);
    out
}

/// Whether class `name` (with base names `bases`) is one of `ignore` or has
/// one of them as a base.
fn ignored(name: &str, bases: &[&str], ignore: &[&str]) -> bool {
    ignore.iter().any(|i| *i == name || bases.contains(i))
}

/// The live-references report as text (heading `Live References`, then a
/// table of Class, Live, Oldest, Change), skipping classes named in `ignore`
/// and their subclasses. Records the counts, so the next report's Change
/// column shows what happened in between.
pub fn format_live_refs(ignore: &[&str]) -> String {
    let rows: Vec<ClassLive> = live_refs()
        .into_iter()
        .filter(|c| !ignored(c.name, c.bases, ignore))
        .collect();
    mark_reported(&rows, ignore);
    crate::render::live_refs(&rows)
}

/// Prints [`format_live_refs`] to stdout (Scrapy's `print_live_refs`, the
/// console's `prefs()`).
pub fn print_live_refs(ignore: &[&str]) {
    println!("{}", format_live_refs(ignore));
}

/// Remembers the counts shown (0 for a class with none left), leaving the
/// ignored classes' baselines as they were.
fn mark_reported(shown: &[ClassLive], ignore: &[&str]) {
    let classes = CLASSES.read().unwrap_or_else(|e| e.into_inner());
    for c in classes.iter() {
        if ignored(c.name, c.bases, ignore) {
            continue;
        }
        let live = shown
            .iter()
            .find(|r| r.name == c.name)
            .map_or(0, |r| r.live);
        c.reported.store(live as i64, Ordering::Relaxed);
    }
}
