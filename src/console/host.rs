//! The names a console knows: the program's objects and functions, and
//! leakscope's own built-ins, registered the same way in one table that
//! serves lookup, `import` and `help()`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use super::eval::{Error, ExceptionKind, Value};

/// Something reachable from the console by name (`engine`), or a value a
/// call returned (a heap, a partition). Every method has a default, so an
/// object implements what it has: attributes, methods, a length and items,
/// how it shows.
///
/// ```
/// use leakscope::console::{Call, Error, HostObject, Value};
///
/// struct Engine;
///
/// impl HostObject for Engine {
///     fn type_name(&self) -> &str {
///         "engine"
///     }
///     fn attribute(&self, name: &str) -> Option<Value> {
///         (name == "pages").then(|| Value::from(42i64))
///     }
///     fn methods(&self) -> Vec<&'static str> {
///         vec!["pause"]
///     }
///     fn call(&self, method: &str, call: &Call<'_>) -> Result<Value, Error> {
///         call.arity(0)?;
///         match method {
///             "pause" => Ok(Value::text("Engine paused.")),
///             _ => Err(Error::no_attribute(self.type_name(), method)),
///         }
///     }
/// }
/// ```
pub trait HostObject: Any + Send + Sync {
    /// The type's name in errors and the default `repr` (`engine`).
    fn type_name(&self) -> &str {
        "object"
    }

    /// A data attribute (`engine.paused`), or `None` when there is none by
    /// that name (then `name` is looked up among the [`methods`](Self::methods)).
    fn attribute(&self, name: &str) -> Option<Value> {
        let _ = name;
        None
    }

    /// The names callable as `obj.name(…)`; also listed by `help()`.
    fn methods(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Calls one of [`methods`](Self::methods).
    fn call(&self, method: &str, call: &Call<'_>) -> Result<Value, Error> {
        let _ = call;
        Err(Error::no_attribute(self.type_name(), method))
    }

    /// The representation at the prompt and inside lists.
    fn repr(&self) -> String {
        format!("<{} object>", self.type_name())
    }

    /// How the object shows when a line evaluates to it, for a terminal
    /// `width` columns wide (a table, for views); its `repr` by default.
    fn show(&self, width: usize) -> String {
        let _ = width;
        self.repr()
    }

    /// `p(obj)`: pretty-printed; what [`show`](Self::show) gives by default.
    fn pretty(&self, width: usize) -> String {
        self.show(width)
    }

    /// `len(obj)`, when it has a length.
    fn length(&self) -> Option<usize> {
        None
    }

    /// `obj[i]` for `0 <= i < length`; iteration walks these.
    fn item(&self, index: usize) -> Option<Value> {
        let _ = index;
        None
    }

    /// `obj['text']`, for objects whose items have names: `None` when
    /// they have none (a `TypeError`), else the item or the error.
    fn item_named(&self, key: &str) -> Option<Result<Value, Error>> {
        let _ = key;
        None
    }

    /// Bytes this object keeps alive, counted against the session's
    /// budget while a name holds it: its own, and a part it may share with
    /// other objects (a heap's snapshot, shared by every row and partition
    /// cut from it) as `(an id of that part, its bytes)`, counted once
    /// however many names hold it.
    fn memory(&self) -> (usize, Option<(usize, usize)>) {
        (0, None)
    }

    /// `self - other`, when defined.
    fn subtract(&self, other: &Value) -> Option<Result<Value, Error>> {
        let _ = other;
        None
    }

    /// Whether `obj()` with no arguments gives the object itself, so that a
    /// view reads the same as an attribute and as a call (`x.bytype` and
    /// `x.bytype()`, `hpy` and `hpy()`).
    fn call_returns_self(&self) -> bool {
        false
    }

    /// `obj(args…)` for an object whose call without arguments gives
    /// itself ([`call_returns_self`](Self::call_returns_self)): `None` when
    /// it takes no arguments (the caller says so), else the result.
    fn call_with(&self, call: &Call<'_>) -> Option<Result<Value, Error>> {
        let _ = call;
        None
    }

    /// The object as data, when a host function is passed it.
    fn to_json(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The arguments of one call, and what the caller's session knows.
pub struct Call<'a> {
    pub(crate) name: &'a str,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Vec<(String, Value)>,
    pub(crate) width: usize,
    /// When the line's time runs out.
    pub(crate) deadline: std::time::Instant,
    /// The console's line limit (a session may choose its own).
    pub(crate) console_line_time: std::time::Duration,
    pub(crate) host: &'a Host,
    pub(crate) session: &'a SessionState,
}

/// What built-ins keep per session.
#[derive(Default)]
pub(crate) struct SessionState {
    /// The baseline of `prefs()`'s Change column.
    pub(crate) prefs: std::sync::Mutex<crate::trackref::Baseline>,
    /// The line limit `line_timeout(secs)` chose for this session, in
    /// milliseconds (0: the console's).
    pub(crate) line_ms: std::sync::atomic::AtomicU64,
}

impl SessionState {
    /// The line limit this session chose, if it chose one.
    pub(crate) fn line_time(&self) -> Option<std::time::Duration> {
        match self.line_ms.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }
}

impl Call<'_> {
    /// The positional arguments.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// The keyword arguments, in the order given.
    pub fn kwargs(&self) -> &[(String, Value)] {
        &self.kwargs
    }

    /// The caller's terminal width, for tables.
    pub fn width(&self) -> usize {
        self.width
    }

    /// What this session keeps.
    pub(crate) fn session(&self) -> &SessionState {
        self.session
    }

    /// The console's line limit.
    pub(crate) fn console_line_time(&self) -> std::time::Duration {
        self.console_line_time
    }

    /// The time left before the line's limit: a built-in that waits
    /// (`leaks(deep=True)`) waits no longer.
    pub fn time_left(&self) -> std::time::Duration {
        self.deadline
            .saturating_duration_since(std::time::Instant::now())
    }

    /// The positional argument `i`.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }

    /// A `TypeError` unless there are no keyword arguments.
    pub fn no_kwargs(&self) -> Result<(), Error> {
        match self.kwargs.first() {
            Some((k, _)) => Err(Error::new(
                ExceptionKind::TypeError,
                format!("{}() got an unexpected keyword argument '{k}'", self.name),
            )),
            None => Ok(()),
        }
    }

    /// A `TypeError` unless there are exactly `n` positional arguments and
    /// no keyword arguments.
    pub fn arity(&self, n: usize) -> Result<(), Error> {
        self.no_kwargs()?;
        if self.args.len() != n {
            return Err(Error::new(
                ExceptionKind::TypeError,
                format!(
                    "{}() takes {n} positional argument(s) ({} given)",
                    self.name,
                    self.args.len()
                ),
            ));
        }
        Ok(())
    }

    /// The positional argument `i` as a string (a `TypeError` otherwise).
    pub fn str_arg(&self, i: usize) -> Result<&str, Error> {
        match self.args.get(i) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(Error::new(
                ExceptionKind::TypeError,
                format!("{}() takes a string as argument {}", self.name, i + 1),
            )),
        }
    }
}

