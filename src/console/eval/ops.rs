//! Operators, equality, iteration and indexing.

use super::error::{Error, ExceptionKind};
use super::value::Value;
use crate::console::lang::BinOp;

type R<T> = Result<T, Error>;

fn unsupported(a: &Value, b: &Value) -> Error {
    Error::new(
        ExceptionKind::TypeError,
        format!(
            "unsupported operand types: '{}' and '{}'",
            a.type_name(),
            b.type_name()
        ),
    )
}

/// Arithmetic on numbers: checked integers (an error, never a wrap or a
/// panic), floats otherwise.
pub(super) fn arith(op: BinOp, a: &Value, b: &Value) -> R<Value> {
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
                    return Err(Error::new(
                        ExceptionKind::ZeroDivisionError,
                        "division by zero",
                    ));
                }
                return Ok(Value::Float(x as f64 / y as f64));
            }
            BinOp::Rem => {
                if y == 0 {
                    return Err(Error::new(
                        ExceptionKind::ZeroDivisionError,
                        "modulo by zero",
                    ));
                }
                x.checked_rem_euclid(y)
            }
            _ => None,
        };
        return r
            .map(Value::Int)
            .ok_or_else(|| Error::new(ExceptionKind::OverflowError, "integer overflow"));
    }
    if let (Some(x), Some(y)) = (as_float(a), as_float(b)) {
        return Ok(Value::Float(match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div if y == 0.0 => {
                return Err(Error::new(
                    ExceptionKind::ZeroDivisionError,
                    "float division by zero",
                ));
            }
            BinOp::Div => x / y,
            BinOp::Rem if y == 0.0 => {
                return Err(Error::new(ExceptionKind::ZeroDivisionError, "float modulo"));
            }
            _ => x.rem_euclid(y),
        }));
    }
    Err(unsupported(a, b))
}

/// `==`.
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => *x as f64 == *y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) | (Value::Class(x), Value::Class(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| equal(a, b))
        }
        (Value::Json(x), Value::Json(y)) => x == y,
        _ => false,
    }
}

/// `<`, `<=`, `>`, `>=`: strings with strings, numbers with numbers.
pub(super) fn compare(op: BinOp, a: &Value, b: &Value) -> R<Value> {
    let num = |v: &Value| match v {
        Value::Int(n) => Some(*n as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    let ord = match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.partial_cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => return Err(unsupported(a, b)),
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

/// `a in b` (`not in` negates it).
pub(super) fn contains(container: &Value, item: &Value) -> R<bool> {
    match container {
        Value::Str(s) => match item {
            Value::Str(l) => Ok(s.contains(l.as_str())),
            _ => Err(unsupported(item, container)),
        },
        Value::List(items) | Value::Tuple(items) => Ok(items.iter().any(|i| equal(i, item))),
        _ => Err(unsupported(item, container)),
    }
}

/// The items a `for` loops over.
pub(super) fn iterate(v: Value) -> R<Vec<Value>> {
    match v {
        Value::List(items) | Value::Tuple(items) => Ok(items.to_vec()),
        Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        Value::Json(serde_json::Value::Array(a)) => Ok(a.into_iter().map(Value::from).collect()),
        Value::Object(o) if o.length().is_some() => {
            let n = o.length().unwrap_or(0);
            Ok((0..n).filter_map(|i| o.item(i)).collect())
        }
        other => Err(Error::new(
            ExceptionKind::TypeError,
            format!("'{}' object is not iterable", other.type_name()),
        )),
    }
}

/// `v[i]`: integers index sequences and objects (negative from the end),
/// strings index data.
pub(super) fn index(v: Value, i: Value) -> R<Value> {
    let Value::Int(n) = i else {
        if let (Value::Object(o), Value::Str(k)) = (&v, &i)
            && let Some(found) = o.item_named(k)
        {
            return found;
        }
        if let (Value::Json(serde_json::Value::Object(m)), Value::Str(k)) = (&v, &i) {
            return m
                .get(k)
                .cloned()
                .map(Value::from)
                .ok_or_else(|| Error::new(ExceptionKind::KeyError, format!("'{k}'")));
        }
        return Err(Error::new(
            ExceptionKind::TypeError,
            format!("indices must be integers, not '{}'", i.type_name()),
        ));
    };
    let pick = |len: usize| -> R<usize> {
        let idx = if n < 0 { len as i64 + n } else { n };
        if idx < 0 || idx as usize >= len {
            Err(Error::new(ExceptionKind::IndexError, "index out of range"))
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
        Value::Json(serde_json::Value::Array(a)) => Ok(Value::from(a[pick(a.len())?].clone())),
        Value::Object(o) if o.length().is_some() => {
            let i = pick(o.length().unwrap_or(0))?;
            o.item(i)
                .ok_or_else(|| Error::new(ExceptionKind::IndexError, "index out of range"))
        }
        other => Err(Error::new(
            ExceptionKind::TypeError,
            format!("'{}' object is not subscriptable", other.type_name()),
        )),
    }
}

/// `v[start:end]`, Python's way: negative bounds count from the end, bounds
/// past either end are clamped. Objects with items give a list of them.
pub(super) fn slice(
    v: Value,
    start: Option<i64>,
    end: Option<i64>,
    seq: impl FnOnce(Vec<Value>) -> R<super::Seq>,
) -> R<Value> {
    let range = |len: usize| {
        let at = |b: Option<i64>, default: usize| match b {
            None => default,
            Some(n) if n < 0 => (len as i64 + n).max(0) as usize,
            Some(n) => (n as usize).min(len),
        };
        let (s, e) = (at(start, 0), at(end, len));
        s..e.max(s)
    };
    match v {
        Value::List(items) => Ok(Value::List(seq(items[range(items.len())].to_vec())?)),
        Value::Tuple(items) => Ok(Value::Tuple(seq(items[range(items.len())].to_vec())?)),
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            Ok(Value::Str(chars[range(chars.len())].iter().collect()))
        }
        Value::Object(o) if o.length().is_some() => {
            let items = range(o.length().unwrap_or(0))
                .map_while(|i| o.item(i))
                .collect();
            Ok(Value::List(seq(items)?))
        }
        other => Err(Error::new(
            ExceptionKind::TypeError,
            format!("'{}' object is not subscriptable", other.type_name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arithmetic_is_checked_never_a_panic() {
        let min = Value::Int(i64::MIN);
        let e = arith(BinOp::Rem, &min, &Value::Int(-1)).unwrap_err();
        assert_eq!(e.to_string(), "OverflowError: integer overflow");
        let e = arith(BinOp::Mul, &min, &Value::Int(-1)).unwrap_err();
        assert_eq!(e.kind, ExceptionKind::OverflowError);
        assert!(matches!(
            arith(BinOp::Rem, &Value::Int(-7), &Value::Int(3)),
            Ok(Value::Int(2))
        ));
        let e = arith(BinOp::Rem, &Value::Int(1), &Value::Int(0)).unwrap_err();
        assert_eq!(e.to_string(), "ZeroDivisionError: modulo by zero");
    }
}
