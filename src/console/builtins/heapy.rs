//! Guppy's heapy in the console: `hpy`, and the heaps, partitions and
//! differences it gives, as objects.

use std::time::Duration;

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::{Call, Host, HostObject};
use crate::heap::{Heap, HeapDiff, Hpy, Kind, Partition, Paths, Retainers};

pub(super) fn register(host: &mut Host) {
    host.builtin_function("clear_relheap", None, |c| {
        c.arity(0)?;
        crate::hpy().clear_relheap();
        Ok(Value::text("Later heaps show every live block again."))
    });
    host.builtin_function(
        "leaks",
        Some(
            "leaks() — the leak report: what kept growing over the growth history, its site, growth and history; in exact mode what holds it; leaks(deep=True, secs=30): exact mode for secs to find the holders, then back",
        ),
        |c| {
            if !c.args().is_empty() {
                return Err(Error::new(
                    ExceptionKind::TypeError,
                    "leaks() takes only keyword arguments: deep=True, secs=N",
                ));
            }
            let (mut deep, mut asked) = (false, None);
            for (k, v) in c.kwargs() {
                match (k.as_str(), v) {
                    ("deep", v) => deep = v.truthy(),
                    ("secs", Value::Int(n)) if *n > 0 => asked = Some(*n as f64),
                    ("secs", Value::Float(f)) if *f > 0.0 && f.is_finite() => asked = Some(*f),
                    _ => {
                        return Err(Error::new(
                            ExceptionKind::TypeError,
                            "leaks() takes deep=True and secs=N (seconds of exact mode, a \
                             positive number)",
                        ));
                    }
                }
            }
            if !deep {
                return Ok(Value::Text(crate::leaks().render(c.width())));
            }
            // The window ends in time for the graph within the line's
            // limit (what is left of it, unless asked for less).
            let left = c.time_left().saturating_sub(DEEP_GRAPH_TIME);
            let secs = asked.unwrap_or(crate::leaks::DEFAULT_DEEP_WINDOW.as_secs_f64());
            let window = Duration::from_secs_f64(secs.min(86_400.0)).min(left);
            let mut text = crate::leaks::deep_report(window).render(c.width());
            if asked.is_some() && window.as_secs_f64() + 0.5 < secs {
                text.push_str(&crate::render::table::wrap(
                    &format!(
                        "(Exact mode was on for {:.0} s, not {secs:.0}: the console's line \
                         limit. Builder::line_timeout raises it; leakscope::leaks::deep_report \
                         in the program has none.)",
                        window.as_secs_f64()
                    ),
                    c.width(),
                    0,
                ));
                text.push('\n');
            }
            Ok(Value::Text(text))
        },
    );
    host.builtin_object(
        "hpy",
        Some(
            "hpy().heap() — the live heap; .bytype .bysite .bystack .bysize .byage .bythread, [i], ['Name'] (rows by name), .more, .all (full=True: names whole), [i].name; who holds it: .byvia .byrcs .referrers .referents .sp, hpy().unreachable(); what it keeps alive: .retained, .dominators (d[i]: what row i retains); hpy().setrelheap(); hpy().watch(): the growth history (watch(secs) restarts it every secs)",
        ),
        HpyObject(crate::hpy()),
    );
}

/// The time `leaks(deep=True)` leaves for the graph within the line's
/// limit.
const DEEP_GRAPH_TIME: Duration = Duration::from_secs(3);

/// `hpy` (and `hpy()`, the same object).
struct HpyObject(Hpy);

