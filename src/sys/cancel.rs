//! Stopping long work from outside it. A thread that runs work on
//! someone's behalf (a console line) runs it [`watched`], with a check that
//! says when to stop: a deadline passed, a Ctrl-C, a client gone. The work
//! calls [`point`] in its loops (or [`batch_point`] after each larger
//! piece of it); every few milliseconds a point asks the
//! check, and when it says stop the work unwinds back to [`watched`],
//! dropping everything it built on the way. Work nobody watches (the
//! program's own calls, the HTTP endpoint) runs to its end: a point there
//! only counts.
//!
//! The unwinding is not a panic: no panic hook runs, nothing is printed,
//! and [`watched`] hands any real panic on unchanged. Points go only where
//! no lock is held, so that stopping never poisons shared state.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::clock;

/// Why watched work was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its time ran out.
    Deadline,
    /// The one it runs for asked it to stop (Ctrl-C).
    Interrupt,
    /// The one it runs for went away.
    Gone,
    /// It would take leakscope's own memory past the views' budget.
    OverBudget,
}

/// Says whether watched work should stop now.
pub(crate) type Check = Box<dyn FnMut() -> Option<Stop>>;

/// Why watched work stopped, and what it was doing then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// Why.
    pub(crate) why: Stop,
    /// What it was doing (as [`doing`] said), or "".
    pub(crate) doing: &'static str,
}

/// Says what the calling thread's work is doing, until dropped.
#[must_use]
pub(crate) struct Doing(&'static str);

impl Drop for Doing {
    fn drop(&mut self) {
        let _ = DOING.try_with(|d| d.set(self.0));
    }
}

/// Says what the work is doing from now until the guard drops ("building
/// the heap graph"): a stop tells the user.
pub(crate) fn doing(what: &'static str) -> Doing {
    Doing(DOING.with(|d| d.replace(what)))
}

/// Points between two reads of the clock.
const POINTS_PER_CLOCK: u32 = 64;

/// Nanoseconds between two asks of the check (the coarse clock moves in
/// steps of a few milliseconds, so this is at most one step).
const ASK_EVERY_NS: u64 = 2_000_000;

thread_local! {
    static CHECK: RefCell<Option<Check>> = const { RefCell::new(None) };
    static POINTS: Cell<u32> = const { Cell::new(0) };
    static ASKED_AT: Cell<u64> = const { Cell::new(0) };
    static DOING: Cell<&'static str> = const { Cell::new("") };
    /// When the innermost watched work began.
    static BEGAN: Cell<Option<std::time::Instant>> = const { Cell::new(None) };
}

/// Runs `work` with `check` asked at its points; `Err` says why it was
/// stopped. Watches nest: the inner check replaces the outer one until it
/// returns.
pub(crate) fn watched<R>(check: Check, work: impl FnOnce() -> R) -> Result<R, Stopped> {
    /// Puts the outer check back, however `work` ends.
    struct Restore(Option<Check>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            let _ = CHECK.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = outer;
                }
            });
        }
    }
    let outer = CHECK.with(|c| c.replace(Some(check)));
    let restore = Restore(outer);
    let outer_began = BEGAN.with(|b| b.replace(Some(std::time::Instant::now())));
    let ran = catch_unwind(AssertUnwindSafe(work));
    let _ = BEGAN.try_with(|b| b.set(outer_began));
    drop(restore);
    match ran {
        Ok(r) => Ok(r),
        Err(payload) => match payload.downcast::<Stopped>() {
            Ok(stopped) => Err(*stopped),
            Err(panic) => resume_unwind(panic),
        },
    }
}

/// Asks the check now, if work is watched; `None` when unwatched.
pub(crate) fn ask() -> Option<Stop> {
    CHECK
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            c.as_mut().and_then(|check| check())
        })
        .ok()
        .flatten()
}

/// A place where watched work may stop. Cheap enough for every item of a
/// loop: a count, a clock read (no syscall) every few dozen points, and the
/// check every few milliseconds.
#[inline]
pub(crate) fn point() {
    let n = POINTS.with(|p| {
        let n = p.get().wrapping_add(1);
        p.set(n);
        n
    });
    if n.is_multiple_of(POINTS_PER_CLOCK) {
        ask_if_due();
    }
}

/// A place where watched work may stop, after a larger piece of work
/// (a batch of blocks read, a region scanned): the clock is read at every
/// one of these.
pub(crate) fn batch_point() {
    ask_if_due();
}

/// When the calling thread's watched work began (`None` when unwatched).
pub(crate) fn watch_began() -> Option<std::time::Instant> {
    BEGAN.try_with(Cell::get).ok().flatten()
}

/// Whether the calling thread's work is watched (asked for from outside:
/// a console line, an HTTP request).
pub(crate) fn is_watched() -> bool {
    CHECK
        .try_with(|c| c.try_borrow().map(|c| c.is_some()).unwrap_or(true))
        .unwrap_or(false)
}

/// Stops watched work now, for `why` (unwatched work goes on).
pub(crate) fn refuse(why: Stop) {
    if is_watched() {
        let doing = DOING.with(Cell::get);
        resume_unwind(Box::new(Stopped { why, doing }));
    }
}

#[cold]
fn ask_if_due() {
    let now = clock::coarse_ns();
    if now < ASKED_AT.with(Cell::get).saturating_add(ASK_EVERY_NS) {
        return;
    }
    ASKED_AT.with(|a| a.set(now));
    if let Some(why) = ask() {
        let doing = DOING.with(Cell::get);
        resume_unwind(Box::new(Stopped { why, doing }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn spin_points(until: Duration) -> u64 {
        let began = Instant::now();
        let mut n = 0u64;
        while began.elapsed() < until {
            point();
            n += 1;
        }
        n
    }

    #[test]
    fn unwatched_points_only_count() {
        assert!(spin_points(Duration::from_millis(20)) > 0);
        assert_eq!(ask(), None);
    }

    #[test]
    fn a_deadline_stops_the_work_within_milliseconds_and_drops_what_it_built() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let check: Check = Box::new(move || (Instant::now() > deadline).then_some(Stop::Deadline));
        let dropped = std::rc::Rc::new(Cell::new(false));
        struct Built(std::rc::Rc<Cell<bool>>);
        impl Drop for Built {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let seen = dropped.clone();
        let began = Instant::now();
        let r = watched(check, move || {
            let _built = Built(seen);
            let _doing = doing("spinning");
            spin_points(Duration::from_secs(10))
        });
        assert_eq!(
            r,
            Err(Stopped {
                why: Stop::Deadline,
                doing: "spinning"
            })
        );
        assert_eq!(DOING.with(Cell::get), "");
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        assert!(dropped.get());
        // The check is gone with the watch.
        assert_eq!(ask(), None);
    }

    #[test]
    fn watches_nest_and_a_real_panic_passes_through() {
        let outer: Check = Box::new(|| Some(Stop::Gone));
        let r = watched(outer, || {
            let inner: Check = Box::new(|| None);
            let quiet = watched(inner, ask);
            assert_eq!(quiet, Ok(None));
            ask()
        });
        assert_eq!(r, Ok(Some(Stop::Gone)));
        let panicked = catch_unwind(|| watched(Box::new(|| None), || panic!("real")));
        let payload = panicked.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"real"));
    }

    #[test]
    fn finished_work_returns_its_value() {
        assert_eq!(watched(Box::new(|| Some(Stop::Interrupt)), || 7), Ok(7));
    }
}