type FunctionBody = dyn Fn(&Call<'_>) -> Result<Value, Error> + Send + Sync;

/// A function callable from the console.
pub struct Function {
    pub(crate) name: String,
    body: Box<FunctionBody>,
}

impl Function {
    pub(crate) fn new(
        name: &str,
        body: impl Fn(&Call<'_>) -> Result<Value, Error> + Send + Sync + 'static,
    ) -> Self {
        Function {
            name: name.to_string(),
            body: Box::new(body),
        }
    }

    pub(crate) fn invoke(&self, call: &Call<'_>) -> Result<Value, Error> {
        (self.body)(call)
    }
}

/// What a host function may return: text (shown as is), a value, nothing,
/// or a `Result` whose error is shown as the error.
pub trait IntoOutput {
    /// Converts into the console's value.
    fn into_output(self) -> Result<Value, Error>;
}

impl IntoOutput for Value {
    fn into_output(self) -> Result<Value, Error> {
        Ok(self)
    }
}

impl IntoOutput for String {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::Text(self))
    }
}

impl IntoOutput for &str {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::Text(self.to_string()))
    }
}

/// Nothing to show (a procedure): not `None`, which is shown as an answer.
impl IntoOutput for () {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::Text(String::new()))
    }
}

impl IntoOutput for serde_json::Value {
    fn into_output(self) -> Result<Value, Error> {
        Ok(match self {
            serde_json::Value::String(s) => Value::Text(s),
            other => Value::from(other),
        })
    }
}

impl IntoOutput for bool {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::Bool(self))
    }
}

impl IntoOutput for i64 {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::Int(self))
    }
}

impl IntoOutput for u64 {
    fn into_output(self) -> Result<Value, Error> {
        Ok(Value::from(self))
    }
}

impl<T: IntoOutput, E: std::fmt::Display> IntoOutput for Result<T, E> {
    fn into_output(self) -> Result<Value, Error> {
        self.map_err(|e| Error::new(ExceptionKind::RuntimeError, e.to_string()))
            .and_then(IntoOutput::into_output)
    }
}

