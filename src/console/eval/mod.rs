//! Evaluates console lines: names, attributes, calls, operators and
//! comprehensions, over a session's variables and the host's names
//! (leakscope's built-ins and the program's objects alike).

mod error;
mod ops;
mod repr;
mod value;

use std::collections::HashMap;
use std::sync::Arc;

pub use error::{Error, PyError};
pub use value::Value;

pub(crate) use repr::pretty;

use super::host::{Call, Host};
use super::lang::{self, BinOp, Expr, ExprKind, Statement};

/// The most items a comprehension or list may build.
pub(crate) const MAX_ITEMS: usize = 100_000;

/// The longest string a session may build by concatenation (bytes).
pub(crate) const MAX_STRING: usize = super::MAX_LINE * 16;

type R<T> = Result<T, Error>;

/// One session's variables over the host's shared names.
pub(crate) struct Shell {
    vars: HashMap<String, Value>,
    host: Arc<Host>,
    /// Terminal width for tables.
    pub(crate) width: usize,
}

impl Shell {
    /// A shell over the host's names.
    pub(crate) fn new(host: Arc<Host>) -> Self {
        Shell {
            vars: HashMap::new(),
            host,
            width: 100,
        }
    }

    /// Runs one line; returns what to show (empty for nothing).
    pub(crate) fn run(&mut self, line: &str) -> String {
        match self.run_value(line) {
            Ok(Some(v)) => {
                let text = repr::show(&v, self.width);
                self.vars.insert("_".into(), v);
                text
            }
            Ok(None) => String::new(),
            Err(e) => repr::caret(line, e.column.unwrap_or(0), &e.to_string()),
        }
    }

    fn run_value(&mut self, line: &str) -> R<Option<Value>> {
        let stmt = lang::parse(line)
            .map_err(|e| Error::new(PyError::SyntaxError, e.message()).at(e.column))?;
        match stmt {
            Statement::Empty => Ok(None),
            Statement::Assign(name, e) => {
                let v = self.eval(&e)?;
                self.vars.insert(name, v);
                Ok(None)
            }
            Statement::Import(_, names) => {
                for (n, col) in names {
                    if self.host.get(&n).is_none() {
                        return Err(Error::new(
                            PyError::ImportError,
                            format!("cannot import name '{n}'"),
                        )
                        .at(col));
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
            PyError::NameError,
            format!("name '{name}' is not defined"),
        ))
    }

    fn eval(&mut self, e: &Expr) -> R<Value> {
        let col = e.col;
        self.eval_at(e).map_err(|err| err.at(col))
    }

    fn eval_at(&mut self, e: &Expr) -> R<Value> {
        match &e.kind {
            ExprKind::None => Ok(Value::None),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Int(n) => Ok(Value::Int(*n)),
            ExprKind::Float(f) => Ok(Value::Float(*f)),
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::Name(n) => self.lookup(n),
            ExprKind::Tuple(items) => Ok(Value::Tuple(self.eval_all(items)?)),
            ExprKind::List(items) => Ok(Value::List(self.eval_all(items)?)),
            ExprKind::Neg(inner) => match self.eval(inner)? {
                Value::Int(n) => n
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| Error::new(PyError::OverflowError, "")),
                Value::Float(f) => Ok(Value::Float(-f)),
                v => Err(Error::new(
                    PyError::TypeError,
                    format!("bad operand type for unary -: '{}'", v.type_name()),
                )),
            },
            ExprKind::Not(inner) => Ok(Value::Bool(!self.eval(inner)?.truthy())),
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b),
            ExprKind::Attr(obj, name) => {
                let v = self.eval(obj)?;
                attr(v, name)
            }
            ExprKind::Index(obj, index) => {
                let v = self.eval(obj)?;
                let i = self.eval(index)?;
                ops::index(v, i)
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
                result.map(Value::List)
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
        for item in items {
            self.vars.insert(name.to_string(), item);
            let keep = match cond {
                Some(c) => self.eval(c)?.truthy(),
                None => true,
            };
            if keep {
                out.push(self.eval(element)?);
                if out.len() > MAX_ITEMS {
                    return Err(Error::new(
                        PyError::MemoryError,
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

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr) -> R<Value> {
        let left = self.eval(a)?;
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
                        return Err(Error::new(PyError::MemoryError, "string too long"));
                    }
                    Ok(Value::Str(format!("{a}{b}")))
                }
                (Value::List(a), Value::List(b)) => {
                    if a.len() + b.len() > MAX_ITEMS {
                        return Err(Error::new(
                            PyError::MemoryError,
                            format!("more than {MAX_ITEMS} items"),
                        ));
                    }
                    Ok(Value::List(a.iter().chain(b).cloned().collect()))
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
            host: &self.host,
        };
        match &f {
            Value::Function(func) => func.invoke(&call(&func.name)),
            Value::Method(o, name) => o.call(name, &call(name)),
            Value::Object(o) if o.call_returns_self() => {
                let c = call("");
                if c.args.is_empty() && c.kwargs.is_empty() {
                    Ok(f.clone())
                } else {
                    Err(Error::new(
                        PyError::TypeError,
                        format!("'{}' object takes no arguments", o.type_name()),
                    ))
                }
            }
            other => Err(Error::new(
                PyError::TypeError,
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
