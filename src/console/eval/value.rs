//! The console's values.

use std::sync::Arc;

use crate::console::host::{Function, HostObject};

/// A value in the console.
#[derive(Clone)]
#[non_exhaustive]
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
    List(Seq),
    /// A tuple.
    Tuple(Seq),
    /// A class name used as a reference (`ignore=Spider`).
    Class(String),
    /// Text already rendered (a report): shown as is.
    Text(String),
    /// Structured data (fields of tracked objects, host results).
    Json(serde_json::Value),
    /// An object: the program's, or one of leakscope's views.
    Object(Arc<dyn HostObject>),
    /// A function.
    Function(Arc<Function>),
    /// A method bound to its object.
    Method(Arc<dyn HostObject>, String),
}

/// The items of a list or tuple, shared: copying a value copies a pointer,
/// never the items. Knows its depth of nesting and the bytes it would take
/// written out, so that the console can bound both.
#[derive(Clone)]
pub struct Seq(Arc<SeqData>);

struct SeqData {
    items: Vec<Value>,
    depth: usize,
    size: usize,
}

impl Seq {
    /// A sequence of `items`.
    pub fn new(items: Vec<Value>) -> Seq {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let size = items
            .iter()
            .fold(SLOT, |acc, v| acc.saturating_add(v.size()));
        Seq(Arc::new(SeqData { items, depth, size }))
    }

    /// The items.
    pub fn items(&self) -> &[Value] {
        &self.0.items
    }

    /// How deep lists nest in it (1 for a list of scalars).
    pub fn depth(&self) -> usize {
        self.0.depth
    }

    /// About how many bytes it would take with every item written out.
    pub fn size(&self) -> usize {
        self.0.size
    }
}

impl std::ops::Deref for Seq {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        self.items()
    }
}

impl From<Vec<Value>> for Seq {
    fn from(items: Vec<Value>) -> Seq {
        Seq::new(items)
    }
}

/// What one value takes besides what it points to (bytes).
const SLOT: usize = std::mem::size_of::<Value>();

impl Value {
    /// A list of `items`.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Seq::new(items))
    }

    /// How deep lists and tuples nest in it (0 for anything else).
    pub fn depth(&self) -> usize {
        match self {
            Value::List(s) | Value::Tuple(s) => s.depth(),
            _ => 0,
        }
    }

    /// [`Value::size`], plus what objects keep alive (see
    /// [`HostObject::memory`](crate::console::HostObject::memory)): their
    /// own bytes, and their shared parts entered in `shared` by id, to be
    /// counted once.
    pub(crate) fn held(&self, shared: &mut std::collections::HashMap<usize, usize>) -> usize {
        match self {
            Value::Object(o) => {
                let (own, part) = o.memory();
                if let Some((id, bytes)) = part {
                    shared.insert(id, bytes);
                }
                self.size().saturating_add(own)
            }
            Value::List(s) | Value::Tuple(s) => {
                let mut n = s.size();
                for v in s.items() {
                    if matches!(v, Value::Object(_) | Value::List(_) | Value::Tuple(_)) {
                        n = n.saturating_add(v.held(shared).saturating_sub(v.size()));
                    }
                }
                n
            }
            _ => self.size(),
        }
    }

    /// About how many bytes the value would take written out: what a
    /// session's budget counts.
    pub fn size(&self) -> usize {
        match self {
            Value::Str(s) | Value::Class(s) | Value::Text(s) => SLOT + s.len(),
            Value::List(s) | Value::Tuple(s) => s.size(),
            Value::Json(_) | Value::Object(_) | Value::Function(_) | Value::Method(..) => SLOT * 4,
            _ => SLOT,
        }
    }

    /// What a procedure returns: nothing to show (unlike `None`, which a
    /// line shows as its answer).
    pub fn nothing() -> Value {
        Value::Text(String::new())
    }

    /// Text shown as is at the prompt (a report).
    pub fn text(text: impl Into<String>) -> Value {
        Value::Text(text.into())
    }

    /// An object.
    pub fn object(object: impl HostObject) -> Value {
        Value::Object(Arc::new(object))
    }

    /// Any serialisable data, as the console's values (objects become
    /// attribute-readable data; `None` when it cannot be serialised).
    pub fn json(data: &impl serde::Serialize) -> Value {
        serde_json::to_value(data).map_or(Value::None, Value::from)
    }

    /// The value's type name, as errors name it.
    pub fn type_name(&self) -> &str {
        match self {
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
            Value::Object(o) => o.type_name(),
            Value::Function(_) => "function",
            Value::Method(_, _) => "method",
        }
    }

    /// Python's truth value.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Text(s) => !s.is_empty(),
            Value::List(v) | Value::Tuple(v) => !v.is_empty(),
            Value::Json(j) => {
                !matches!(j, serde_json::Value::Null | serde_json::Value::Bool(false))
            }
            Value::Object(o) => o.length() != Some(0),
            _ => true,
        }
    }

    /// The value as data, for a host function's arguments.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::None => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(n) => (*n).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) | Value::Class(s) | Value::Text(s) => s.clone().into(),
            Value::List(items) | Value::Tuple(items) => items.iter().map(Value::to_json).collect(),
            Value::Json(j) => j.clone(),
            Value::Object(o) => o.to_json().unwrap_or_else(|| o.repr().into()),
            other => super::repr::repr(other).into(),
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(j: serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::None,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::list(a.into_iter().map(Value::from).collect()),
            obj => Value::Json(obj),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<u64> for Value {
    /// An integer; one beyond `i64` becomes a float.
    fn from(n: u64) -> Value {
        i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::from(n as u64)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::repr::repr(self))
    }
}
