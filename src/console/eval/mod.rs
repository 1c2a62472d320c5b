//! Evaluates console lines: names, attributes, calls, operators and
//! comprehensions, over a session's variables and the host's names
//! (leakscope's built-ins and the program's objects alike).

mod error;
mod ops;
mod repr;
mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{Error, ExceptionKind};
pub(crate) use value::Seq;
pub use value::Value;

pub(crate) use repr::pretty;

use super::host::{Call, Host, SessionState};
use super::lang::{self, BinOp, Expr, ExprKind, Statement};

use crate::sys::cancel::{self, Check, Stop};

use super::limits::{MAX_EVAL_DEPTH, MAX_ITEMS, MAX_STRING, MAX_VALUE_DEPTH};

/// Steps between two looks at the clock and the client.
const CHECK_EVERY: u32 = 1024;

type R<T> = Result<T, Error>;

/// How much one line may do and a session may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Wall time one line may run.
    pub(crate) line_time: Duration,
    /// Bytes the session's values may take, written out.
    pub(crate) session_bytes: usize,
}

/// Asked between steps of a line: should it stop?
pub(crate) type Poll = Box<dyn FnMut() -> Option<Stop> + Send>;

/// One session's variables over the host's shared names.
pub(crate) struct Shell {
    vars: HashMap<String, Value>,
    host: Arc<Host>,
    /// Terminal width for tables.
    pub(crate) width: usize,
    limits: Limits,
    /// Evaluation depth of the line running now.
    depth: usize,
    /// Steps of the line running now.
    steps: u32,
    deadline: Instant,
    /// Column of the expression entered last: where a view stopped in
    /// the middle of its work is shown to have stopped.
    column: usize,
    /// Set when a poll found the client gone.
    pub(crate) gone: bool,
    /// What built-ins keep for this session.
    state: SessionState,
}

impl Shell {
    /// A shell over the host's names.
    pub(crate) fn new(host: Arc<Host>, limits: Limits) -> Self {
        Shell {
            vars: HashMap::new(),
            host,
            width: 80,
            limits,
            depth: 0,
            steps: 0,
            deadline: Instant::now(),
            column: 0,
            gone: false,
            state: SessionState::default(),
        }
    }

    /// Runs one line, asking `poll` now and then whether to stop; returns
    /// what to show (empty for nothing).
    ///
    /// Native views (a graph, `byvia`, `sp` …) stop at the same deadline
    /// and Ctrl-C as the interpreter's own steps, in the middle of their
    /// work, and free what they built.
    pub(crate) fn run_polled(&mut self, line: &str, mut poll: Poll) -> String {
        let deadline = Instant::now() + self.line_time();
        let check: Check = Box::new(move || {
            if Instant::now() > deadline {
                Some(Stop::Deadline)
            } else {
                poll()
            }
        });
        match cancel::watched(check, || self.run(line)) {
            Ok(out) => out,
            Err(stopped) => {
                self.gone |= stopped.why == Stop::Gone;
                let mut e = self.stopped(stopped.why);
                if stopped.why == Stop::Deadline && !stopped.doing.is_empty() {
                    e = Error::new(
                        e.kind,
                        format!(
                            "{}, while {}. line_timeout(secs) gives this session's lines \
                             longer",
                            e.message, stopped.doing
                        ),
                    );
                }
                repr::caret(line, self.column, &e.to_string(), self.width)
            }
        }
    }

    /// How long a line of this session may run: what it chose with
    /// `line_timeout(secs)`, else the console's limit.
    fn line_time(&self) -> Duration {
        self.state.line_time().unwrap_or(self.limits.line_time)
    }

    /// The error a line stopped for `stop` ends with.
    fn stopped(&self, stop: Stop) -> Error {
        match stop {
            Stop::Deadline => Error::new(
                ExceptionKind::TimeoutError,
                format!(
                    "the line ran longer than {} s",
                    self.line_time().as_secs_f64()
                ),
            ),
            Stop::Interrupt | Stop::Gone => Error::new(ExceptionKind::KeyboardInterrupt, ""),
            Stop::OverBudget => Error::new(ExceptionKind::MemoryError, over_budget()),
        }
    }

