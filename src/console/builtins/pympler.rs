//! Pympler in the console: `muppy.get_objects()`, `summary.summarize` and
//! `summary.print_`, and `tracker.SummaryTracker()` with `print_diff()`.
//! The objects are the live heap blocks; their type is the block's type.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::{Call, Host, HostObject};
use crate::heap::Heap;

/// How many rows `summary.print_` and `print_diff` show unless told
/// (Pympler's default).
const DEFAULT_LIMIT: usize = 15;

pub(super) fn register(host: &mut Host) {
    host.builtin_object(
        "muppy",
        Some("from pympler import muppy: muppy.get_objects() — the live blocks, len() of them"),
        Muppy,
    );
    host.builtin_object(
        "summary",
        Some(
            "from pympler import summary: summary.summarize(objects), \
             summary.print_(rows, limit=15) — Pympler's table by type",
        ),
        Summary,
    );
    host.builtin_object(
        "tracker",
        Some(
            "from pympler import tracker: t = tracker.SummaryTracker(), t.print_diff() — \
             what changed, by type, since the last call",
        ),
        TrackerModule,
    );
}

/// A summary: type, objects, bytes.
type Rows = Vec<(String, i64, i64)>;

fn summarize(heap: &Heap) -> Rows {
    heap.bytype()
        .rows()
        .iter()
        .map(|r| (r.label.clone(), r.count as i64, r.size as i64))
        .collect()
}

/// The `limit=` keyword (or second positional argument) of a print call.
fn limit(c: &Call<'_>) -> Result<usize, Error> {
    let given = match (c.args().get(1), c.kwargs()) {
        (None, []) => return Ok(DEFAULT_LIMIT),
        (Some(v), []) => v,
        (None, [(k, v)]) if k == "limit" => v,
        _ => {
            return Err(Error::new(
                ExceptionKind::TypeError,
                format!("{}() takes one keyword argument: limit", c.name),
            ));
        }
    };
    match given {
        Value::Int(n) if *n > 0 => Ok(*n as usize),
        _ => Err(Error::new(
            ExceptionKind::ValueError,
            "limit must be a positive integer",
        )),
    }
}

struct Muppy;

impl HostObject for Muppy {
    fn type_name(&self) -> &str {
        "module"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["get_objects"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        c.arity(0)?;
        match method {
            "get_objects" => Ok(Value::object(Objects(crate::hpy().heap()))),
            _ => Err(Error::no_attribute("module", method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'pympler.muppy'>".into()
    }
}

/// `muppy.get_objects()`: the live blocks of one snapshot.
struct Objects(Heap);

impl HostObject for Objects {
    fn type_name(&self) -> &str {
        "list"
    }

    fn repr(&self) -> String {
        format!(
            "<{} objects{}: len(), summary.summarize()>",
            self.0.count(),
            if self.0.estimated() {
                " (estimated from samples)"
            } else {
                ""
            }
        )
    }

    fn length(&self) -> Option<usize> {
        Some(self.0.count() as usize)
    }
}

struct Summary;

impl HostObject for Summary {
    fn type_name(&self) -> &str {
        "module"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["summarize", "print_"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        match method {
            "summarize" => {
                c.arity(1)?;
                let objects = as_object::<Objects>(c.arg(0)).ok_or_else(|| {
                    Error::new(
                        ExceptionKind::TypeError,
                        "summarize() takes muppy.get_objects()",
                    )
                })?;
                Ok(Value::object(SummaryRows(
                    summarize(&objects.0),
                    objects.0.estimated(),
                )))
            }
            "print_" => {
                let rows = as_object::<SummaryRows>(c.arg(0)).ok_or_else(|| {
                    Error::new(
                        ExceptionKind::TypeError,
                        "print_() takes summary.summarize(…)",
                    )
                })?;
                let limit = limit(c)?;
                let table = crate::render::pympler::summary(&rows.0, limit, c.width());
                Ok(Value::Text(table + &estimated_note(rows.1, c.width())))
            }
            _ => Err(Error::no_attribute("module", method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'pympler.summary'>".into()
    }
}

/// The concrete object behind a value, if it is one of type `T`.
fn as_object<T: HostObject>(v: Option<&Value>) -> Option<&T> {
    match v? {
        Value::Object(o) => (o.as_ref() as &dyn std::any::Any).downcast_ref::<T>(),
        _ => None,
    }
}

/// `summary.summarize(…)`: rows of type, objects, total size; whether
/// they are estimates (sampled mode).
struct SummaryRows(Rows, bool);

/// The line under a table of estimates (empty for exact figures).
fn estimated_note(estimated: bool, width: usize) -> String {
    if estimated {
        crate::render::table::wrap(
            "Estimated from samples (unbiased); set_mode('exact') for exact figures.",
            width,
            0,
        ) + "\n"
    } else {
        String::new()
    }
}

impl HostObject for SummaryRows {
    fn type_name(&self) -> &str {
        "list"
    }

    fn repr(&self) -> String {
        format!("<summary of {} types: summary.print_()>", self.0.len())
    }

    fn length(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct TrackerModule;

impl HostObject for TrackerModule {
    fn type_name(&self) -> &str {
        "module"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["SummaryTracker"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        c.arity(0)?;
        match method {
            "SummaryTracker" => Ok(Value::object(SummaryTracker(Mutex::new(summarize(
                &crate::hpy().heap(),
            ))))),
            _ => Err(Error::no_attribute("module", method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'pympler.tracker'>".into()
    }
}

/// `tracker.SummaryTracker()`: the summary at the last call.
struct SummaryTracker(Mutex<Rows>);

impl HostObject for SummaryTracker {
    fn type_name(&self) -> &str {
        "SummaryTracker"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["print_diff", "diff"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        if method != "print_diff" && method != "diff" {
            return Err(Error::no_attribute("SummaryTracker", method));
        }
        let limit = if c.args().is_empty() {
            limit(c)?
        } else {
            return Err(Error::new(
                ExceptionKind::TypeError,
                format!("{method}() takes one keyword argument: limit"),
            ));
        };
        let heap = crate::hpy().heap();
        let now = summarize(&heap);
        let before = std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(|e| e.into_inner()),
            now.clone(),
        );
        let mut change: HashMap<String, (i64, i64)> = HashMap::new();
        for (ty, n, size) in now {
            let e = change.entry(ty).or_default();
            e.0 += n;
            e.1 += size;
        }
        for (ty, n, size) in before {
            let e = change.entry(ty).or_default();
            e.0 -= n;
            e.1 -= size;
        }
        let rows: Rows = change
            .into_iter()
            .filter(|(_, (n, size))| *n != 0 || *size != 0)
            .map(|(ty, (n, size))| (ty, n, size))
            .collect();
        if method == "diff" {
            return Ok(Value::object(SummaryRows(rows, heap.estimated())));
        }
        if rows.is_empty() {
            return Ok(Value::text("No change since the last call."));
        }
        let table = crate::render::pympler::diff(&rows, limit, c.width());
        Ok(Value::Text(
            table + &estimated_note(heap.estimated(), c.width()),
        ))
    }

    fn repr(&self) -> String {
        "<SummaryTracker: .print_diff()>".into()
    }
}