impl HostObject for HpyObject {
    fn type_name(&self) -> &str {
        "hpy"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec![
            "heap",
            "setrelheap",
            "setref",
            "clear_relheap",
            "watch",
            "unwatch",
            "unreachable",
        ]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        let h = &self.0;
        if method != "watch" {
            c.arity(0)?;
        }
        c.no_kwargs()?;
        match method {
            "heap" => Ok(Value::object(HeapObject(heap(h)?, None))),
            "setrelheap" | "setref" => {
                h.setrelheap();
                Ok(Value::text(
                    "Later heaps show only blocks allocated from now on, in every session \
                     of this process (the baseline is the process's); clear_relheap() ends it.",
                ))
            }
            "clear_relheap" => {
                h.clear_relheap();
                Ok(Value::text("Later heaps show every live block again."))
            }
            "watch" => {
                let secs = match c.args() {
                    [Value::Int(n)] if *n > 0 => *n as f64,
                    [Value::Float(f)] if *f > 0.0 && f.is_finite() => *f,
                    [] => return Ok(Value::Text(crate::leaks::history().render(c.width()))),
                    _ => {
                        return Err(Error::new(
                            ExceptionKind::TypeError,
                            "watch() shows the growth history; watch(seconds) restarts it, \
                             taking the heap every seconds (a positive number)",
                        ));
                    }
                };
                let every = Duration::from_secs_f64(secs.min(86_400.0))
                    .clamp(crate::leaks::MIN_INTERVAL, crate::leaks::MAX_INTERVAL);
                crate::leaks::restart(every);
                Ok(Value::Text(format!(
                    "The growth history starts afresh, a heap every {} s; watch() shows it, \
                     leaks() names what keeps growing.\n",
                    every.as_secs_f64()
                )))
            }
            "unwatch" => {
                crate::leaks::stop();
                Ok(Value::text(
                    "The growth history is stopped and its points dropped; leaks() has \
                     nothing to judge until watch(secs) starts it again.",
                ))
            }
            "unreachable" => Ok(match heap(h)?.unreachable() {
                Ok(lost) => Value::object(HeapObject(lost, None)),
                Err(e) => {
                    Value::Text(crate::render::table::wrap(&format!("{e}."), c.width(), 0) + "\n")
                }
            }),
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }

    fn repr(&self) -> String {
        "<hpy>".into()
    }

    fn call_returns_self(&self) -> bool {
        true
    }
}

/// The live heap, or `MemoryError` when the process is at its memory
/// limit (the program runs on).
fn heap(h: &crate::heap::Hpy) -> Result<crate::heap::Heap, Error> {
    h.try_heap()
        .map_err(|e| Error::new(ExceptionKind::MemoryError, e.to_string()))
}

/// Why a graph view cannot answer, as the console shows it (one line: the
/// console wraps it to the client's width).
fn graph_error(e: &crate::heap::GraphError) -> Value {
    Value::Text(format!("{e}.\n"))
}

/// A heap: `hpy().heap()`, or a row of a partition (with the row's full
/// label: `x[0].name`).
struct HeapObject(Heap, Option<String>);

/// The partition an attribute names (`bytype` …).
fn kind_named(name: &str) -> Option<Kind> {
    Some(match name {
        "bytype" => Kind::Type,
        "bysite" => Kind::Site,
        "bystack" => Kind::Stack,
        "bysize" => Kind::Size,
        "byage" => Kind::Age,
        "bythread" => Kind::Thread,
        "byvia" => Kind::Via,
        "byrcs" => Kind::Referrers,
        _ => return None,
    })
}

impl HostObject for HeapObject {
    fn type_name(&self) -> &str {
        "heap"
    }

