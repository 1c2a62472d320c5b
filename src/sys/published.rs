//! Memory that readers read without taking the lock its writer holds.
//!
//! A reader that takes a writer's lock makes the writer wait for it; if the
//! reader then loses its CPU (a loaded machine), the writer waits for the
//! scheduler to give it back: tens of milliseconds. So readers here take no
//! lock at all, and writers never wait for them:
//!
//! - [`Version`] is a sequence count: a writer makes it odd while it
//!   changes what the count guards and even again after; a reader copies,
//!   then checks the count did not move (else it copies again). What it
//!   copied may be torn while it copies, so it reads nothing through it
//!   (no pointer, no index) until the count said it is whole.
//! - [`Published`] is an array whose storage and length a reader loads
//!   atomically, so that what it reads is always inside an allocation. A
//!   writer that replaces the storage (to grow it) does not free the old one
//!   while a reader may be reading it: the old storage is *retired*, and the
//!   last reader to leave frees it (see [`ReadSection`]).
//!
//! The readers' loads race with the writer's stores to the same bytes; they
//! are volatile loads of `Copy` data, whose result is only used once the
//! version says no store overlapped them. This is the one module where
//! that race lives.

use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence};

/// A sequence count guarding data that one writer at a time changes (see
/// the module docs).
pub(crate) struct Version(AtomicU32);

impl Version {
    pub(crate) const fn new() -> Self {
        Version(AtomicU32::new(0))
    }

    /// Before a change (the caller holds the writers' lock).
    #[inline(always)]
    pub(crate) fn begin_write(&self) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// After a change (the caller holds the writers' lock).
    #[inline(always)]
    pub(crate) fn end_write(&self) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(1), Ordering::Release);
    }

    /// Before a read: the count to check after it, or none while a writer
    /// is changing the data.
    #[inline]
    pub(crate) fn begin_read(&self) -> Option<u32> {
        let v = self.0.load(Ordering::Acquire);
        (v & 1 == 0).then_some(v)
    }

    /// After a read begun at `v`: whether no writer changed the data since.
    #[inline]
    pub(crate) fn unchanged_since(&self, v: u32) -> bool {
        fence(Ordering::Acquire);
        self.0.load(Ordering::Relaxed) == v
    }
}

/// Reads `*p`, which a writer may be storing to at the same time: the value
/// may be torn, and is used only once a [`Version`] said it is not.
///
/// # Safety
/// `p` must point into an allocation that stays allocated during the read
/// (a [`Published`] storage, read inside a [`ReadSection`]).
#[inline(always)]
pub(crate) unsafe fn read_racy<T: Copy>(p: *const T) -> T {
    // SAFETY: the caller's promise; T is Copy, so any bytes read are
    // dropped without running code, and only used once validated.
    unsafe { ptr::read_volatile(p) }
}

/// Readers inside a [`ReadSection`] now.
static READERS: AtomicUsize = AtomicUsize::new(0);
/// Storages retired while readers were inside: a stack linked through their
/// headers, freed by the last reader to leave.
static RETIRED: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());

/// While one lives, no [`Published`] storage its thread may be reading is
/// freed. Readers load storages only inside one.
pub(crate) struct ReadSection(PhantomData<*const ()>);

impl ReadSection {
    /// Enters (an atomic add: readers never wait).
    pub(crate) fn enter() -> Self {
        READERS.fetch_add(1, Ordering::SeqCst);
        ReadSection(PhantomData)
    }
}

impl Drop for ReadSection {
    /// Leaves; the last reader out frees what was retired meanwhile (the
    /// caller's thread must be busy: the storages are the tracker's own).
    fn drop(&mut self) {
        if READERS.fetch_sub(1, Ordering::SeqCst) == 1 {
            free_retired();
        }
    }
}

/// Frees every retired storage (no reader can hold one: each was replaced
/// before it was retired, and readers that entered since load the new one).
fn free_retired() {
    let mut h = RETIRED.swap(ptr::null_mut(), Ordering::AcqRel);
    while !h.is_null() {
        // SAFETY: every header on the list heads a live storage that was
        // taken off its array; the swap gave it to this thread alone.
        let next = unsafe { (*h).next_retired };
        // SAFETY: as above; `layout` is the one it was allocated with.
        unsafe { std::alloc::dealloc(h.cast(), (*h).layout) };
        h = next;
    }
}

