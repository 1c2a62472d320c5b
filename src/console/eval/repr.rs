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

/// Python-style representation.
pub(crate) fn repr(v: &Value) -> String {
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
        Value::Object(o) => o.repr(),
        Value::Function(f) => format!("<function {}>", f.name),
        Value::Method(_, n) => format!("<method {n}>"),
    }
}

/// `p(x)`: pretty-printed.
pub(crate) fn pretty(v: &Value, width: usize) -> String {
    match v {
        Value::Json(j) => serde_json::to_string_pretty(j).unwrap_or_default(),
        Value::List(items) => items.iter().map(repr).collect::<Vec<_>>().join("\n"),
        Value::Text(t) => t.clone(),
        Value::Object(o) => o.pretty(width),
        other => repr(other),
    }
}

/// How a value is shown when a line evaluates to it.
pub(crate) fn show(v: &Value, width: usize) -> String {
    let mut out = match v {
        Value::Text(t) => t.clone(),
        Value::Object(o) => o.show(width),
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
