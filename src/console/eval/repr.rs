//! How values read at the prompt: Python's `repr`, `p(x)`, and the caret
//! under the column of an error.

use super::value::Value;

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

/// The longest text a value is shown as (bytes); longer is cut with `…`.
pub(crate) const MAX_SHOWN: usize = 1 << 20;

/// Python-style representation (at most about [`MAX_SHOWN`] bytes).
pub(crate) fn repr(v: &Value) -> String {
    let mut out = String::new();
    repr_into(v, &mut out);
    if out.len() > MAX_SHOWN {
        let mut cut = MAX_SHOWN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn repr_into(v: &Value, out: &mut String) {
    if out.len() > MAX_SHOWN {
        return;
    }
    let items = |out: &mut String, items: &[Value], open: char, close: char| {
        out.push(open);
        for (i, item) in items.iter().enumerate() {
            if out.len() > MAX_SHOWN {
                break;
            }
            if i > 0 {
                out.push_str(", ");
            }
            repr_into(item, out);
        }
        if open == '(' && items.len() == 1 {
            out.push(',');
        }
        out.push(close);
    };
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e16 {
                out.push_str(&format!("{f:.1}"))
            } else {
                out.push_str(&f.to_string())
            }
        }
        Value::Str(s) => out.push_str(&quote(s)),
        Value::Text(t) => out.push_str(t.trim_end()),
        Value::List(s) => items(out, s, '[', ']'),
        Value::Tuple(s) => items(out, s, '(', ')'),
        Value::Class(n) => out.push_str(&format!("<class '{n}'>")),
        Value::Json(j) => out.push_str(&j.to_string()),
        Value::Object(o) => out.push_str(&o.repr()),
        Value::Function(f) => out.push_str(&format!("<function {}>", f.name)),
        Value::Method(_, n) => out.push_str(&format!("<method {n}>")),
    }
}

/// `p(x)`: pretty-printed.
pub(crate) fn pretty(v: &Value, width: usize) -> String {
    match v {
        Value::Json(j) => serde_json::to_string_pretty(j).unwrap_or_default(),
        Value::List(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if out.len() > MAX_SHOWN {
                    out.push('…');
                    break;
                }
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&repr(item));
            }
            out
        }
        Value::Text(t) => t.clone(),
        Value::Object(o) => o.pretty(width),
        other => repr(other),
    }
}

/// Items of a list shown at the prompt; the rest is one line saying how to
/// see them.
pub(crate) const LIST_PAGE: usize = 100;

/// How a value is shown when a line evaluates to it.
pub(crate) fn show(v: &Value, width: usize) -> String {
    let mut out = match v {
        Value::Text(t) if t.is_empty() => return String::new(),
        Value::Text(t) => t.clone(),
        Value::Object(o) => o.show(width),
        Value::List(items) if items.len() > LIST_PAGE => {
            let first = Value::list(items[..LIST_PAGE].to_vec());
            format!(
                "{}\n<{} more items. Type e.g. '_[{LIST_PAGE}:{}]' to view.>",
                repr(&first),
                items.len() - LIST_PAGE,
                2 * LIST_PAGE
            )
        }
        other => repr(other),
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The line with a caret under `column` and the message, Python style.
pub(crate) fn caret(line: &str, column: usize, message: &str) -> String {
    let shown: String = line.chars().take(200).collect();
    let col = column.min(shown.chars().count());
    format!("  {shown}\n  {}^\n{message}\n", " ".repeat(col))
}