/// Frees `h` now if no reader is inside, or retires it.
fn retire(h: *mut Header) {
    fence(Ordering::SeqCst);
    if READERS.load(Ordering::SeqCst) == 0 {
        // SAFETY: h heads a storage no array refers to any more, and no
        // reader is inside to hold it (any reader entering now loads the
        // storage that replaced it).
        unsafe { std::alloc::dealloc(h.cast(), (*h).layout) };
        return;
    }
    let mut head = RETIRED.load(Ordering::Relaxed);
    loop {
        // SAFETY: h is this thread's until it is on the list.
        unsafe { (*h).next_retired = head };
        match RETIRED.compare_exchange_weak(head, h, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => head = now,
        }
    }
    // The last reader may have left between the check and the push.
    if READERS.load(Ordering::SeqCst) == 0 {
        free_retired();
    }
}

/// The head of a [`Published`] storage, followed by its items.
#[repr(C)]
struct Header {
    capacity: usize,
    layout: Layout,
    next_retired: *mut Header,
}

/// An array of `Copy` items that one writer at a time changes (under a
/// lock of the caller's) and readers copy without it (see the module docs).
/// Storage is allocated with the global allocator; callers make the
/// thread busy where that allocator must not record it.
pub(crate) struct Published<T: Copy> {
    /// The storage: a [`Header`] and `capacity` items, or null.
    storage: AtomicPtr<Header>,
    /// Items in use: stored after the item it counts.
    len: AtomicUsize,
    _items: PhantomData<T>,
}

// SAFETY: the storage is owned; readers only copy `Copy` items out of it.
unsafe impl<T: Copy + Send> Send for Published<T> {}
// SAFETY: as above; writes need `&mut`.
unsafe impl<T: Copy + Send> Sync for Published<T> {}

impl<T: Copy> Published<T> {
    /// An empty array (no storage).
    pub(crate) const fn new() -> Self {
        Published {
            storage: AtomicPtr::new(ptr::null_mut()),
            len: AtomicUsize::new(0),
            _items: PhantomData,
        }
    }

    /// `n` copies of `value`.
    pub(crate) fn filled(n: usize, value: T) -> Self {
        let a = Published::new();
        if n > 0 {
            let h = allocate::<T>(n);
            // SAFETY: h has room for n items.
            unsafe {
                let items = items_of::<T>(h);
                for i in 0..n {
                    items.add(i).write(value);
                }
            }
            a.storage.store(h, Ordering::Release);
            a.len.store(n, Ordering::Release);
        }
        a
    }

    /// Items in use.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Items the storage holds.
    pub(crate) fn capacity(&self) -> usize {
        let h = self.storage.load(Ordering::Relaxed);
        if h.is_null() {
            0
        } else {
            // SAFETY: a non-null storage of this array is live.
            unsafe { (*h).capacity }
        }
    }

    /// Bytes the storage holds.
    pub(crate) fn bytes(&self) -> u64 {
        let h = self.storage.load(Ordering::Relaxed);
        if h.is_null() {
            0
        } else {
            // SAFETY: a non-null storage of this array is live.
            unsafe { (*h).layout.size() as u64 }
        }
    }