/// Who registered a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// leakscope's own built-ins.
    Builtin,
    /// The program, through the builder.
    Program,
}

/// One name the console knows.
pub(crate) struct Entry {
    pub(crate) value: Value,
    /// The line `help()` shows for it (`None`: not listed, as for aliases).
    pub(crate) help: Option<&'static str>,
    pub(crate) origin: Origin,
}

/// Every name a console knows, shared by its sessions: the built-ins first,
/// in the order `help()` lists them, then the program's.
#[derive(Default)]
pub(crate) struct Host {
    entries: Vec<(String, Entry)>,
    index: HashMap<String, usize>,
}

impl Host {
    /// A host with leakscope's built-ins registered.
    pub(crate) fn with_builtins() -> Self {
        let mut host = Host::default();
        super::builtins::register(&mut host);
        host
    }

    /// Registers `value` under `name`, replacing an earlier entry.
    pub(crate) fn insert(&mut self, name: &str, entry: Entry) {
        match self.index.get(name) {
            Some(&i) => self.entries[i].1 = entry,
            None => {
                self.index.insert(name.to_string(), self.entries.len());
                self.entries.push((name.to_string(), entry));
            }
        }
    }

    /// Registers a built-in function.
    pub(crate) fn builtin_function(
        &mut self,
        name: &str,
        help: Option<&'static str>,
        body: impl Fn(&Call<'_>) -> Result<Value, Error> + Send + Sync + 'static,
    ) {
        let value = Value::Function(Arc::new(Function::new(name, body)));
        self.insert(
            name,
            Entry {
                value,
                help,
                origin: Origin::Builtin,
            },
        );
    }

    /// Registers a built-in object.
    pub(crate) fn builtin_object(
        &mut self,
        name: &str,
        help: Option<&'static str>,
        object: impl HostObject,
    ) {
        self.insert(
            name,
            Entry {
                value: Value::Object(Arc::new(object)),
                help,
                origin: Origin::Builtin,
            },
        );
    }

    /// The value registered as `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.index.get(name).map(|&i| &self.entries[i].1.value)
    }

    /// Every entry, in registration order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }
}

/// Implements every [`HostObject`] method by handing it to `$inner`,
/// through `$run` (which runs a closure: the call as it is, or as the
/// program's).
macro_rules! forward_host_object {
    ($inner:ident, $run:path) => {
        fn type_name(&self) -> &str {
            self.$inner().type_name()
        }
        fn attribute(&self, name: &str) -> Option<Value> {
            $run(|| self.$inner().attribute(name))
        }
        fn methods(&self) -> Vec<&'static str> {
            $run(|| self.$inner().methods())
        }
        fn call(&self, method: &str, call: &Call<'_>) -> Result<Value, Error> {
            $run(|| self.$inner().call(method, call))
        }
        fn repr(&self) -> String {
            $run(|| self.$inner().repr())
        }
        fn show(&self, width: usize) -> String {
            $run(|| self.$inner().show(width))
        }
        fn pretty(&self, width: usize) -> String {
            $run(|| self.$inner().pretty(width))
        }
        fn length(&self) -> Option<usize> {
            $run(|| self.$inner().length())
        }
        fn item(&self, index: usize) -> Option<Value> {
            $run(|| self.$inner().item(index))
        }
        fn memory(&self) -> (usize, Option<(usize, usize)>) {
            self.$inner().memory()
        }
        fn subtract(&self, other: &Value) -> Option<Result<Value, Error>> {
            $run(|| self.$inner().subtract(other))
        }
        fn call_returns_self(&self) -> bool {
            self.$inner().call_returns_self()
        }
        fn call_with(&self, call: &Call<'_>) -> Option<Result<Value, Error>> {
            $run(|| self.$inner().call_with(call))
        }
        fn to_json(&self) -> Option<serde_json::Value> {
            $run(|| self.$inner().to_json())
        }
    };
}

/// Runs `f` as it is.
fn directly<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// A shared object is reachable as itself: `.var("engine", engine.clone())`.
impl<T: HostObject> HostObject for Arc<T> {
    forward_host_object!(as_ref, directly);
}

/// An object the program gave the console: its methods are the program's
/// code, so what they allocate is the program's memory even though they run
/// on one of leakscope's own threads.
pub(crate) struct ProgramObject<T>(pub(crate) T);

impl<T> ProgramObject<T> {
    fn object(&self) -> &T {
        &self.0
    }
}

impl<T: HostObject> HostObject for ProgramObject<T> {
    forward_host_object!(object, crate::tracker::as_program);
}