    fn memory(&self) -> (usize, Option<(usize, usize)>) {
        let (own, shared) = self.0.memory();
        (own, Some(shared))
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        let h = &self.0;
        match name {
            "count" => Some(Value::from(h.count())),
            "size" => Some(Value::from(h.size())),
            // A row's label in full: module paths and all.
            "name" => self.1.as_deref().map(Value::from),
            // A heap shows as its partition by type: `_.more` pages that.
            "more" | "all" => PartitionObject::new(h.bytype()).attribute(name),
            "referrers" => Some(Value::object(HeapObject(h.referrers(), None))),
            "referents" => Some(Value::object(HeapObject(h.referents(), None))),
            "sp" => Some(match h.sp() {
                Ok(paths) => Value::object(PathsObject(paths)),
                Err(e) => graph_error(&e),
            }),
            "dominators" => Some(match h.dominators() {
                Ok(d) => Value::object(RetainersObject(d)),
                Err(e) => graph_error(&e),
            }),
            "retained" => Some(match h.retained() {
                Ok(bytes) => Value::from(bytes),
                Err(e) => graph_error(&e),
            }),
            _ => kind_named(name).map(|k| Value::object(PartitionObject::new(h.partition(k)))),
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["stacks"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        match method {
            // `stacks(full=True)`: every frame, none folded.
            "stacks" => {
                let full = match (c.args(), c.kwargs()) {
                    ([], []) => false,
                    ([], [(k, v)]) if k == "full" => v.truthy(),
                    _ => {
                        return Err(Error::new(
                            ExceptionKind::TypeError,
                            "stacks() takes one keyword argument: full=True",
                        ));
                    }
                };
                Ok(Value::Text(crate::render::stacks(
                    &self.0.stacks(),
                    10,
                    c.width(),
                    full,
                )))
            }
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }

    fn repr(&self) -> String {
        format!(
            "<heap: {} objects, {} bytes>",
            self.0.count(),
            self.0.size()
        )
    }

    fn show(&self, width: usize) -> String {
        self.0.bytype().render(width)
    }

    fn length(&self) -> Option<usize> {
        Some(self.0.count() as usize)
    }

    /// `heap[i]`: row `i` of its partition by type, as Guppy indexes a set.
    fn item(&self, index: usize) -> Option<Value> {
        PartitionObject::new(self.0.bytype()).item(index)
    }

    /// `heap['HtmlResponse']`: the rows of its partition by type that the
    /// text names, as one set.
    fn item_named(&self, key: &str) -> Option<Result<Value, Error>> {
        PartitionObject::new(self.0.bytype()).item_named(key)
    }

    fn subtract(&self, other: &Value) -> Option<Result<Value, Error>> {
        let Value::Object(o) = other else {
            return None;
        };
        let before = (o.as_ref() as &dyn std::any::Any).downcast_ref::<HeapObject>()?;
        Some(Ok(Value::object(DiffObject(&self.0 - &before.0))))
    }

    fn call_returns_self(&self) -> bool {
        true
    }
}

/// A partition of a heap, paged; `past_end` once `.more` went past its
/// last page; `full` when its labels are shown whole (`.all(full=True)`).
struct PartitionObject {
    partition: Partition,
    past_end: bool,
    full: bool,
}

impl PartitionObject {
    fn new(p: Partition) -> Self {
        PartitionObject {
            partition: p,
            past_end: false,
            full: false,
        }
    }
}

impl HostObject for PartitionObject {
    fn type_name(&self) -> &str {
        "partition"
    }

    fn memory(&self) -> (usize, Option<(usize, usize)>) {
        let (own, shared) = self.partition.memory();
        (own, Some(shared))
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        let p = &self.partition;
        match name {
            "more" => Some(Value::object(PartitionObject {
                partition: p.more(),
                past_end: self.past_end || p.rows_after_page() == 0,
                full: self.full,
            })),
            "all" => Some(Value::object(PartitionObject {
                full: self.full,
                ..PartitionObject::new(p.all())
            })),
            "count" => Some(Value::from(p.heap().count())),
            "size" => Some(Value::from(p.heap().size())),
            _ => None,
        }
    }

    fn repr(&self) -> String {
        format!(
            "<partition by {} of {} rows>",
            self.partition.kind().heading(),
            self.partition.rows().len()
        )
    }

    fn show(&self, width: usize) -> String {
        if self.past_end {
            return format!(
                "<No more rows: that was the last page. Type e.g. '_.all' to view all {}.>",
                self.partition.rows().len()
            );
        }
        if self.full {
            self.partition.render_full(width)
        } else {
            self.partition.render(width)
        }
    }

    fn length(&self) -> Option<usize> {
        Some(self.partition.rows().len())
    }

    /// `p.all(full=True)`, `p.more(full=True)`: the same page with every
    /// label whole.
    fn call_with(&self, c: &Call<'_>) -> Option<Result<Value, Error>> {
        let full = match (c.args(), c.kwargs()) {
            ([], []) => return None,
            ([], [(k, v)]) if k == "full" => v.truthy(),
            ([], [(k, _)]) => {
                return Some(Err(Error::new(
                    ExceptionKind::TypeError,
                    format!("a partition takes no keyword argument '{k}' (only full=True)"),
                )));
            }
            _ => {
                return Some(Err(Error::new(
                    ExceptionKind::TypeError,
                    "a partition takes one keyword argument: full=True",
                )));
            }
        };
        Some(Ok(Value::object(PartitionObject {
            partition: self.partition.clone(),
            past_end: self.past_end,
            full,
        })))
    }

    /// `p['HtmlResponse']`: the rows the text names, as one set (see
    /// [`Partition::rows_named`]).
    fn item_named(&self, key: &str) -> Option<Result<Value, Error>> {
        Some(match self.partition.rows_named(key) {
            Some((rows, heap)) => {
                let label = match rows.as_slice() {
                    [one] => self.partition.rows()[*one].label.clone(),
                    _ => format!("{} rows containing '{key}'", rows.len()),
                };
                Ok(Value::object(HeapObject(heap, Some(label))))
            }
            None => Err(Error::new(
                ExceptionKind::KeyError,
                format!("no row of this partition is or contains '{key}'"),
            )),
        })
    }

    fn item(&self, index: usize) -> Option<Value> {
        let label = self.partition.rows().get(index)?.label.clone();
        Some(Value::object(HeapObject(
            self.partition.row(index),
            Some(label),
        )))
    }

    fn call_returns_self(&self) -> bool {
        true
    }
}

/// Shortest paths from the roots (`x.sp`).
struct PathsObject(Paths);

impl HostObject for PathsObject {
    fn type_name(&self) -> &str {
        "paths"
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "count" => Some(Value::from(self.0.rows.len() as u64)),
            _ => None,
        }
    }

    fn repr(&self) -> String {
        format!("<{} shortest paths>", self.0.rows.len())
    }

    fn show(&self, width: usize) -> String {
        self.0.render(width)
    }

    fn length(&self) -> Option<usize> {
        Some(self.0.rows.len())
    }
}

/// The difference of two heaps.
struct DiffObject(HeapDiff);

impl HostObject for DiffObject {
    fn type_name(&self) -> &str {
        "diff"
    }

    fn repr(&self) -> String {
        format!(
            "<difference: {:+} objects, {:+} bytes>",
            self.0.count, self.0.size
        )
    }

    fn show(&self, width: usize) -> String {
        crate::render::diff(&self.0, width)
    }
}

/// MAT's dominator tree of a heap (`x.dominators`), and `d[i]`, what row
/// `i` retains.
struct RetainersObject(Retainers);

impl HostObject for RetainersObject {
    fn type_name(&self) -> &str {
        "dominators"
    }

    fn memory(&self) -> (usize, Option<(usize, usize)>) {
        let (own, shared) = self.0.memory();
        (own, Some(shared))
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "count" => Some(Value::from(self.0.rows.len() as u64)),
            _ => None,
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["heap"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        c.no_kwargs()?;
        match (method, c.args()) {
            ("heap", [Value::Int(i)]) if *i >= 0 && (*i as usize) < self.0.rows.len() => {
                Ok(Value::object(HeapObject(self.0.heap(*i as usize), None)))
            }
            ("heap", _) => Err(Error::new(
                ExceptionKind::IndexError,
                format!(
                    "heap(i) takes the index of a row, 0 to {}",
                    self.0.rows.len().saturating_sub(1)
                ),
            )),
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }

    fn repr(&self) -> String {
        format!("<dominator tree: {} rows>", self.0.rows.len())
    }

    fn show(&self, width: usize) -> String {
        self.0.render(width)
    }

    fn length(&self) -> Option<usize> {
        Some(self.0.rows.len())
    }

    /// `d[i]`: what row `i` retains, one level down the tree.
    fn item(&self, index: usize) -> Option<Value> {
        (index < self.0.rows.len()).then(|| Value::object(RetainersObject(self.0.row(index))))
    }

    fn call_returns_self(&self) -> bool {
        true
    }
}