    /// The items in use.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        let h = self.storage.load(Ordering::Relaxed);
        if h.is_null() {
            return &[];
        }
        // SAFETY: the first len items of a live storage are initialised.
        unsafe { std::slice::from_raw_parts(items_of::<T>(h), self.len()) }
    }

    /// The items in use, writable. Readers may be copying them: a change
    /// they must not see half-done goes inside a [`Version`]'s write.
    #[inline(always)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        let h = self.storage.load(Ordering::Relaxed);
        if h.is_null() {
            return &mut [];
        }
        // SAFETY: as in as_slice; `&mut self` makes this the one writer.
        unsafe { std::slice::from_raw_parts_mut(items_of::<T>(h), self.len()) }
    }

    /// Appends `item`, moving to a storage twice as large when full.
    pub(crate) fn push(&mut self, item: T) {
        let n = self.len();
        if n == self.capacity() {
            self.regrow((n * 2).max(4));
        }
        let h = self.storage.load(Ordering::Relaxed);
        // SAFETY: the storage has room for item n (just checked or grown).
        unsafe { items_of::<T>(h).add(n).write(item) };
        self.len.store(n + 1, Ordering::Release);
    }

    /// Appends every item of `items`.
    pub(crate) fn extend_from_slice(&mut self, items: &[T]) {
        let n = self.len();
        if n + items.len() > self.capacity() {
            self.regrow((n + items.len()).max(n * 2).max(4));
        }
        let h = self.storage.load(Ordering::Relaxed);
        // SAFETY: the storage has room for n + items.len() items.
        unsafe { ptr::copy_nonoverlapping(items.as_ptr(), items_of::<T>(h).add(n), items.len()) };
        self.len.store(n + items.len(), Ordering::Release);
    }

    /// Moves the items to a storage of `capacity` and retires the old one.
    #[cold]
    #[inline(never)]
    fn regrow(&mut self, capacity: usize) {
        let n = self.len();
        let h = allocate::<T>(capacity);
        let old = self.storage.load(Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: both storages are live and hold at least n items.
            unsafe { ptr::copy_nonoverlapping(items_of::<T>(old), items_of::<T>(h), n) };
        }
        self.storage.store(h, Ordering::Release);
        if !old.is_null() {
            retire(old);
        }
    }

    /// Copies the items a reader sees into `out`, without allocating: the
    /// number of items, or `Err(n)` when `out` has room for fewer than the
    /// `n` there are. The copy may be torn (see the module docs).
    ///
    /// # Safety
    /// `this` points to a `Published` that stays allocated during the call
    /// (its storage may change), and the caller is inside a [`ReadSection`].
    pub(crate) unsafe fn copy_racy(this: *const Self, out: &mut Vec<T>) -> Result<usize, usize> {
        // SAFETY: the caller's promise.
        unsafe { Self::copy_range_racy(this, 0, usize::MAX, out) }
    }

    /// [`Published::copy_racy`] of at most `max` items from item `from` on.
    ///
    /// # Safety
    /// As for [`Published::copy_racy`].
    pub(crate) unsafe fn copy_range_racy(
        this: *const Self,
        from: usize,
        max: usize,
        out: &mut Vec<T>,
    ) -> Result<usize, usize> {
        // SAFETY: the caller's promise; the fields are atomics.
        let (h, len) = unsafe {
            let h = (*this).storage.load(Ordering::Acquire);
            (h, (*this).len.load(Ordering::Acquire))
        };
        if h.is_null() {
            return Ok(0);
        }
        // The length may belong to a larger storage than the one loaded.
        // SAFETY: a storage loaded inside a read section stays allocated.
        let end = len.min(unsafe { (*h).capacity });
        let n = end.saturating_sub(from).min(max);
        if out.capacity() - out.len() < n {
            return Err(n);
        }
        // SAFETY: items from..from + n of the storage are inside its
        // allocation; out has room for them.
        unsafe {
            let src = items_of::<T>(h).add(from);
            let dst = out.as_mut_ptr().add(out.len());
            for i in 0..n {
                dst.add(i).write(read_racy(src.add(i)));
            }
            out.set_len(out.len() + n);
        }
        Ok(n)
    }

    /// Calls `f` with the items a reader sees, read one at a time; the items may be torn (see the module docs).
    ///
    /// # Safety
    /// As for [`Published::copy_racy`].
    pub(crate) unsafe fn for_each_racy(this: *const Self, mut f: impl FnMut(usize, T)) {
        // SAFETY: as in copy_racy.
        unsafe {
            let h = (*this).storage.load(Ordering::Acquire);
            if h.is_null() {
                return;
            }
            let n = (*this).len.load(Ordering::Acquire).min((*h).capacity);
            let src = items_of::<T>(h);
            for i in 0..n {
                f(i, read_racy(src.add(i)));
            }
        }
    }
}

impl<T: Copy> Published<T> {
    /// Reads items one at a time from `start` on (wrapping around at the
    /// end, once round at most) while `go_on` says so: a probe of an open
    /// addressing table. The items may be torn (see the module docs).
    ///
    /// # Safety
    /// As for [`Published::copy_racy`].
    pub(crate) unsafe fn scan_racy(
        this: *const Self,
        start: usize,
        mut go_on: impl FnMut(T) -> bool,
    ) {
        // SAFETY: as in copy_racy.
        unsafe {
            let h = (*this).storage.load(Ordering::Acquire);
            if h.is_null() {
                return;
            }
            let n = (*this).len.load(Ordering::Acquire).min((*h).capacity);
            if n == 0 {
                return;
            }
            let src = items_of::<T>(h);
            for k in 0..n {
                if !go_on(read_racy(src.add((start + k) % n))) {
                    return;
                }
            }
        }
    }
}

