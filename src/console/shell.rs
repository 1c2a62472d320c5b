//! Evaluates console lines: the values, the built-ins (`prefs`,
//! `get_oldest`, `iter_all`, `hpy`, `stats`, `purge`, `p`, `len`, `help`)
//! and the host's objects and functions.

use std::collections::HashMap;
use std::sync::Arc;

use crate::heap::{Heap, HeapDiff, Hpy, Partition};
use crate::trackref::{self, LiveObject};

use super::lang::{self, BinOp, Expr, ExprKind, Statement};
use super::{HostFunc, HostObject};

/// The most items a comprehension or list may build.
pub const MAX_ITEMS: usize = 100_000;

/// A value in the console.
#[derive(Clone)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A class name used as a reference (`ignore=Spider`).
    Class(String),
    /// Text already rendered (reports): shown as is.
    Text(String),
    /// Structured data (fields of tracked objects, host results).
    Json(serde_json::Value),
    /// `hpy()`
    Hpy(Hpy),
    /// A heap.
    Heap(Heap),
    /// A partition of a heap.
    Partition(Partition),
    /// A difference of heaps.
    Diff(HeapDiff),
    /// A live tracked instance.
    Live(LiveObject),
    /// A built-in function.
    Builtin(&'static str),
    /// A host object.
    Host(Arc<dyn HostObject>),
    /// A host function.
    HostFunc(Arc<HostFunc>),
    /// A method bound to its object.
    Method(Box<Value>, String),
}

/// An evaluation error, pointed at a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    /// Where.
    pub column: usize,
    /// What (Python-style: `NameError: name 'x' is not defined`).
    pub message: String,
}

type R<T> = Result<T, EvalError>;

fn err<T>(col: usize, message: impl Into<String>) -> R<T> {
    Err(EvalError {
        column: col,
        message: message.into(),
    })
}

/// The built-in names.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "prefs",
        "prefs(ignore=…) — live instances per tracked class (trackref)",
    ),
    (
        "get_oldest",
        "get_oldest('Class') — the oldest live instance; .field reads its fields",
    ),
    (
        "iter_all",
        "iter_all('Class') — every live instance, oldest first",
    ),
    (
        "hpy",
        "hpy().heap() — the live heap; .bytype .bysite .bystack .bysize .byage .bythread, [i], .more, .all; hpy().setrelheap(), .watch(secs), .suspects()",
    ),
    (
        "stats",
        "stats() — allocator counters and jemalloc's allocated/active/resident/mapped/retained/metadata",
    ),
    (
        "purge",
        "purge() — return unused pages to the OS, and say how much",
    ),
    (
        "dump_dhat",
        "dump_dhat('/tmp/heap.json') — a DHAT file for Valgrind's dh_view.html, now, tracking goes on",
    ),
    (
        "dump_flamegraph",
        "dump_flamegraph('/tmp/live.svg') — an SVG flamegraph of live bytes by stack",
    ),
    (
        "dump_pprof",
        "dump_pprof('/tmp/heap.pb.gz') — a pprof profile (go tool pprof, Pyroscope, Parca)",
    ),
    ("p", "p(x) — pretty-print a value"),
    (
        "len",
        "len(x) — length of a list, string, partition or heap",
    ),
    ("help", "help() — this list"),
];

/// Names of leakscope's own that `from … import …` accepts.
fn importable(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
        || matches!(
            name,
            "print_live_refs" | "format_live_refs" | "live_refs" | "trackref"
        )
}

/// One session's variables and the host's shared names.
pub struct Shell {
    vars: HashMap<String, Value>,
    host: Arc<super::Host>,
    /// Terminal width for tables.
    pub width: usize,
}

impl Shell {
    /// A shell over the host's objects and functions.
    pub fn new(host: Arc<super::Host>) -> Self {
        Shell {
            vars: HashMap::new(),
            host,
            width: 100,
        }
    }

    /// Runs one line; returns what to show (empty for nothing).
    pub fn run(&mut self, line: &str) -> String {
        match self.run_value(line) {
            Ok(Some(v)) => {
                let text = self.show(&v);
                self.vars.insert("_".into(), v);
                text
            }
            Ok(None) => String::new(),
            Err(e) => caret(line, e.column, &e.message),
        }
    }

