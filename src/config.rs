//! Every `LEAKSCOPE_*` environment variable, in one place.
//!
//! | variable | default | meaning | read by |
//! |---|---|---|---|
//! | `LEAKSCOPE_MODE` | `sampled` | `off`, `counters`, `sampled` or `exact`: what the allocator records (see [`Mode`](crate::Mode)) | the allocator, at its first allocation |
//! | `LEAKSCOPE_SAMPLE_BYTES` | `524288` | mean bytes between samples in sampled mode | the allocator, at its first allocation |
//! | `LEAKSCOPE_MAX_FRAMES` | `32` | return addresses kept per stack (at most 128) | the allocator, at its first allocation |
//! | `LEAKSCOPE_UNWIND` | probed | `fp` (frame pointers) or `backtrace` (the unwinder): overrides the probe | the allocator, at its first allocation |
//! | `LEAKSCOPE_DHAT_OUT` | unset | a path: write a DHAT file there when the process exits | at start-up, before `main` |
//! | `LEAKSCOPE_TRACK_REFS` | `1` | a flag: off turns trackref's registry off | trackref, at the first tracked object |
//! | `LEAKSCOPE_CONSOLE` | `1` | a flag: off, the console is not started | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_CONSOLE_PORT` | `6023`–`6073` | the console's port | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_CONSOLE_PASSWORD` | random | the console's password (an empty one is refused) | [`Builder::with_default_env`](crate::console::Builder::with_default_env) |
//! | `LEAKSCOPE_APP_CRATES` | unset | `a,b`: the crates that are the program's own code, at least one (default: what is not the standard library, leakscope or a dependency's source, and the crates of the package that holds the binary's `main`, wherever it lies) | the views, when they name allocation sites |
//! | `LEAKSCOPE_WATCH_INTERVAL` | `10` | seconds between points of the growth history behind `leaks()` (0.1 to 86400, fractions allowed; `0`: no history) | [`leaks::start`](crate::leaks::start), when the console or the endpoint starts |
//! | `LEAKSCOPE_HTTP` | unset | `HOST:PORT`: serve the page (`/`), `/debug/leaks`, `/debug/pprof/heap` and `/metrics` there (a warning names an address that is not loopback) | [`http::Builder::with_default_env`](crate::http::Builder::with_default_env) |
//!
//! A flag takes `0`, `1`, `false`, `true`, `no`, `yes`, `off` or `on`, in
//! any case ([`parse_flag`]); anything else is refused with a message that
//! names the variable ([`BadValue`]).
//!
//! The allocator's variables are read without allocating (the first
//! allocation may come before `main`); a value it cannot use is reported on
//! stderr and the default is kept, as are `LEAKSCOPE_TRACK_REFS` and
//! `LEAKSCOPE_APP_CRATES`, which are read where no caller can be told.
//! The console's are read only when the
//! program asks for them with
//! [`Builder::with_default_env`](crate::console::Builder::with_default_env):
//! a builder's own settings win unless it is called.
//!
//! ```
//! for v in leakscope::config::VARIABLES {
//!     assert!(v.name().starts_with("LEAKSCOPE_"));
//!     assert!(!v.meaning().is_empty());
//! }
//! assert_eq!(leakscope::config::MODE.default_text(), "sampled");
//! assert_eq!(leakscope::config::parse_flag(" Off "), Some(false));
//! assert_eq!(leakscope::config::parse_flag("disabled"), None);
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

    /// What applies when it is not set, as the tables say it: a value
    /// (`sampled`), or what happens instead (`unset`, `probed`).
    pub const fn default_text(&self) -> &'static str {
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

    /// Its value as text, when set (for code that may allocate). A value
    /// that is not UTF-8 reads as the replacement characters it holds, so
    /// that it is refused by the parsers below rather than taken as unset.
    pub fn value(&self) -> Option<String> {
        std::env::var_os(self.name()).map(|v| v.to_string_lossy().into_owned())
    }

    /// Its value as a path, when set: the bytes as they are, so that a
    /// file name that is not UTF-8 names that file.
    pub fn path(&self) -> Option<std::path::PathBuf> {
        std::env::var_os(self.name()).map(std::path::PathBuf::from)
    }

    /// Its value as a flag, when set; see [`parse_flag`].
    pub fn flag(&self) -> Result<Option<bool>, BadValue> {
        self.value()
            .map(|v| parse_flag(&v).ok_or_else(|| self.bad(v, FLAG_WORDS)))
            .transpose()
    }

    /// Its value as a comma-separated list of names, when set: blanks around
    /// names are dropped, and a list with no name is refused.
    pub fn names(&self) -> Result<Option<Vec<String>>, BadValue> {
        self.value()
            .map(|v| parse_names(&v).ok_or_else(|| self.bad(v, NAMES_WORDS)))
            .transpose()
    }

    /// The error for `value`, which is not `expected`.
    pub fn bad(&self, value: String, expected: &'static str) -> BadValue {
        BadValue {
            name: self.name(),
            value,
            expected,
        }
    }
}