    /// Runs one line; returns what to show (empty for nothing).
    pub(crate) fn run(&mut self, line: &str) -> String {
        self.depth = 0;
        self.steps = 0;
        self.column = 0;
        self.deadline = Instant::now() + self.line_time();
        match self.run_value(line) {
            Ok(Some(v)) => {
                let text = repr::show(&v, self.width);
                self.vars.insert("_".into(), v);
                text
            }
            Ok(None) => String::new(),
            Err(e) => repr::caret(line, e.column.unwrap_or(0), &e.to_string(), self.width),
        }
    }

    fn run_value(&mut self, line: &str) -> R<Option<Value>> {
        let stmt = lang::parse(line)
            .map_err(|e| Error::new(ExceptionKind::SyntaxError, e.message()).at(e.column))?;
        match stmt {
            Statement::Empty => Ok(None),
            Statement::Assign(name, e) => {
                let v = self.eval(&e)?;
                // What the names would hold: values, and what objects keep
                // alive (a heap's snapshot once, however many rows of it
                // are kept).
                let mut shared = std::collections::HashMap::new();
                let mut kept = v.held(&mut shared);
                for (_, other) in self.vars.iter().filter(|(n, _)| **n != name) {
                    kept = kept.saturating_add(other.held(&mut shared));
                }
                let kept = kept.saturating_add(shared.values().sum::<usize>());
                if kept > self.limits.session_bytes {
                    return Err(Error::new(
                        ExceptionKind::MemoryError,
                        format!(
                            "this session's values would take more than {} bytes; \
                             assign None to names you no longer need",
                            self.limits.session_bytes
                        ),
                    )
                    .at(e.col));
                }
                self.vars.insert(name, v);
                Ok(None)
            }
            Statement::Import(_, names) => {
                for (n, col) in names {
                    if self.host.get(&n).is_none() {
                        return Err(Error::new(
                            ExceptionKind::ImportError,
                            format!("cannot import name '{n}'"),
                        )
                        .at(col));
                    }
                }
                Ok(None)
            }
            // `None` is shown, as an answer (`get_oldest('Nope')`);
            // procedures give nothing to show.
            Statement::Expr(e) => self.eval(&e).map(Some),
        }
    }