    fn run_value(&mut self, line: &str) -> R<Option<Value>> {
        let stmt = lang::parse(line).map_err(|e| EvalError {
            column: e.column,
            message: e.to_string(),
        })?;
        match stmt {
            Statement::Empty => Ok(None),
            Statement::Assign(name, e) => {
                let v = self.eval(&e)?;
                self.vars.insert(name, v);
                Ok(None)
            }
            Statement::Import(_, names) => {
                for (n, col) in names {
                    if !importable(&n)
                        && !self.host.vars.contains_key(&n)
                        && !self.host.funcs.contains_key(&n)
                    {
                        return err(col, format!("ImportError: cannot import name '{n}'"));
                    }
                }
                Ok(None)
            }
            Statement::Expr(e) => {
                let v = self.eval(&e)?;
                Ok(match v {
                    Value::None => None,
                    v => Some(v),
                })
            }
        }
    }

    fn lookup(&self, name: &str, col: usize) -> R<Value> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        if let Some(o) = self.host.vars.get(name) {
            return Ok(Value::Host(o.clone()));
        }
        if let Some(f) = self.host.funcs.get(name) {
            return Ok(Value::HostFunc(f.clone()));
        }
        if let Some((n, _)) = BUILTINS.iter().find(|(n, _)| *n == name) {
            return Ok(Value::Builtin(n));
        }
        if name == "_" {
            return Ok(Value::None);
        }
        if name.chars().next().is_some_and(|c| c.is_uppercase()) {
            // A bare class name: a reference, for ignore=.
            return Ok(Value::Class(name.to_string()));
        }
        err(col, format!("NameError: name '{name}' is not defined"))
    }

    fn eval(&mut self, e: &Expr) -> R<Value> {
        let col = e.col;
        match &e.kind {
            ExprKind::None => Ok(Value::None),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Int(n) => Ok(Value::Int(*n)),
            ExprKind::Float(f) => Ok(Value::Float(*f)),
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::Name(n) => self.lookup(n, col),
            ExprKind::Tuple(items) => Ok(Value::Tuple(self.eval_all(items)?)),
            ExprKind::List(items) => Ok(Value::List(self.eval_all(items)?)),
            ExprKind::Neg(inner) => match self.eval(inner)? {
                Value::Int(n) => n
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or(())
                    .or_else(|_| err(col, "OverflowError")),
                Value::Float(f) => Ok(Value::Float(-f)),
                v => err(
                    col,
                    format!(
                        "TypeError: bad operand type for unary -: '{}'",
                        type_name(&v)
                    ),
                ),
            },
            ExprKind::Not(inner) => Ok(Value::Bool(!truthy(&self.eval(inner)?))),
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, col),
            ExprKind::Attr(obj, name) => {
                let v = self.eval(obj)?;
                self.attr(v, name, col)
            }
            ExprKind::Index(obj, index) => {
                let v = self.eval(obj)?;
                let i = self.eval(index)?;
                index_value(v, i, col)
            }
            ExprKind::Call(f, args, kwargs) => {
                let f = self.eval(f)?;
                let args = self.eval_all(args)?;
                let mut kw = Vec::with_capacity(kwargs.len());
                for (k, v) in kwargs {
                    kw.push((k.clone(), self.eval(v)?));
                }
                self.call(f, args, kw, col)
            }
            ExprKind::Comprehension {
                element,
                name,
                iter,
                cond,
            } => {
                let items = iterate(self.eval(iter)?, iter.col)?;
                let saved = self.vars.remove(name);
                let mut out = Vec::new();
                let mut result = Ok(());
                for item in items {
                    self.vars.insert(name.clone(), item);
                    let keep = match cond {
                        Some(c) => match self.eval(c) {
                            Ok(v) => truthy(&v),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        },
                        None => true,
                    };
                    if keep {
                        match self.eval(element) {
                            Ok(v) => out.push(v),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                        if out.len() > MAX_ITEMS {
                            result = err(col, format!("MemoryError: more than {MAX_ITEMS} items"));
                            break;
                        }
                    }
                }
                match saved {
                    Some(v) => self.vars.insert(name.clone(), v),
                    None => self.vars.remove(name),
                };
                result.map(|_| Value::List(out))
            }
        }
    }

    fn eval_all(&mut self, items: &[Expr]) -> R<Vec<Value>> {
        items.iter().map(|e| self.eval(e)).collect()
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, col: usize) -> R<Value> {
        let left = self.eval(a)?;
        match op {
            BinOp::And if !truthy(&left) => return Ok(left),
            BinOp::Or if truthy(&left) => return Ok(left),
            BinOp::And | BinOp::Or => return self.eval(b),
            _ => {}
        }
        let right = self.eval(b)?;
        let num = |v: &Value| match v {
            Value::Int(n) => Some(*n as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(*b as i64 as f64),
            _ => None,
        };
        let type_err = || {
            err(
                col,
                format!(
                    "TypeError: unsupported operand types: '{}' and '{}'",
                    type_name(&left),
                    type_name(&right)
                ),
            )
        };
        match op {
            BinOp::Eq => Ok(Value::Bool(equal(&left, &right))),
            BinOp::Ne => Ok(Value::Bool(!equal(&left, &right))),
            BinOp::In | BinOp::NotIn => {
                let found = match &right {
                    Value::Str(s) => match &left {
                        Value::Str(l) => s.contains(l.as_str()),
                        _ => return type_err(),
                    },
                    Value::List(items) | Value::Tuple(items) => {
                        items.iter().any(|i| equal(i, &left))
                    }
                    _ => return type_err(),
                };
                Ok(Value::Bool(found == (op == BinOp::In)))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ord = match (&left, &right) {
                    (Value::Str(a), Value::Str(b)) => a.partial_cmp(b),
                    _ => match (num(&left), num(&right)) {
                        (Some(a), Some(b)) => a.partial_cmp(&b),
                        _ => return type_err(),
                    },
                };
                let Some(ord) = ord else {
                    return Ok(Value::Bool(false));
                };
                Ok(Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                }))
            }
            BinOp::Sub => {
                if let (Value::Heap(a), Value::Heap(b)) = (&left, &right) {
                    return Ok(Value::Diff(a - b));
                }
                arith(op, &left, &right, col)
            }
            BinOp::Add => match (&left, &right) {
                (Value::Str(a), Value::Str(b)) => {
                    if a.len() + b.len() > super::MAX_LINE * 16 {
                        return err(col, "MemoryError: string too long");
                    }
                    Ok(Value::Str(format!("{a}{b}")))
                }
                (Value::List(a), Value::List(b)) => {
                    if a.len() + b.len() > MAX_ITEMS {
                        return err(col, format!("MemoryError: more than {MAX_ITEMS} items"));
                    }
                    Ok(Value::List(a.iter().chain(b).cloned().collect()))
                }
                _ => arith(op, &left, &right, col),
            },
            _ => arith(op, &left, &right, col),
        }
    }

    fn attr(&mut self, v: Value, name: &str, col: usize) -> R<Value> {
        let no_attr = |v: &Value| {
            err(
                col,
                format!(
                    "AttributeError: '{}' object has no attribute '{name}'",
                    type_name(v)
                ),
            )
        };
        match &v {
            Value::Live(o) => match name {
                "class_name" => Ok(Value::Str(o.class.to_string())),
                "age" => Ok(Value::Float(o.age.as_secs_f64())),
                _ => match o.fields() {
                    Some(serde_json::Value::Object(m)) => match m.get(name) {
                        Some(f) => Ok(from_json(f.clone())),
                        None => no_attr(&v),
                    },
                    _ => no_attr(&v),
                },
            },
            Value::Json(serde_json::Value::Object(m)) => match m.get(name) {
                Some(f) => Ok(from_json(f.clone())),
                None => no_attr(&v),
            },
            Value::Heap(h) => match name {
                "count" => Ok(Value::Int(h.count() as i64)),
                "size" => Ok(Value::Int(h.size() as i64)),
                "bytype" | "bysite" | "bystack" | "bysize" | "byage" | "bythread" => {
                    Ok(Value::Partition(partition(h, name)))
                }
                "stacks" => Ok(Value::Method(Box::new(v.clone()), name.into())),
                _ => no_attr(&v),
            },
            Value::Partition(p) => match name {
                "more" => Ok(Value::Partition(p.more())),
                "all" => Ok(Value::Partition(p.all())),
                "count" => Ok(Value::Int(p.heap().count() as i64)),
                "size" => Ok(Value::Int(p.heap().size() as i64)),
                _ => no_attr(&v),
            },
            Value::Hpy(_) => match name {
                "heap" | "setrelheap" | "setref" | "clear_relheap" | "watch" | "unwatch"
                | "suspects" => Ok(Value::Method(Box::new(v.clone()), name.into())),
                _ => no_attr(&v),
            },
            Value::Host(o) => match o.attribute(name) {
                Some(val) => Ok(from_json(val)),
                None => Ok(Value::Method(Box::new(v.clone()), name.into())),
            },
            _ => no_attr(&v),
        }
    }

    fn call(
        &mut self,
        f: Value,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        col: usize,
    ) -> R<Value> {
        let no_kwargs = |what: &str| {
            if let Some((k, _)) = kwargs.first() {
                err(
                    col,
                    format!("TypeError: {what}() got an unexpected keyword argument '{k}'"),
                )
            } else {
                Ok(())
            }
        };
        match f {
            Value::Builtin(name) => self.builtin(name, args, kwargs, col),
            Value::HostFunc(f) => {
                no_kwargs(&f.name)?;
                let args: Vec<serde_json::Value> = args.iter().map(to_json).collect();
                (f.call)(&args).map(from_output).or_else(|e| err(col, e))
            }
            Value::Method(obj, name) => {
                match *obj {
                    Value::Host(o) => {
                        no_kwargs(&name)?;
                        let args: Vec<serde_json::Value> = args.iter().map(to_json).collect();
                        o.call(&name, &args)
                            .map(from_output)
                            .or_else(|e| err(col, e))
                    }
                    Value::Hpy(h) => {
                        no_kwargs(&name)?;
                        match name.as_str() {
                            "heap" => Ok(Value::Heap(h.heap())),
                            "setrelheap" | "setref" => {
                                h.setrelheap();
                                Ok(Value::None)
                            }
                            "clear_relheap" => {
                                h.clear_relheap();
                                Ok(Value::None)
                            }
                            "watch" => {
                                let secs = match args.first() {
                                    Some(Value::Int(n)) if *n > 0 => *n as f64,
                                    Some(Value::Float(f)) if *f > 0.0 && f.is_finite() => *f,
                                    None => 10.0,
                                    _ => {
                                        return err(
                                            col,
                                            "TypeError: watch(seconds) takes a positive number",
                                        );
                                    }
                                };
                                h.watch(std::time::Duration::from_secs_f64(secs.min(86_400.0)));
                                Ok(Value::Text(format!(
                                    "Watching the heap every {secs} s; suspects() lists what keeps growing.\n"
                                )))
                            }
                            "unwatch" => {
                                h.unwatch();
                                Ok(Value::None)
                            }
                            "suspects" => Ok(Value::Text(crate::render::suspects(
                                &h.suspects(),
                                self.width,
                            ))),
                            _ => err(
                                col,
                                format!("AttributeError: 'hpy' object has no attribute '{name}'"),
                            ),
                        }
                    }
                    Value::Heap(h) if name == "stacks" => {
                        Ok(Value::Text(crate::render::stacks(&h.stacks(), 10)))
                    }
                    // Guppy allows both `.bytype` and `.bytype()`.
                    v @ Value::Partition(_) if args.is_empty() => Ok(v),
                    other => err(
                        col,
                        format!("TypeError: '{}' object is not callable", type_name(&other)),
                    ),
                }
            }
            // `x.bytype()`, `x.more()`: the attribute was already the value.
            v @ (Value::Partition(_) | Value::Heap(_)) if args.is_empty() && kwargs.is_empty() => {
                Ok(v)
            }
            other => err(
                col,
                format!("TypeError: '{}' object is not callable", type_name(&other)),
            ),
        }
    }

    fn builtin(
        &mut self,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        col: usize,
    ) -> R<Value> {
        let arity = |n: usize| {
            if args.len() != n {
                err(
                    col,
                    format!(
                        "TypeError: {name}() takes {n} positional argument(s) ({} given)",
                        args.len()
                    ),
                )
            } else {
                Ok(())
            }
        };
        if name != "prefs"
            && let Some((k, _)) = kwargs.first()
        {
            return err(
                col,
                format!("TypeError: {name}() got an unexpected keyword argument '{k}'"),
            );
        }
        match name {
            "prefs" => {
                let mut ignore: Vec<String> = Vec::new();
                for (k, v) in kwargs {
                    if k != "ignore" {
                        return err(
                            col,
                            format!("TypeError: prefs() got an unexpected keyword argument '{k}'"),
                        );
                    }
                    collect_names(&v, &mut ignore).or_else(|m| err(col, m))?;
                }
                for v in &args {
                    collect_names(v, &mut ignore).or_else(|m| err(col, m))?;
                }
                let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
                Ok(Value::Text(trackref::format_live_refs(&ignore)))
            }
            "get_oldest" => {
                arity(1)?;
                let class = class_arg(&args[0]).or_else(|m| err(col, m))?;
                Ok(trackref::get_oldest(&class).map_or(Value::None, Value::Live))
            }
            "iter_all" => {
                arity(1)?;
                let class = class_arg(&args[0]).or_else(|m| err(col, m))?;
                Ok(Value::List(
                    trackref::iter_all(&class)
                        .into_iter()
                        .map(Value::Live)
                        .collect(),
                ))
            }
            "hpy" => {
                arity(0)?;
                Ok(Value::Hpy(crate::hpy()))
            }
            "stats" => {
                arity(0)?;
                match crate::stats() {
                    Ok(s) => Ok(Value::Text(crate::render::stats(&s))),
                    Err(e) => err(col, format!("OSError: {e}")),
                }
            }
            "purge" => {
                arity(0)?;
                match crate::purge() {
                    Ok(r) => Ok(Value::Text(crate::render::purge(&r))),
                    Err(e) => err(col, format!("OSError: {e}")),
                }
            }
            "dump_dhat" | "dump_flamegraph" | "dump_pprof" => {
                arity(1)?;
                let Value::Str(path) = &args[0] else {
                    return err(col, format!("TypeError: {name}() takes a path string"));
                };
                let written = match name {
                    "dump_dhat" => crate::export::dhat::write(path).map(|f| {
                        format!(
                            "Wrote {} program points to {path}; open it with Valgrind's dh_view.html \
                             (leakscope view {path}).",
                            f.pps.len()
                        )
                    }),
                    "dump_flamegraph" => {
                        crate::export::flamegraph::write(path).map(|()| format!("Wrote a flamegraph of live bytes to {path}."))
                    }
                    _ => crate::export::pprof::write(path)
                        .map(|p| format!("Wrote {} samples to {path}; go tool pprof {path}", p.sample.len())),
                };
                written
                    .map(Value::Text)
                    .or_else(|e| err(col, format!("OSError: {path}: {e}")))
            }
            "p" => {
                arity(1)?;
                Ok(Value::Text(pretty(&args[0], self.width)))
            }
            "len" => {
                arity(1)?;
                let n = match &args[0] {
                    Value::Str(s) => s.chars().count(),
                    Value::List(v) | Value::Tuple(v) => v.len(),
                    Value::Partition(p) => p.rows().len(),
                    Value::Heap(h) => h.count() as usize,
                    Value::Json(serde_json::Value::Array(a)) => a.len(),
                    Value::Json(serde_json::Value::Object(o)) => o.len(),
                    v => {
                        return err(
                            col,
                            format!("TypeError: object of type '{}' has no len()", type_name(v)),
                        );
                    }
                };
                Ok(Value::Int(n as i64))
            }
            "help" => Ok(Value::Text(self.help())),
            _ => err(col, format!("NameError: name '{name}' is not defined")),
        }
    }

    fn help(&self) -> String {
        let mut out =
            String::from("leakscope console. Type an expression; Ctrl-D or exit() leaves.\n\n");
        for (_, text) in BUILTINS {
            out.push_str("  ");
            out.push_str(text);
            out.push('\n');
        }
        let mut host: Vec<String> = self.host.funcs.keys().map(|n| format!("{n}()")).collect();
        host.extend(self.host.vars.iter().map(|(n, o)| {
            let methods = o.methods();
            if methods.is_empty() {
                n.clone()
            } else {
                format!(
                    "{n}: {}",
                    methods
                        .iter()
                        .map(|m| format!(".{m}()"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        }));
        host.sort();
        if !host.is_empty() {
            out.push_str("\nFrom the program:\n");
            for h in host {
                out.push_str("  ");
                out.push_str(&h);
                out.push('\n');
            }
        }
        out.push_str("\n_ is the last result; x = … keeps one.\n");
        out
    }

    /// How a value is shown at the prompt.
    pub fn show(&self, v: &Value) -> String {
        match v {
            Value::Text(t) => {
                let mut t = t.clone();
                if !t.ends_with('\n') {
                    t.push('\n');
                }
                t
            }
            Value::Partition(p) => p.render(self.width),
            Value::Heap(h) => h.bytype().render(self.width),
            Value::Diff(d) => crate::render::diff(d, self.width),
            other => format!("{}\n", repr(other)),
        }
    }
}

fn partition(h: &Heap, name: &str) -> Partition {
    match name {
        "bytype" => h.bytype(),
        "bysite" => h.bysite(),
        "bystack" => h.bystack(),
        "bysize" => h.bysize(),
        "byage" => h.byage(),
        _ => h.bythread(),
    }
}

fn collect_names(v: &Value, out: &mut Vec<String>) -> Result<(), String> {
    match v {
        Value::Class(n) | Value::Str(n) => {
            out.push(n.clone());
            Ok(())
        }
        Value::Tuple(items) | Value::List(items) => {
            items.iter().try_for_each(|i| collect_names(i, out))
        }
        other => Err(format!(
            "TypeError: ignore= takes classes, names or tuples of them, not '{}'",
            type_name(other)
        )),
    }
}

fn class_arg(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) | Value::Class(s) => Ok(s.clone()),
        other => Err(format!(
            "TypeError: expected a class name, not '{}'",
            type_name(other)
        )),
    }
}

fn iterate(v: Value, col: usize) -> R<Vec<Value>> {
    match v {
        Value::List(items) | Value::Tuple(items) => Ok(items),
        Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        Value::Json(serde_json::Value::Array(a)) => Ok(a.into_iter().map(from_json).collect()),
        Value::Partition(p) => Ok((0..p.rows().len()).map(|i| Value::Heap(p.row(i))).collect()),
        other => err(
            col,
            format!("TypeError: '{}' object is not iterable", type_name(&other)),
        ),
    }
}

fn index_value(v: Value, i: Value, col: usize) -> R<Value> {
    let Value::Int(n) = i else {
        if let (Value::Json(serde_json::Value::Object(m)), Value::Str(k)) = (&v, &i) {
            return m
                .get(k)
                .cloned()
                .map(from_json)
                .ok_or(())
                .or_else(|_| err(col, format!("KeyError: '{k}'")));
        }
        return err(
            col,
            format!(
                "TypeError: indices must be integers, not '{}'",
                type_name(&i)
            ),
        );
    };
    let pick = |len: usize| -> R<usize> {
        let idx = if n < 0 { len as i64 + n } else { n };
        if idx < 0 || idx as usize >= len {
            err(col, "IndexError: index out of range")
        } else {
            Ok(idx as usize)
        }
    };
    match v {
        Value::List(items) | Value::Tuple(items) => Ok(items[pick(items.len())?].clone()),
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            Ok(Value::Str(chars[pick(chars.len())?].to_string()))
        }
        Value::Partition(p) => Ok(Value::Heap(p.row(pick(p.rows().len())?))),
        Value::Json(serde_json::Value::Array(a)) => Ok(from_json(a[pick(a.len())?].clone())),
        other => err(
            col,
            format!(
                "TypeError: '{}' object is not subscriptable",
                type_name(&other)
            ),
        ),
    }
}

