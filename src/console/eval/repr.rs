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
        Value::Text(t) => fitted(t, width),
        Value::Object(o) => o.show(width),
        Value::List(items) if items.len() > LIST_PAGE => {
            format!(
                "{}\n<{} more items. Type e.g. '_[{LIST_PAGE}:{}]' to view.>",
                items_shown(&items[..LIST_PAGE], '[', ']', width),
                items.len() - LIST_PAGE,
                2 * LIST_PAGE
            )
        }
        Value::List(items) => items_shown(items, '[', ']', width),
        Value::Tuple(items) if items.len() != 1 => items_shown(items, '(', ')', width),
        other => repr(other),
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Text with every line wider than `width` wrapped at its spaces, keeping
/// its indent (text made without knowing the client's width: an
/// attribute's message).
fn fitted(text: &str, width: usize) -> String {
    if text.lines().all(|l| l.chars().count() <= width) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let indent = body.len() - body.trim_start_matches(' ').len();
        let room = width.saturating_sub(indent).max(1);
        for (k, part) in crate::render::table::wrap(&body[indent..], room, 0)
            .lines()
            .enumerate()
        {
            if k > 0 {
                out.push('\n');
            }
            out.push_str(&body[..indent]);
            out.push_str(part);
        }
        out.push_str(end);
    }
    out
}

/// A list's (or tuple's) items: on one line when it fits `width`, else one
/// item a line, each shown as it would be alone (a wide instance folded),
/// one column in.
fn items_shown(items: &[Value], open: char, close: char, width: usize) -> String {
    let one_line = repr(&Value::list(items.to_vec()));
    let one_line = match open {
        '(' => format!("({})", &one_line[1..one_line.len() - 1]),
        _ => one_line,
    };
    if one_line.chars().count() <= width || items.is_empty() {
        return one_line;
    }
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if out.len() > MAX_SHOWN {
            out.push('…');
            break;
        }
        // An item as in Python's list, unless its repr is too wide and it
        // has a folded form (an instance with long fields).
        let r = repr(item);
        let shown = match item {
            Value::Object(o) if r.chars().count() >= width => o.show(width.saturating_sub(1)),
            _ => r,
        };
        for (k, line) in shown.trim_end().lines().enumerate() {
            out.push(match (i, k) {
                (0, 0) => open,
                _ => ' ',
            });
            out.push_str(line);
            out.push('\n');
        }
        out.pop();
        out.push(if i + 1 == items.len() { close } else { ',' });
        out.push('\n');
    }
    out
}

/// The line with a caret under `column` and the message, Python style,
/// the message wrapped to `width`.
pub(crate) fn caret(line: &str, column: usize, message: &str, width: usize) -> String {
    let shown: String = line.chars().take(200).collect();
    let col = column.min(shown.chars().count());
    let message: Vec<String> = message
        .lines()
        .map(|l| crate::render::table::wrap(l, width, 0))
        .collect();
    format!(
        "  {shown}\n  {}^\n{}\n",
        " ".repeat(col),
        message.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_too_wide_shows_an_item_a_line_and_one_that_fits_stays_whole() {
        let list = Value::list(vec![
            Value::Str("aaaaaaaaaa".into()),
            Value::Str("bbbbbbbbbb".into()),
        ]);
        assert_eq!(show(&list, 80), "['aaaaaaaaaa', 'bbbbbbbbbb']\n");
        assert_eq!(show(&list, 20), "['aaaaaaaaaa',\n 'bbbbbbbbbb']\n");
        let tuple = Value::Tuple(vec![Value::Int(1), Value::Str("x".repeat(30))].into());
        assert_eq!(show(&tuple, 20), format!("(1,\n '{}')\n", "x".repeat(30)));
        assert_eq!(show(&Value::list(vec![]), 20), "[]\n");
    }

    #[test]
    fn text_wider_than_the_client_wraps_keeping_its_indent() {
        let text = Value::Text("short\n   one two three four five\n".into());
        assert_eq!(show(&text, 80), "short\n   one two three four five\n");
        assert_eq!(
            show(&text, 14),
            "short\n   one two\n   three four\n   five\n"
        );
    }

    #[test]
    fn an_error_message_wraps_to_the_width() {
        let shown = caret("x.y", 2, "AttributeError: one two three four five six", 20);
        assert_eq!(
            shown,
            "  x.y\n    ^\nAttributeError: one\ntwo three four five\nsix\n"
        );
    }
}
