//! The leak report: leakscope finds what keeps growing by itself.
//!
//! A growth history ([`start`]; begun by the console and the HTTP
//! endpoint too) takes the heap every `LEAKSCOPE_WATCH_INTERVAL` seconds
//! (default 10) and keeps the live bytes and blocks of the largest types
//! and program sites, for the last [`POINTS`] points, in at most 2 MiB.
//! [`leaks()`](fn@crate::leaks) reads it: a type or site whose live bytes
//! grew in a sustained way, beyond what the noise of its figures explains,
//! is a suspect; a cache that reached its bound, a queue that fills and
//! drains, churn and a warm-up that ended are not. Each suspect is shown
//! with the site in the program's code that allocates it, its growth per
//! minute and a sparkline of its history; in exact mode, with the
//! reference that holds most of its blocks (`byvia`).
//!
//! ```no_run
//! # #[global_allocator]
//! # static ALLOC: leakscope::Alloc = leakscope::Alloc::new();
//! # fn main() {
//! leakscope::leaks::start(); // needed only without a console or endpoint
//! // … the program runs for some minutes …
//! let report = leakscope::leaks();
//! for s in &report.suspects {
//!     eprintln!("{} at {}: {:+.0} bytes/min", s.type_name, s.site, s.bytes_per_minute);
//! }
//! println!("{report}"); // the console's table
//! # }
//! ```

mod history;
mod report;
mod trend;

pub use history::{DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL, POINTS, ROWS_PER_KIND};
pub use report::{GrowthHistory, GrowthRow, Holder, KeptBy, LeakReport, LeakSuspect, MAX_SUSPECTS};

use std::time::Duration;

use crate::config::{self, BadValue};

/// Starts the growth history, if none runs, at the interval
/// `LEAKSCOPE_WATCH_INTERVAL` names (`0`: none is started; a value it
/// cannot use is reported on stderr and [`DEFAULT_INTERVAL`] is kept).
/// The console and the HTTP endpoint call it when they start.
pub fn start() {
    let interval = interval_from_env().unwrap_or_else(|e| {
        crate::sys::operator::warn(&format!("leakscope: {e}; the growth history keeps 10 s"));
        Some(DEFAULT_INTERVAL)
    });
    if let Some(interval) = interval {
        history::start(interval, false);
    }
}

/// Starts the growth history afresh at `interval` (within
/// [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]): the points taken so far are
/// dropped.
pub fn restart(interval: Duration) {
    history::start(interval, true);
}

/// Stops the growth history; its points are dropped.
pub fn stop() {
    history::stop();
}

/// Whether a growth history runs.
pub fn running() -> bool {
    history::store().is_some()
}

/// The interval `LEAKSCOPE_WATCH_INTERVAL` asks for (seconds, fractions
/// allowed): [`DEFAULT_INTERVAL`] when it is not set, `None` for `0` (no
/// history).
pub fn interval_from_env() -> Result<Option<Duration>, BadValue> {
    const EXPECTED: &str = "0 (no history) or a number of seconds from 0.1 to 86400";
    let Some(text) = config::WATCH_INTERVAL.value() else {
        return Ok(Some(DEFAULT_INTERVAL));
    };
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(s) if (MIN_INTERVAL.as_secs_f64()..=MAX_INTERVAL.as_secs_f64()).contains(&s) => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        _ => Err(config::WATCH_INTERVAL.bad(text, EXPECTED)),
    }
}

/// The leak report now (see the [module docs](self)).
pub fn report() -> LeakReport {
    report::build()
}

/// How long [`deep_report`] keeps exact mode on when not told.
pub const DEFAULT_DEEP_WINDOW: Duration = Duration::from_secs(30);
/// The longest [`deep_report`] keeps exact mode on.
pub const MAX_DEEP_WINDOW: Duration = Duration::from_secs(300);

/// The leak report with what holds each suspect, from sampled mode: exact
/// mode is switched on for `window` (at most [`MAX_DEEP_WINDOW`]), the
/// suspects' blocks allocated meanwhile are looked up in the heap graph,
/// and the mode before is switched back. The report says that it did so
/// ([`LeakReport::deep_seconds`]). In exact mode, or with no suspect, it
/// is [`report`].
pub fn deep_report(window: Duration) -> LeakReport {
    report::deep(window.min(MAX_DEEP_WINDOW))
}

/// The growth history as it stands: the whole heap and its largest rows,
/// point by point (the console's `hpy().watch()`).
pub fn history() -> GrowthHistory {
    report::history()
}