/// The values a flag takes, as [`BadValue`] names them.
pub const FLAG_WORDS: &str = "a flag: 0, 1, false, true, no, yes, off or on";

/// A flag's value: `0`, `false`, `no`, `off` are false and `1`, `true`,
/// `yes`, `on` are true, in any case and with blanks around; anything else
/// (`disabled`, `2`, the empty string) is `None`.
pub fn parse_flag(text: &str) -> Option<bool> {
    let t = text.trim();
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("0") || is("false") || is("no") || is("off") {
        Some(false)
    } else if is("1") || is("true") || is("yes") || is("on") {
        Some(true)
    } else {
        None
    }
}

/// What a list of names is, as [`BadValue`] says it.
pub const NAMES_WORDS: &str = "a comma-separated list of at least one name";

/// A comma-separated list's names, without the blanks around them; `None`
/// when no name is left (`""`, `",,,"`).
pub fn parse_names(text: &str) -> Option<Vec<String>> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    (!names.is_empty()).then_some(names)
}

/// A variable's value leakscope cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not {expected}")]
pub struct BadValue {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
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
        "a flag: off turns trackref's registry off";
    /// `LEAKSCOPE_CONSOLE`: whether the console starts.
    CONSOLE = "LEAKSCOPE_CONSOLE", default "1",
        "a flag: off, the console is not started";
    /// `LEAKSCOPE_CONSOLE_PORT`: the console's port.
    CONSOLE_PORT = "LEAKSCOPE_CONSOLE_PORT", default "6023-6073",
        "the console's port";
    /// `LEAKSCOPE_CONSOLE_PASSWORD`: the console's password.
    CONSOLE_PASSWORD = "LEAKSCOPE_CONSOLE_PASSWORD", default "random",
        "the console's password (an empty one is refused)";
    /// `LEAKSCOPE_APP_CRATES`: the program's own crates.
    APP_CRATES = "LEAKSCOPE_APP_CRATES", default "unset",
        "a,b: the crates that are the program's own code, at least one";
    /// `LEAKSCOPE_WATCH_INTERVAL`: the growth history's interval.
    WATCH_INTERVAL = "LEAKSCOPE_WATCH_INTERVAL", default "10",
        "seconds between points of the growth history behind leaks() (0.1 to 86400, fractions allowed; 0: no history)";
    /// `LEAKSCOPE_HTTP`: the address of the page and the pprof and metrics endpoint.
    HTTP = "LEAKSCOPE_HTTP", default "unset",
        "HOST:PORT: serve /debug/pprof/heap and /metrics there";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_the_eight_words_in_any_case_and_nothing_else() {
        for (text, want) in [
            ("0", false),
            ("false", false),
            ("No", false),
            (" OFF\n", false),
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("On", true),
        ] {
            assert_eq!(parse_flag(text), Some(want), "{text:?}");
        }
        for text in [
            "", " ", "disabled", "2", "-1", "enable", "n", "y", "0x0", "of",
        ] {
            assert_eq!(parse_flag(text), None, "{text:?}");
        }
        assert_eq!(
            parse_names(" app , spider-core,"),
            Some(vec!["app".to_string(), "spider-core".to_string()])
        );
        assert_eq!(parse_names(",,,"), None);
        assert_eq!(parse_names(" "), None);
        let e = CONSOLE.bad("disabled".into(), FLAG_WORDS);
        assert_eq!(
            e.to_string(),
            "LEAKSCOPE_CONSOLE=\"disabled\" is not a flag: 0, 1, false, true, no, yes, off or on"
        );
    }

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