fn arith(op: BinOp, a: &Value, b: &Value, col: usize) -> R<Value> {
    let as_int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    };
    let as_float = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        _ => as_int(v).map(|n| n as f64),
    };
    if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
        let r = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Div => {
                if y == 0 {
                    return err(col, "ZeroDivisionError: division by zero");
                }
                return Ok(Value::Float(x as f64 / y as f64));
            }
            BinOp::Rem => {
                if y == 0 {
                    return err(col, "ZeroDivisionError: modulo by zero");
                }
                Some(x.rem_euclid(y))
            }
            _ => None,
        };
        return r
            .map(Value::Int)
            .ok_or(())
            .or_else(|_| err(col, "OverflowError: integer overflow"));
    }
    if let (Some(x), Some(y)) = (as_float(a), as_float(b)) {
        return Ok(Value::Float(match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div if y == 0.0 => return err(col, "ZeroDivisionError: float division by zero"),
            BinOp::Div => x / y,
            BinOp::Rem if y == 0.0 => return err(col, "ZeroDivisionError: float modulo"),
            _ => x.rem_euclid(y),
        }));
    }
    err(
        col,
        format!(
            "TypeError: unsupported operand types: '{}' and '{}'",
            type_name(a),
            type_name(b)
        ),
    )
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => *x as f64 == *y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) | (Value::Class(x), Value::Class(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Json(x), Value::Json(y)) => x == y,
        _ => false,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(n) => *n != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) | Value::Text(s) => !s.is_empty(),
        Value::List(v) | Value::Tuple(v) => !v.is_empty(),
        Value::Json(j) => !matches!(j, serde_json::Value::Null | serde_json::Value::Bool(false)),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Class(_) => "class",
        Value::Text(_) => "report",
        Value::Json(_) => "object",
        Value::Hpy(_) => "hpy",
        Value::Heap(_) => "heap",
        Value::Partition(_) => "partition",
        Value::Diff(_) => "diff",
        Value::Live(_) => "instance",
        Value::Builtin(_) | Value::HostFunc(_) => "function",
        Value::Host(_) => "object",
        Value::Method(_, _) => "method",
    }
}

