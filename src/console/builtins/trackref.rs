//! trackref in the console: `prefs`, `get_oldest`, `iter_all`, and
//! Scrapy's names for them (`print_live_refs`, the `trackref` module).

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::{Call, Host, HostObject};
use crate::trackref::{self, LiveObject};

pub(super) fn register(host: &mut Host) {
    host.builtin_function(
        "prefs",
        Some("prefs(ignore=…) — live instances per tracked class (trackref)"),
        prefs,
    );
    host.builtin_function(
        "get_oldest",
        Some("get_oldest('Class') — the oldest live instance; .field reads its fields"),
        get_oldest,
    );
    host.builtin_function(
        "iter_all",
        Some("iter_all('Class') — every live instance, oldest first"),
        iter_all,
    );
    // Scrapy's own names, for `from scrapy.utils.trackref import …`.
    host.builtin_function("print_live_refs", None, prefs);
    host.builtin_function("format_live_refs", None, prefs);
    host.builtin_function("live_refs", None, prefs);
    host.builtin_object("trackref", None, Module);
}

/// `prefs(ignore=Spider)`, `prefs(ignore=(A, B))`, `prefs('A')`.
fn prefs(c: &Call<'_>) -> Result<Value, Error> {
    let mut ignore: Vec<String> = Vec::new();
    for (k, v) in c.kwargs() {
        if k != "ignore" {
            return Err(Error::new(
                ExceptionKind::TypeError,
                format!("prefs() got an unexpected keyword argument '{k}'"),
            ));
        }
        collect_names(v, &mut ignore)?;
    }
    for v in c.args() {
        collect_names(v, &mut ignore)?;
    }
    let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
    // The Change column is this session's: what changed since its own
    // previous report, whatever other sessions ask.
    let mut baseline = c.session.prefs.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Value::Text(
        trackref::report_since(&ignore, &mut baseline).to_string(),
    ))
}

fn get_oldest(c: &Call<'_>) -> Result<Value, Error> {
    c.arity(1)?;
    let class = class_arg(&c.args()[0])?;
    Ok(trackref::get_oldest(&class).map_or(Value::None, |o| Value::object(Live(o))))
}

fn iter_all(c: &Call<'_>) -> Result<Value, Error> {
    c.arity(1)?;
    let class = class_arg(&c.args()[0])?;
    Ok(Value::list(
        trackref::iter_all(&class)
            .into_iter()
            .map(|o| Value::object(Live(o)))
            .collect(),
    ))
}

fn collect_names(v: &Value, out: &mut Vec<String>) -> Result<(), Error> {
    match v {
        Value::Class(n) | Value::Str(n) => {
            out.push(n.clone());
            Ok(())
        }
        Value::Tuple(items) | Value::List(items) => {
            items.iter().try_for_each(|i| collect_names(i, out))
        }
        other => Err(Error::new(
            ExceptionKind::TypeError,
            format!(
                "ignore= takes classes, names or tuples of them, not '{}'",
                other.type_name()
            ),
        )),
    }
}

fn class_arg(v: &Value) -> Result<String, Error> {
    match v {
        Value::Str(s) | Value::Class(s) => Ok(s.clone()),
        other => Err(Error::new(
            ExceptionKind::TypeError,
            format!("expected a class name, not '{}'", other.type_name()),
        )),
    }
}

/// A live tracked instance: its fields read as attributes.
struct Live(LiveObject);

impl HostObject for Live {
    fn type_name(&self) -> &str {
        "instance"
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "class_name" => Some(Value::from(self.0.class)),
            "age" => Some(Value::Float(self.0.age.as_secs_f64())),
            _ => match self.0.fields() {
                Some(serde_json::Value::Object(m)) => m.get(name).cloned().map(Value::from),
                _ => None,
            },
        }
    }

    fn repr(&self) -> String {
        let o = &self.0;
        match o.fields() {
            Some(f) => format!("<{} {}s old {}>", o.class, o.age.as_secs(), f),
            None => format!("<{} {}s old>", o.class, o.age.as_secs()),
        }
    }

    /// The repr when it fits the width; else the class and age, then a
    /// field a line (a line still too long goes on under it, indented).
    fn show(&self, width: usize) -> String {
        let repr = self.repr();
        if repr.chars().count() <= width {
            return repr;
        }
        let o = &self.0;
        let mut lines = vec![format!("<{} {}s old", o.class, o.age.as_secs())];
        match o.fields() {
            Some(serde_json::Value::Object(m)) => {
                lines.extend(m.iter().map(|(k, v)| format!("  {k}: {v}")));
            }
            Some(other) => lines.push(format!("  {other}")),
            None => {}
        }
        if let Some(last) = lines.last_mut() {
            last.push('>');
        }
        lines
            .iter()
            .map(|l| fold(l, width.max(20), 4))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pretty(&self, _width: usize) -> String {
        let o = &self.0;
        format!(
            "<{} {}s old>\n{}",
            o.class,
            o.age.as_secs(),
            o.fields().map_or_else(String::new, |f| {
                serde_json::to_string_pretty(&f).unwrap_or_default()
            })
        )
    }

    fn to_json(&self) -> Option<serde_json::Value> {
        Some(self.0.fields().unwrap_or(serde_json::Value::Null))
    }
}

/// `line` in pieces of at most `width` characters, each after the first
/// indented by `indent`.
fn fold(line: &str, width: usize, indent: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    let mut room = width;
    while chars.len() - at > room {
        out.extend(&chars[at..at + room]);
        out.push('\n');
        out.push_str(&" ".repeat(indent));
        at += room;
        room = width - indent;
    }
    out.extend(&chars[at..]);
    out
}

/// `trackref`, as `from scrapy.utils import trackref` gives it.
struct Module;

impl HostObject for Module {
    fn type_name(&self) -> &str {
        "module"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec![
            "print_live_refs",
            "format_live_refs",
            "get_oldest",
            "iter_all",
        ]
    }

    fn call(&self, method: &str, call: &Call<'_>) -> Result<Value, Error> {
        match method {
            "print_live_refs" | "format_live_refs" => prefs(call),
            "get_oldest" => get_oldest(call),
            "iter_all" => iter_all(call),
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'trackref'>".into()
    }
}
