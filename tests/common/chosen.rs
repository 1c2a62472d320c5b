//! One of two global allocators for a whole process, chosen by an
//! environment variable before the first allocation: for a binary that
//! runs itself again under the other allocator and compares the two runs
//! (a binary has one `#[global_allocator]`).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const FIRST: u8 = 1;
const SECOND: u8 = 2;

/// `first`, unless the variable `var` holds `value`: then `second`.
pub(crate) struct Chosen<A, B> {
    var: &'static CStr,
    value: &'static [u8],
    first: A,
    second: B,
    choice: AtomicU8,
}

impl<A: GlobalAlloc, B: GlobalAlloc> Chosen<A, B> {
    /// Chooses `second` when `var` is `value`, `first` otherwise.
    pub(crate) const fn new(var: &'static CStr, value: &'static [u8], first: A, second: B) -> Self {
        Chosen {
            var,
            value,
            first,
            second,
            choice: AtomicU8::new(UNKNOWN),
        }
    }

    /// Whether this process runs on the second allocator. Reads the
    /// environment without allocating, once.
    pub(crate) fn second_chosen(&self) -> bool {
        let mut c = self.choice.load(Ordering::Relaxed);
        if c == UNKNOWN {
            // SAFETY: a NUL-terminated name; getenv does not allocate.
            let v = unsafe { libc::getenv(self.var.as_ptr()) };
            // SAFETY: getenv returned a valid C string or null.
            let second = !v.is_null() && unsafe { CStr::from_ptr(v) }.to_bytes() == self.value;
            c = if second { SECOND } else { FIRST };
            self.choice.store(c, Ordering::Relaxed);
        }
        c == SECOND
    }
}

// SAFETY: forwards every call to one allocator, the same for the whole run.
unsafe impl<A: GlobalAlloc, B: GlobalAlloc> GlobalAlloc for Chosen<A, B> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            if self.second_chosen() {
                self.second.alloc(l)
            } else {
                self.first.alloc(l)
            }
        }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            if self.second_chosen() {
                self.second.alloc_zeroed(l)
            } else {
                self.first.alloc_zeroed(l)
            }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe {
            if self.second_chosen() {
                self.second.dealloc(p, l)
            } else {
                self.first.dealloc(p, l)
            }
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            if self.second_chosen() {
                self.second.realloc(p, l, n)
            } else {
                self.first.realloc(p, l, n)
            }
        }
    }
}
