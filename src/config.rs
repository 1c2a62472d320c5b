//! Every `LEAKSCOPE_*` environment variable, in one place.
//!
//! | variable | default | meaning | read by |
//! |---|---|---|---|
//! | `LEAKSCOPE_MODE` | `sampled` | `off`, `counters`, `sampled` or `exact`: what the allocator records (see [`Mode`](crate::Mode)) | the allocator, at its first allocation |
//! | `LEAKSCOPE_SAMPLE_BYTES` | `524288` | mean bytes between samples in sampled mode | the allocator, at its first allocation |
//! | `LEAKSCOPE_MAX_FRAMES` | `32` | return addresses kept per stack (at most 128) | the allocator, at its first allocation |
//! | `LEAKSCOPE_UNWIND` | probed | `fp` (frame pointers) or `backtrace` (the unwinder): overrides the probe | the allocator, at its first allocation |
//! | `LEAKSCOPE_DHAT_OUT` | unset | a path: write a DHAT file there when the process exits | at start-up, before `main` |
//! | `LEAKSCOPE_TRACK_REFS` | `1` | `0` turns trackref's registry off | trackref, at the first tracked object |
//! | `LEAKSCOPE_CONSOLE` | `1` | `0`: the console is not started | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_CONSOLE_PORT` | `6023`–`6073` | the console's port | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_CONSOLE_PASSWORD` | random | the console's password | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_APP_CRATES` | unset | `a,b`: the crates that are the program's own code (default: what is not the standard library, leakscope or a dependency's source) | the views, when they name allocation sites |
//! | `LEAKSCOPE_HTTP` | unset | `HOST:PORT`: serve `/debug/pprof/heap` and `/metrics` there | [`http::Builder::with_default_env`](crate::http::Builder::with_default_env) |
//!
//! The allocator's variables are read without allocating (the first
//! allocation may come before `main`); a value it cannot use is reported on
//! stderr and the default is kept. The console's are read only when the
//! program asks for them with
//! [`Builder::with_default_env`](crate::console::Builder::with_default_env):
//! a builder's own settings win unless it is called.
//!
//! ```
//! for v in leakscope::config::VARIABLES {
//!     assert!(v.name().starts_with("LEAKSCOPE_"));
//!     assert!(!v.meaning().is_empty());
//! }
//! assert_eq!(leakscope::config::MODE.default_value(), "sampled");
//! ```

use crate::sys::env;

/// One environment variable leakscope reads.
#[derive(Debug)]
pub struct Variable {
    /// The name followed by a NUL byte, for the allocation-free reader.
    c_name: &'static str,
    default: &'static str,
    meaning: &'static str,
}

impl Variable {
    /// The variable's name (`LEAKSCOPE_MODE`).
    pub const fn name(&self) -> &'static str {
        let (name, _nul) = self.c_name.as_bytes().split_at(self.c_name.len() - 1);
        match std::str::from_utf8(name) {
            Ok(n) => n,
            Err(_) => panic!("variable names are ASCII"),
        }
    }

    /// What applies when it is not set.
    pub const fn default_value(&self) -> &'static str {
        self.default
    }

    /// What it does.
    pub const fn meaning(&self) -> &'static str {
        self.meaning
    }

    /// Its value, read without allocating (for the allocator).
    pub(crate) fn raw(&self) -> Option<&'static [u8]> {
        env::getenv(self.c_name.as_bytes())
    }

    /// Its value as text, when set (for code that may allocate).
    pub fn value(&self) -> Option<String> {
        std::env::var(self.name()).ok()
    }
}

macro_rules! variables {
    ($($(#[$doc:meta])* $id:ident = $name:literal, default $default:literal, $meaning:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: Variable = Variable {
                c_name: concat!($name, "\0"),
                default: $default,
                meaning: $meaning,
            };
        )*
        /// Every variable, in the order of the table above.
        pub const VARIABLES: &[Variable] = &[$($id),*];
    };
}

variables! {
    /// `LEAKSCOPE_MODE`: what the allocator records.
    MODE = "LEAKSCOPE_MODE", default "sampled",
        "off, counters, sampled or exact: what the allocator records";
    /// `LEAKSCOPE_SAMPLE_BYTES`: the mean gap between samples.
    SAMPLE_BYTES = "LEAKSCOPE_SAMPLE_BYTES", default "524288",
        "mean bytes between samples in sampled mode";
    /// `LEAKSCOPE_MAX_FRAMES`: frames kept per stack.
    MAX_FRAMES = "LEAKSCOPE_MAX_FRAMES", default "32",
        "return addresses kept per stack (at most 128)";
    /// `LEAKSCOPE_UNWIND`: the stack walker.
    UNWIND = "LEAKSCOPE_UNWIND", default "probed",
        "fp (frame pointers) or backtrace (the unwinder): overrides the probe";
    /// `LEAKSCOPE_DHAT_OUT`: a DHAT file at exit.
    DHAT_OUT = "LEAKSCOPE_DHAT_OUT", default "unset",
        "a path: write a DHAT file there when the process exits";
    /// `LEAKSCOPE_TRACK_REFS`: trackref on or off.
    TRACK_REFS = "LEAKSCOPE_TRACK_REFS", default "1",
        "0 turns trackref's registry off";
    /// `LEAKSCOPE_CONSOLE`: whether the console starts.
    CONSOLE = "LEAKSCOPE_CONSOLE", default "1",
        "0: the console is not started";
    /// `LEAKSCOPE_CONSOLE_PORT`: the console's port.
    CONSOLE_PORT = "LEAKSCOPE_CONSOLE_PORT", default "6023-6073",
        "the console's port";
    /// `LEAKSCOPE_CONSOLE_PASSWORD`: the console's password.
    CONSOLE_PASSWORD = "LEAKSCOPE_CONSOLE_PASSWORD", default "random",
        "the console's password";
    /// `LEAKSCOPE_APP_CRATES`: the program's own crates.
    APP_CRATES = "LEAKSCOPE_APP_CRATES", default "unset",
        "a,b: the crates that are the program's own code";
    /// `LEAKSCOPE_HTTP`: the pprof and metrics endpoint's address.
    HTTP = "LEAKSCOPE_HTTP", default "unset",
        "HOST:PORT: serve /debug/pprof/heap and /metrics there";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_the_documented_tables_agree() {
        let here = include_str!("config.rs");
        let readme = include_str!("../README.md");
        for v in VARIABLES {
            assert!(v.name().starts_with("LEAKSCOPE_"), "{}", v.name());
            assert!(
                here.contains(&format!("//! | `{}` |", v.name())),
                "{} is missing from this module's table",
                v.name()
            );
            assert!(
                readme.contains(&format!("`{}`", v.name())),
                "{} is missing from README.md",
                v.name()
            );
        }
        let documented = here
            .lines()
            .filter(|l| l.starts_with("//! | `LEAKSCOPE_"))
            .count();
        assert_eq!(
            documented,
            VARIABLES.len(),
            "a table row without a variable"
        );
    }
}
