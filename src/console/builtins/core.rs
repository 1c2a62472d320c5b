//! The language's own functions: `p`, `len`, `help`.

use crate::console::eval::{Error, ExceptionKind, Value, pretty};
use crate::console::host::{Call, Host, Origin};
use crate::render::table::wrap;

/// The longest line limit a session may choose.
const MAX_LINE_TIMEOUT: f64 = 3600.0;

pub(super) fn register(host: &mut Host) {
    host.builtin_function(
        "line_timeout",
        Some(
            "line_timeout(secs) — how long a line of this session may run before TimeoutError \
             (0.1 to 3600 s; a big heap's graph views take longer than the default); \
             line_timeout() shows it",
        ),
        |c| {
            let state = c.session();
            let ms = match c.args() {
                [] => {
                    let (limit, whose) = match state.line_time() {
                        Some(t) => (t, "this session's"),
                        None => (c.console_line_time(), "the console's"),
                    };
                    let text = format!(
                        "Lines of this session stop after {} s ({whose} limit).",
                        limit.as_secs_f64()
                    );
                    return Ok(Value::Text(
                        crate::render::table::wrap(&text, c.width(), 0) + "\n",
                    ));
                }
                [Value::Int(n)] => *n as f64,
                [Value::Float(f)] => *f,
                _ => f64::NAN,
            };
            if !(0.1..=MAX_LINE_TIMEOUT).contains(&ms) || !c.kwargs().is_empty() {
                return Err(Error::new(
                    ExceptionKind::ValueError,
                    format!("line_timeout(secs) takes seconds from 0.1 to {MAX_LINE_TIMEOUT}"),
                ));
            }
            let ms = (ms * 1000.0).round() as u64;
            state
                .line_ms
                .store(ms, std::sync::atomic::Ordering::Relaxed);
            Ok(Value::Text(format!(
                "Lines of this session now stop after {} s.\n",
                ms as f64 / 1000.0
            )))
        },
    );
    host.builtin_function("p", Some("p(x) — pretty-print a value"), |c| {
        c.arity(1)?;
        Ok(Value::Text(pretty(&c.args()[0], c.width())))
    });
    host.builtin_function(
        "len",
        Some("len(x) — length of a list, string, partition or heap"),
        |c| {
            c.arity(1)?;
            let n = match &c.args()[0] {
                Value::Str(s) => Some(s.chars().count()),
                Value::List(v) | Value::Tuple(v) => Some(v.len()),
                Value::Json(serde_json::Value::Array(a)) => Some(a.len()),
                Value::Json(serde_json::Value::Object(o)) => Some(o.len()),
                Value::Object(o) => o.length(),
                _ => None,
            };
            n.map(Value::from).ok_or_else(|| {
                Error::new(
                    ExceptionKind::TypeError,
                    format!("object of type '{}' has no len()", c.args()[0].type_name()),
                )
            })
        },
    );
    host.builtin_function("help", Some("help() — this list"), |c| {
        Ok(Value::Text(help(c)))
    });
}

/// `help()`: the built-ins' lines, then the program's names.
fn help(c: &Call<'_>) -> String {
    let mut out = wrap(
        "leakscope console. Type an expression; Ctrl-D or exit() leaves.",
        c.width(),
        0,
    );
    out.push_str("\n\n");
    let mut program: Vec<String> = Vec::new();
    for (name, entry) in c.host.entries() {
        match entry.origin {
            Origin::Builtin => {
                if let Some(text) = entry.help {
                    out.push_str("  ");
                    out.push_str(&wrap(text, c.width().saturating_sub(2), 4));
                    out.push('\n');
                }
            }
            Origin::Program => program.push(match &entry.value {
                Value::Function(_) => format!("{name}()"),
                Value::Object(o) if !o.methods().is_empty() => format!(
                    "{name}: {}",
                    o.methods()
                        .iter()
                        .map(|m| format!(".{m}()"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                _ => name.to_string(),
            }),
        }
    }
    program.sort();
    if !program.is_empty() {
        out.push_str("\nFrom the program:\n");
        for h in program {
            out.push_str("  ");
            out.push_str(&wrap(&h, c.width().saturating_sub(2), 4));
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(&wrap(
        "_ is the last result; x = … keeps one.",
        c.width(),
        0,
    ));
    out.push('\n');
    out
}
