//! The few Python modules the Scrapy and Guppy sessions use, as the allocator's
//! analogues: `os` (the process, read-only) and `gc` (counts and a
//! collection, which for Rust means giving pages back).

use crate::console::eval::{Error, ExceptionKind, Seq, Value};
use crate::console::host::{Call, Host, HostObject};

pub(super) fn register(host: &mut Host) {
    host.builtin_object(
        "os",
        Some("import os: os.getpid(), os.getcwd(), os.environ.get(name, default=None) — read-only"),
        Os,
    );
    host.builtin_object(
        "gc",
        Some(
            "import gc: gc.get_count() — (live blocks, blocks allocated, blocks freed) since \
             the start; gc.collect() — what purge() does",
        ),
        Gc,
    );
}

/// `os`: the process's id, directory and environment.
struct Os;

impl HostObject for Os {
    fn type_name(&self) -> &str {
        "module"
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        (name == "environ").then(|| Value::object(Environ))
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["getpid", "getcwd"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        c.arity(0)?;
        match method {
            "getpid" => Ok(Value::from(u64::from(std::process::id()))),
            "getcwd" => std::env::current_dir()
                .map(|d| Value::from(d.display().to_string()))
                .map_err(|e| Error::new(ExceptionKind::OSError, e.to_string())),
            _ => Err(Error::no_attribute("module", method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'os'>".into()
    }
}

/// `os.environ`: read with `get`.
struct Environ;

impl HostObject for Environ {
    fn type_name(&self) -> &str {
        "environ"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["get"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::no_attribute("environ", method));
        }
        c.no_kwargs()?;
        if c.args().is_empty() || c.args().len() > 2 {
            return Err(Error::new(
                ExceptionKind::TypeError,
                "get() takes a name and an optional default",
            ));
        }
        let name = c.str_arg(0)?;
        Ok(match std::env::var(name) {
            Ok(v) => Value::from(v),
            Err(_) => c.arg(1).cloned().unwrap_or(Value::None),
        })
    }

    fn repr(&self) -> String {
        "<os.environ: read with .get(name)>".into()
    }
}

/// `gc`: the allocator's counts, and a collection.
struct Gc;

impl HostObject for Gc {
    fn type_name(&self) -> &str {
        "module"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["get_count", "collect"]
    }

    fn call(&self, method: &str, c: &Call<'_>) -> Result<Value, Error> {
        c.arity(0)?;
        let os_error = |e: crate::stats::Error| Error::new(ExceptionKind::OSError, e.to_string());
        match method {
            "get_count" => {
                let s = crate::stats().map_err(os_error)?;
                Ok(Value::Tuple(Seq::new(vec![
                    Value::from(s.live_blocks),
                    Value::from(s.total_blocks),
                    Value::from(s.freed_blocks),
                ])))
            }
            "collect" => {
                let report = crate::purge().map_err(os_error)?;
                Ok(Value::Text(format!(
                    "{}\n{}",
                    crate::render::table::wrap(
                        "Rust frees a block when its owner drops it: there is no garbage to \
                         collect. Unused pages were given back instead, as purge() does.",
                        c.width(),
                        0
                    ),
                    report.render(c.width())
                )))
            }
            _ => Err(Error::no_attribute("module", method)),
        }
    }

    fn repr(&self) -> String {
        "<module 'gc'>".into()
    }
}