impl<T: Copy> Drop for Published<T> {
    fn drop(&mut self) {
        let h = self.storage.swap(ptr::null_mut(), Ordering::AcqRel);
        self.len.store(0, Ordering::Release);
        if !h.is_null() {
            retire(h);
        }
    }
}

/// The layout of a storage of `capacity` items: the header, then the items.
fn layout_of<T>(capacity: usize) -> (Layout, usize) {
    let items = Layout::array::<T>(capacity).expect("a storage the address space can hold");
    let (layout, offset) = Layout::new::<Header>()
        .extend(items)
        .expect("a storage the address space can hold");
    (layout.pad_to_align(), offset)
}

/// The items of storage `h`.
///
/// # Safety
/// `h` heads a storage of `T`s.
#[inline(always)]
unsafe fn items_of<T>(h: *mut Header) -> *mut T {
    // SAFETY: the caller's promise; the items start after the header,
    // aligned for T (as `layout_of` lays them out).
    unsafe { h.cast::<u8>().add(items_offset::<T>()).cast() }
}

/// Where the items of a storage start: after the header, aligned for `T`.
const fn items_offset<T>() -> usize {
    let align = std::mem::align_of::<T>();
    size_of::<Header>().div_ceil(align) * align
}

/// Allocates a storage of `capacity` items (uninitialised).
fn allocate<T>(capacity: usize) -> *mut Header {
    let (layout, _) = layout_of::<T>(capacity);
    // SAFETY: the layout has a non-zero size (the header).
    let h = unsafe { std::alloc::alloc(layout) }.cast::<Header>();
    if h.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: h is a fresh allocation with room for the header.
    unsafe {
        h.write(Header {
            capacity,
            layout,
            next_retired: ptr::null_mut(),
        })
    };
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_grow_the_storage_and_a_reader_copies_what_is_in_use() {
        let mut a = Published::<u64>::new();
        for i in 0..1000 {
            a.push(i);
        }
        assert_eq!(a.len(), 1000);
        assert_eq!(a.capacity(), 1024);
        let _in = ReadSection::enter();
        let mut out = Vec::with_capacity(10);
        // SAFETY: `a` outlives the call, inside a read section.
        assert_eq!(unsafe { Published::copy_racy(&a, &mut out) }, Err(1000));
        out.reserve(1000);
        // SAFETY: as above.
        assert_eq!(unsafe { Published::copy_racy(&a, &mut out) }, Ok(1000));
        assert_eq!(out, (0..1000).collect::<Vec<u64>>());
        a.as_mut_slice()[3] = 7;
        a.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&a.as_slice()[..5], &[0, 1, 2, 7, 4]);
        assert_eq!(&a.as_slice()[1000..], &[1, 2, 3]);
        let f = Published::filled(5, 9u32);
        assert_eq!(f.as_slice(), &[9; 5]);
    }

    #[test]
    fn a_reader_copying_while_the_writer_grows_sees_whole_prefixes() {
        // The writer pushes 0, 1, 2, ... (regrowing all along); readers copy
        // concurrently. Items are written before the length that counts
        // them, and storages are freed only once no reader is inside, so
        // every copy is a prefix 0..n.
        let arr: &'static mut Published<u64> = Box::leak(Box::new(Published::new()));
        let shared: *const Published<u64> = arr;
        let shared = shared as usize;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut copies = 0;
                while !done.load(Ordering::Relaxed) || copies < 10 {
                    let _in = ReadSection::enter();
                    out.clear();
                    let p = shared as *const Published<u64>;
                    // SAFETY: leaked (never freed), inside a read section.
                    match unsafe { Published::copy_racy(p, &mut out) } {
                        Ok(_) => {
                            assert!(out.iter().enumerate().all(|(i, &x)| x == i as u64));
                            copies += 1;
                        }
                        Err(n) => out.reserve(n + 1024),
                    }
                }
            })
        };
        for i in 0..200_000u64 {
            arr.push(i);
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn a_version_read_across_a_write_is_refused() {
        let v = Version::new();
        let at = v.begin_read().unwrap();
        assert!(v.unchanged_since(at));
        v.begin_write();
        assert_eq!(v.begin_read(), None, "odd while writing");
        assert!(!v.unchanged_since(at));
        v.end_write();
        assert!(!v.unchanged_since(at));
        let again = v.begin_read().unwrap();
        assert!(v.unchanged_since(again));
    }
}