fn from_json(j: serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        obj => Value::Json(obj),
    }
}

/// A host's answer: a string is shown as text (a report), the rest as values.
fn from_output(j: serde_json::Value) -> Value {
    match j {
        serde_json::Value::String(s) => Value::Text(s),
        other => from_json(other),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::None => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(n) => (*n).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Str(s) | Value::Class(s) | Value::Text(s) => s.clone().into(),
        Value::List(items) | Value::Tuple(items) => items.iter().map(to_json).collect(),
        Value::Json(j) => j.clone(),
        Value::Live(o) => o.fields().unwrap_or(serde_json::Value::Null),
        other => repr(other).into(),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Python-style representation.
pub fn repr(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(n) => n.to_string(),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e16 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        Value::Str(s) => quote(s),
        Value::Text(t) => t.trim_end().to_string(),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", repr(&items[0])),
        Value::Tuple(items) => format!(
            "({})",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Class(n) => format!("<class '{n}'>"),
        Value::Json(j) => j.to_string(),
        Value::Hpy(_) => "<hpy>".into(),
        Value::Heap(h) => format!("<heap: {} objects, {} bytes>", h.count(), h.size()),
        Value::Partition(p) => format!(
            "<partition by {} of {} rows>",
            p.kind().heading(),
            p.rows().len()
        ),
        Value::Diff(d) => format!("<difference: {:+} objects, {:+} bytes>", d.count, d.size),
        Value::Live(o) => match o.fields() {
            Some(f) => format!("<{} {}s old {}>", o.class, o.age.as_secs(), f),
            None => format!("<{} {}s old>", o.class, o.age.as_secs()),
        },
        Value::Builtin(n) => format!("<built-in function {n}>"),
        Value::HostFunc(f) => format!("<function {}>", f.name),
        Value::Host(_) => "<object>".into(),
        Value::Method(_, n) => format!("<method {n}>"),
    }
}

/// `p(x)`: pretty-printed.
fn pretty(v: &Value, width: usize) -> String {
    match v {
        Value::Json(j) => serde_json::to_string_pretty(j).unwrap_or_default(),
        Value::Live(o) => format!(
            "<{} {}s old>\n{}",
            o.class,
            o.age.as_secs(),
            o.fields()
                .map_or_else(String::new, |f| serde_json::to_string_pretty(&f)
                    .unwrap_or_default())
        ),
        Value::List(items) => items.iter().map(repr).collect::<Vec<_>>().join("\n"),
        Value::Text(t) => t.clone(),
        Value::Partition(p) => p.render(width),
        other => repr(other),
    }
}

/// The line with a caret under `column` and the message, Python style.
pub fn caret(line: &str, column: usize, message: &str) -> String {
    let shown: String = line.chars().take(200).collect();
    let col = column.min(shown.chars().count());
    format!("  {shown}\n  {}^\n{message}\n", " ".repeat(col))
}
