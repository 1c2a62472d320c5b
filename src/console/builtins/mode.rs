//! What the tracker records, switched in the running process:
//! `set_mode(name)`, `mode()`, `set_sample_bytes(n)`. Each answers with
//! what now happens, so that nobody has to restart a leaking process (and
//! lose the leak) to see more of it.

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::{Call, Host};
use crate::render::table::{bytes, wrap};

/// `n` bytes with a binary unit, kept on one line when wrapped.
fn unbroken_bytes(n: u64) -> String {
    bytes(n).replace(' ', "\u{a0}")
}
use crate::tracker::{self, Mode};

pub(super) fn register(host: &mut Host) {
    host.builtin_function(
        "mode",
        Some("mode() — what the allocator records now: off, counters, sampled or exact"),
        |c| {
            c.arity(0)?;
            Ok(text(c, &describe(tracker::mode())))
        },
    );
    host.builtin_function(
        "set_mode",
        Some(
            "set_mode('exact') — switch what is recorded (off, counters, sampled, exact), no restart",
        ),
        |c| {
            c.arity(1)?;
            let name = c.str_arg(0)?;
            let Some(mode) = Mode::parse(name) else {
                return Err(Error::new(
                    ExceptionKind::ValueError,
                    format!("unknown mode '{name}': one of 'off', 'counters', 'sampled', 'exact'"),
                ));
            };
            let before = tracker::mode();
            // The live heap as the counters know it, before the switch:
            // in exact mode all of it predates the switch.
            let live = crate::stats().map(|s| s.live_bytes).unwrap_or(0);
            tracker::set_mode(mode);
            Ok(text(c, &switched(before, mode, live)))
        },
    );
    host.builtin_function(
        "set_sample_bytes",
        Some("set_sample_bytes(524288) — the mean bytes between samples in sampled mode"),
        |c| {
            c.arity(1)?;
            let n = match c.arg(0) {
                Some(Value::Int(n)) if *n > 0 => *n as u64,
                _ => {
                    return Err(Error::new(
                        ExceptionKind::ValueError,
                        "set_sample_bytes() takes a positive whole number of bytes",
                    ));
                }
            };
            tracker::set_sample_bytes(n);
            let mut line = format!(
                "Sampling one block per {} allocated, on average, from now on; blocks \
                 sampled before keep the weight of the mean they were sampled at, so \
                 estimates stay unbiased.",
                unbroken_bytes(n)
            );
            if tracker::mode() != Mode::Sampled {
                line.push_str(" It applies in sampled mode: set_mode('sampled').");
            }
            Ok(text(c, &line))
        },
    );
}

/// `s` wrapped to the caller's width.
fn text(c: &Call<'_>, s: &str) -> Value {
    Value::Text(wrap(s, c.width().max(20), 0))
}

/// What `mode` records.
fn describe(mode: Mode) -> String {
    match mode {
        Mode::Off => "off: nothing is counted or recorded (plain jemalloc); blocks recorded \
                      before are forgotten as they are freed."
            .into(),
        Mode::Counters => "counters: every allocation and free is counted (exact live \
                           bytes and blocks), no stacks are recorded."
            .into(),
        Mode::Sampled => format!(
            "sampled: counts everything and records the stack of one block per {} \
             allocated on average; heap figures are unbiased estimates.",
            unbroken_bytes(tracker::sample_bytes())
        ),
        Mode::Exact => "exact: every block allocated since the switch is recorded with its \
                        stack; heap figures are exact and the heap graph (byvia, sp, \
                        unreachable) works."
            .into(),
    }
}

/// The answer to a switch from `before` to `now`, with the live heap
/// (`live` bytes, from the counters) at the switch.
fn switched(before: Mode, now: Mode, live: u64) -> String {
    if before == now {
        return format!("Already {}", describe(now));
    }
    let mut s = format!("Mode {}", describe(now));
    match now {
        Mode::Exact => s.push_str(&format!(
            " {} of the live heap predates the switch and {}",
            unbroken_bytes(live),
            if before == Mode::Sampled {
                "is known only by its samples."
            } else {
                "is not recorded (no samples were taken before)."
            }
        )),
        _ if before == Mode::Exact => s.push_str(
            " Blocks recorded in exact mode stay recorded, exactly, until they are freed.",
        ),
        _ => {}
    }
    s
}