    fn lookup(&self, name: &str) -> R<Value> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.host.get(name) {
            return Ok(v.clone());
        }
        if name == "_" {
            return Ok(Value::None);
        }
        if name.chars().next().is_some_and(|c| c.is_uppercase()) {
            // A bare class name: a reference, for ignore=.
            return Ok(Value::Class(name.to_string()));
        }
        Err(Error::new(
            ExceptionKind::NameError,
            format!("name '{name}' is not defined"),
        ))
    }

    fn eval(&mut self, e: &Expr) -> R<Value> {
        self.step().map_err(|err| err.at(e.col))?;
        if self.depth >= MAX_EVAL_DEPTH {
            return Err(Error::new(
                ExceptionKind::RecursionError,
                format!("expression nested deeper than {MAX_EVAL_DEPTH} levels"),
            )
            .at(e.col));
        }
        self.depth += 1;
        self.column = e.col;
        let r = self.eval_at(e).map_err(|err| err.at(e.col));
        self.depth -= 1;
        r
    }

    /// Counts one step of the line; now and then looks at the clock and
    /// asks whether to stop.
    fn step(&mut self) -> R<()> {
        self.steps = self.steps.wrapping_add(1);
        if !self.steps.is_multiple_of(CHECK_EVERY) {
            return Ok(());
        }
        if Instant::now() > self.deadline {
            return Err(self.stopped(Stop::Deadline));
        }
        match cancel::ask() {
            None => Ok(()),
            Some(stop) => {
                self.gone |= stop == Stop::Gone;
                Err(self.stopped(stop))
            }
        }
    }

    /// A list or tuple's items, within the session's bounds.
    fn seq(&self, items: Vec<Value>) -> R<Seq> {
        let s = Seq::new(items);
        if s.depth() > MAX_VALUE_DEPTH {
            return Err(Error::new(
                ExceptionKind::MemoryError,
                format!("lists nested deeper than {MAX_VALUE_DEPTH} levels"),
            ));
        }
        self.within_budget(s.size())?;
        Ok(s)
    }

    fn within_budget(&self, size: usize) -> R<()> {
        if size > self.limits.session_bytes {
            return Err(Error::new(
                ExceptionKind::MemoryError,
                format!(
                    "a value of more than {} bytes (this session's budget)",
                    self.limits.session_bytes
                ),
            ));
        }
        Ok(())
    }

    fn eval_at(&mut self, e: &Expr) -> R<Value> {
        match &e.kind {
            ExprKind::None => Ok(Value::None),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Int(n) => Ok(Value::Int(*n)),
            ExprKind::Float(f) => Ok(Value::Float(*f)),
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::Name(n) => self.lookup(n),
            ExprKind::Tuple(items) => {
                let items = self.eval_all(items)?;
                Ok(Value::Tuple(self.seq(items)?))
            }
            ExprKind::List(items) => {
                let items = self.eval_all(items)?;
                Ok(Value::List(self.seq(items)?))
            }
            ExprKind::Neg(inner) => match self.eval(inner)? {
                Value::Int(n) => n
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| Error::new(ExceptionKind::OverflowError, "")),
                Value::Float(f) => Ok(Value::Float(-f)),
                v => Err(Error::new(
                    ExceptionKind::TypeError,
                    format!("bad operand type for unary -: '{}'", v.type_name()),
                )),
            },
            ExprKind::Not(inner) => Ok(Value::Bool(!self.eval(inner)?.truthy())),
            ExprKind::Binary(..) => self.chain(e),
            ExprKind::Attr(obj, name) => {
                let v = self.eval(obj)?;
                attr(v, name)
            }
            ExprKind::Index(obj, index) => {
                let v = self.eval(obj)?;
                let i = self.eval(index)?;
                ops::index(v, i)
            }
            ExprKind::Slice(obj, start, end) => {
                let v = self.eval(obj)?;
                let mut bound = |b: &Option<Box<Expr>>| -> R<Option<i64>> {
                    match b {
                        None => Ok(None),
                        Some(e) => match self.eval(e)? {
                            Value::Int(n) => Ok(Some(n)),
                            Value::None => Ok(None),
                            other => Err(Error::new(
                                ExceptionKind::TypeError,
                                format!(
                                    "slice indices must be integers, not '{}'",
                                    other.type_name()
                                ),
                            )),
                        },
                    }
                };
                let (start, end) = (bound(start)?, bound(end)?);
                ops::slice(v, start, end, |items| self.seq(items))
            }
            ExprKind::Call(f, args, kwargs) => {
                let f = self.eval(f)?;
                let args = self.eval_all(args)?;
                let mut kw = Vec::with_capacity(kwargs.len());
                for (k, v) in kwargs {
                    kw.push((k.clone(), self.eval(v)?));
                }
                self.call(f, args, kw)
            }
            ExprKind::Comprehension {
                element,
                name,
                iter,
                cond,
            } => {
                let items = ops::iterate(self.eval(iter)?).map_err(|e| e.at(iter.col))?;
                let saved = self.vars.remove(name);
                let result = self.comprehension(element, name, cond.as_deref(), items);
                match saved {
                    Some(v) => self.vars.insert(name.clone(), v),
                    None => self.vars.remove(name),
                };
                Ok(Value::List(self.seq(result?)?))
            }
        }
    }

    fn comprehension(
        &mut self,
        element: &Expr,
        name: &str,
        cond: Option<&Expr>,
        items: Vec<Value>,
    ) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let mut size = 0usize;
        for item in items {
            self.vars.insert(name.to_string(), item);
            let keep = match cond {
                Some(c) => self.eval(c)?.truthy(),
                None => true,
            };
            if keep {
                let v = self.eval(element)?;
                size = size.saturating_add(v.size());
                self.within_budget(size)?;
                out.push(v);
                if out.len() > MAX_ITEMS {
                    return Err(Error::new(
                        ExceptionKind::MemoryError,
                        format!("more than {MAX_ITEMS} items"),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn eval_all(&mut self, items: &[Expr]) -> R<Vec<Value>> {
        items.iter().map(|e| self.eval(e)).collect()
    }

    /// A chain of binary operators, `a + b - c` (parsed left-deep as
    /// `(a + b) - c`): the left spine is walked in a loop, so a long chain
    /// costs no stack.
    fn chain(&mut self, e: &Expr) -> R<Value> {
        let mut spine = Vec::new();
        let mut left = e;
        while let ExprKind::Binary(op, l, r) = &left.kind {
            spine.push((*op, r.as_ref(), left.col));
            left = l;
        }
        let mut acc = self.eval(left)?;
        for (op, right, col) in spine.into_iter().rev() {
            self.step().map_err(|err| err.at(col))?;
            acc = self.binary(op, acc, right).map_err(|err| err.at(col))?;
        }
        Ok(acc)
    }

    fn binary(&mut self, op: BinOp, left: Value, b: &Expr) -> R<Value> {
        match op {
            BinOp::And if !left.truthy() => return Ok(left),
            BinOp::Or if left.truthy() => return Ok(left),
            BinOp::And | BinOp::Or => return self.eval(b),
            _ => {}
        }
        let right = self.eval(b)?;
        match op {
            BinOp::Eq => Ok(Value::Bool(ops::equal(&left, &right))),
            BinOp::Ne => Ok(Value::Bool(!ops::equal(&left, &right))),
            BinOp::In => ops::contains(&right, &left).map(Value::Bool),
            BinOp::NotIn => ops::contains(&right, &left).map(|f| Value::Bool(!f)),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => ops::compare(op, &left, &right),
            BinOp::Sub => match &left {
                Value::Object(o) => match o.subtract(&right) {
                    Some(r) => r,
                    None => ops::arith(op, &left, &right),
                },
                _ => ops::arith(op, &left, &right),
            },
            BinOp::Add => match (&left, &right) {
                (Value::Str(a), Value::Str(b)) => {
                    if a.len() + b.len() > MAX_STRING {
                        return Err(Error::new(ExceptionKind::MemoryError, "string too long"));
                    }
                    Ok(Value::Str(format!("{a}{b}")))
                }
                (Value::List(a), Value::List(b)) => {
                    if a.len() + b.len() > MAX_ITEMS {
                        return Err(Error::new(
                            ExceptionKind::MemoryError,
                            format!("more than {MAX_ITEMS} items"),
                        ));
                    }
                    self.within_budget(a.size().saturating_add(b.size()))?;
                    let items = a.iter().chain(b.iter()).cloned().collect();
                    Ok(Value::List(self.seq(items)?))
                }
                _ => ops::arith(op, &left, &right),
            },
            _ => ops::arith(op, &left, &right),
        }
    }

    fn call(&mut self, f: Value, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> R<Value> {
        let call = |name| Call {
            name,
            args,
            kwargs,
            width: self.width,
            deadline: self.deadline,
            console_line_time: self.limits.line_time,
            host: &self.host,
            session: &self.state,
        };
        match &f {
            Value::Function(func) => func.invoke(&call(&func.name)),
            Value::Method(o, name) => o.call(name, &call(name)),
            Value::Object(o) if o.call_returns_self() => {
                let c = call("");
                if c.args.is_empty() && c.kwargs.is_empty() {
                    Ok(f.clone())
                } else if let Some(result) = o.call_with(&c) {
                    result
                } else {
                    Err(Error::new(
                        ExceptionKind::TypeError,
                        format!("'{}' object takes no arguments", o.type_name()),
                    ))
                }
            }
            other => Err(Error::new(
                ExceptionKind::TypeError,
                format!("'{}' object is not callable", other.type_name()),
            )),
        }
    }
}

/// `v.name`: data fields, object attributes, and bound methods.
fn attr(v: Value, name: &str) -> R<Value> {
    match &v {
        Value::Json(serde_json::Value::Object(m)) => match m.get(name) {
            Some(f) => Ok(Value::from(f.clone())),
            None => Err(Error::no_attribute(v.type_name(), name)),
        },
        Value::Object(o) => {
            if let Some(a) = o.attribute(name) {
                Ok(a)
            } else if o.methods().contains(&name) {
                Ok(Value::Method(o.clone(), name.to_string()))
            } else {
                Err(Error::no_attribute(o.type_name(), name))
            }
        }
        _ => Err(Error::no_attribute(v.type_name(), name)),
    }
}
/// Why a view was refused for leakscope's own memory, with the figures.
fn over_budget() -> String {
    use crate::render::table::bytes;
    let Ok(s) = crate::stats::stats() else {
        return "leakscope's own memory is past the views' budget".into();
    };
    format!(
        "leakscope's own memory ({}) is past the views' budget ({}: {} + {}% of the \
         program's {} live), so no new snapshot or heap graph is made; assign None to \
         the heaps sessions keep",
        bytes(s.own_bytes),
        bytes(crate::tracker::views_budget(s.live_bytes)),
        bytes(crate::tracker::views_memory()),
        crate::tracker::VIEWS_MEMORY_PERCENT_OF_LIVE,
        bytes(s.live_bytes),
    )
}
