//! Initialisation on the first allocation: the allocator's environment
//! variables (read without allocating, see [`crate::config`]) and
//! the `fork` handlers.

use std::sync::atomic::{AtomicU8, Ordering};

use super::recorder;
use super::registry::{fork_child, fork_parent, fork_prepare};
use super::settings::{DEFAULT_SAMPLE_BYTES, Mode, SAMPLE_BYTES, SAMPLE_EPOCH, store_mode};
use super::stack::{self, Unwinder};
use crate::config::{self, Variable};
use crate::sys::clock;
use crate::sys::env::{parse_u64, warn};

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);

/// Initialises the allocator unless that is done (`default` is the mode
/// code used when `LEAKSCOPE_MODE` is unset).
#[inline(always)]
pub(super) fn ensure_init(default: u8) {
    if INIT.load(Ordering::Acquire) != INIT_DONE {
        init(default);
    }
}

/// Warns, without allocating, that `var`'s value `v` is unusable.
fn refuse(var: &Variable, v: &[u8], why: &[u8]) {
    warn(&[b"leakscope: ", var.name().as_bytes(), b"=", v, why]);
}

/// A positive whole number from `var`, if set and valid.
fn positive(var: &Variable) -> Option<u64> {
    let v = var.raw()?;
    match parse_u64(v) {
        Some(n) if n > 0 => Some(n),
        _ => {
            refuse(
                var,
                v,
                b" is not a positive whole number; using the default\n",
            );
            None
        }
    }
}

#[cold]
#[inline(never)]
pub(super) fn init(default: u8) {
    if INIT
        .compare_exchange(
            INIT_NONE,
            INIT_RUNNING,
            Ordering::Acquire,
            Ordering::Acquire,
        )
        .is_err()
    {
        while INIT.load(Ordering::Acquire) != INIT_DONE {
            std::hint::spin_loop();
        }
        return;
    }
    clock::start_ticks();
    let mut mode = default;
    if let Some(v) = config::MODE.raw() {
        match Mode::parse_bytes(v) {
            Some(m) => mode = m.code(),
            None => refuse(
                &config::MODE,
                v,
                b" is not one of off|counters|sampled|exact; using the default\n",
            ),
        }
    }
    let mean = positive(&config::SAMPLE_BYTES).unwrap_or(DEFAULT_SAMPLE_BYTES);
    if let Some(n) = positive(&config::MAX_FRAMES) {
        stack::set_max_frames(n as usize);
    }
    match config::UNWIND.raw() {
        Some(b"fp") => stack::set_unwinder(Unwinder::FramePointers),
        Some(b"backtrace") => stack::set_unwinder(Unwinder::Backtrace),
        Some(v) => refuse(&config::UNWIND, v, b" is not fp or backtrace; probing\n"),
        None => {}
    }
    SAMPLE_BYTES.store(mean, Ordering::Relaxed);
    SAMPLE_EPOCH.store(recorder::epoch_for_mean(mean), Ordering::Relaxed);
    // SAFETY: registering plain extern "C" functions; glibc's registration
    // uses its own malloc, not this allocator.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    store_mode(mode);
    INIT.store(INIT_DONE, Ordering::Release);
}
