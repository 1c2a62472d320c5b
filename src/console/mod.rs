//! A telnet console inside the running process (Scrapy's telnet console for
//! Rust services), and attach-by-PID for processes that opened no port
//! (diesel's `dconsole`, made safe).
//!
//! ```no_run
//! # fn main() -> Result<(), leakscope::console::SpawnError> {
//! let console = leakscope::console::Console::builder()
//!     .func("est", || "Execution engine status\n\nrunning : True".to_string())
//!     .with_default_env() // LEAKSCOPE_CONSOLE, _PORT, _PASSWORD
//!     .spawn()?; // logs "Telnet console listening on 127.0.0.1:6023"
//!                // and  "Telnet Password: 3f9c…"
//! // telnet localhost 6023, log in as `leakscope`, then: prefs(), hpy().heap()
//! # drop(console); Ok(()) }
//! ```
//!
//! The console runs on its own OS threads (one listener, one per session),
//! so it answers even when the host's async runtime is stuck. Limits: 8
//! sessions, login within 30 s, 3 password tries (each failure waits a
//! second), lines up to 64 KiB, idle sessions closed, a first line that
//! looks like HTTP closes the connection (a web page in a local browser must
//! not be able to talk to it), a client that stops reading is dropped when
//! a write times out, and a client that vanishes costs nothing.
//!
//! Programs make their own objects and functions reachable by name
//! ([`Builder::var`], [`Builder::func`], [`Builder::function`]); an object
//! is anything that implements [`HostObject`]. leakscope's built-ins
//! (`prefs`, `hpy`, `stats` …) are registered through the same API, in
//! one table that serves lookup, `import` and `help()`.
//!
//! The modules: `server` (the builder and the listener), `local` (the
//! operator's Unix socket), `session` (login and the line loop), `conn`
//! (a TCP or Unix connection), `telnet` (the protocol), `attach` (attach
//! by PID), `client` (the CLI's side of a session), `lang` (parsing), `eval`
//! (evaluation and values), `host` (the names), `builtins` (leakscope's
//! own names), and [`limits`], every bound the console keeps.

#![doc = include_str!("../../docs/console.md")]

mod admission;
pub mod attach;
mod builtins;
mod client;
mod conn;
mod eval;
mod host;
mod lang;
pub mod limits;
mod local;
mod server;
mod session;
mod telnet;

#[cfg(test)]
mod fuzz;

pub use attach::{ATTACH_SIGNAL, enable_attach, enable_attach_on};
pub use client::{Client, Prompt};
pub use conn::Conn;
pub use eval::{Error, ExceptionKind, Value};
pub use host::{Call, Function, HostObject, IntoOutput};
pub use lang::{SyntaxError, SyntaxErrorKind};
pub use limits::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LINE_TIMEOUT, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_WAITING, DEFAULT_SESSION_MEMORY, DEFAULT_WRITE_TIMEOUT, MAX_LINE,
    MAX_LOCAL_SESSIONS,
};
pub use local::local_socket;
pub use server::{Builder, Console, DEFAULT_LAST_PORT, DEFAULT_PORT, DEFAULT_USERNAME, SpawnError};
/// The prompt.
pub const PROMPT: &str = ">>> ";
