//! Every limit the console keeps, in one place: what no input, client or
//! line can make it exceed. Reaching one gives the client a clear error (or
//! closes its connection, where noted), never a panic, a hang or a larger
//! process.
//!
//! | limit | default | reached |
//! |---|---:|---|
//! | [`MAX_LINE`] | 64 KiB | the client is told so and the connection closed |
//! | [`MAX_DEPTH`] | 64 | `SyntaxError`: nesting too deep |
//! | [`MAX_CHAIN`] | 1 000 | `SyntaxError`: operator chain too long |
//! | [`MAX_EVAL_DEPTH`] | 256 | `RecursionError` |
//! | [`MAX_VALUE_DEPTH`] | 64 | `RecursionError`: lists nested too deep |
//! | [`MAX_ITEMS`] | 4 000 000 | `MemoryError` |
//! | [`MAX_STRING`] | 1 MiB | `MemoryError` |
//! | [`DEFAULT_SESSION_MEMORY`] | 64 MiB | `MemoryError`; [`Builder::session_memory`] |
//! | [`DEFAULT_VIEWS_MEMORY`] + 25% of live | 256 MiB + 25% | leakscope's own memory, for the whole process: past it, a line that would make a new snapshot or heap graph gets `MemoryError` (saying what to free), in any session; [`Builder::views_memory`] |
//! | [`DEFAULT_LINE_TIMEOUT`] | 10 s | `TimeoutError`, in the middle of a view's work too; [`Builder::line_timeout`], or `line_timeout(secs)` for one session (at most 1 h) |
//! | [`DEFAULT_MAX_SESSIONS`] | 8 | the connection is told so and closed; [`Builder::max_sessions`] |
//! | [`MAX_LOCAL_SESSIONS`] | 2 | sessions on the local socket, apart from the TCP ones: a new connection waits up to [`LOCAL_PLACE_WAIT`] (1 s) for a place, then is told so and closed |
//! | [`DEFAULT_MAX_WAITING`] | 8 | the connection that has waited longest at the login prompts is closed; [`Builder::max_waiting`] |
//! | [`DEFAULT_LOGIN_TIMEOUT`] | 30 s | the connection is closed; [`Builder::login_timeout`] |
//! | [`DEFAULT_IDLE_TIMEOUT`] | 30 min | the session is closed; [`Builder::idle_timeout`] |
//! | [`DEFAULT_WRITE_TIMEOUT`] | 10 s | the client is dropped; [`Builder::write_timeout`] |
//! | [`GUESSES_PER_WINDOW`] per [`GUESS_WINDOW`] | 10 per 60 s | the source address is told to wait until the window passes |
//! | [`MAX_GUESS_SOURCES`] | 4 096 | counts older than the window are forgotten |
//! | [`MAX_HELD`] | 1 MiB | a client typing while a line runs is read no more until it ends |
//! | [`MAX_SUBNEGOTIATION`] | 4 KiB | the client is told so and the connection closed |
//! | [`MAX_ESCAPE`] | 32 bytes | the key sequence ends there |
//!
//! [`Builder::session_memory`]: super::Builder::session_memory
//! [`Builder::views_memory`]: super::Builder::views_memory
//! [`DEFAULT_VIEWS_MEMORY`]: crate::tracker::DEFAULT_VIEWS_MEMORY
//! [`Builder::line_timeout`]: super::Builder::line_timeout
//! [`Builder::max_sessions`]: super::Builder::max_sessions
//! [`Builder::max_waiting`]: super::Builder::max_waiting
//! [`Builder::login_timeout`]: super::Builder::login_timeout
//! [`Builder::idle_timeout`]: super::Builder::idle_timeout
//! [`Builder::write_timeout`]: super::Builder::write_timeout

use std::time::Duration;

/// Longest input line accepted (bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// The deepest nesting of brackets and operators accepted.
pub const MAX_DEPTH: usize = 64;

/// The most operators in one flat chain (`a + b + …`), which nests as deep
/// as it is long once parsed.
pub const MAX_CHAIN: usize = 1000;

/// The deepest evaluation may recurse (operator chains are evaluated in a
/// loop, so only brackets, attributes and calls nest).
pub const MAX_EVAL_DEPTH: usize = 256;

/// The deepest lists and tuples may nest.
pub const MAX_VALUE_DEPTH: usize = 64;

/// The most items a comprehension or list may build (the session's byte
/// budget usually comes first).
pub const MAX_ITEMS: usize = 4_000_000;

/// The longest string a session may build by concatenation (bytes).
pub const MAX_STRING: usize = MAX_LINE * 16;

/// Bytes one session's values may take, written out.
pub const DEFAULT_SESSION_MEMORY: usize = 64 << 20;

/// Wall time one console line may run before it is stopped.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many sessions at once.
pub const DEFAULT_MAX_SESSIONS: usize = 8;

/// Sessions on the process's local socket at once (the operator's way in,
/// counted apart from the TCP sessions).
pub const MAX_LOCAL_SESSIONS: usize = 2;

/// How long a connection to the local socket waits for a session's place
/// when both are taken: a session just left may still be closing (its
/// thread has not yet seen the client go), and only this user can connect.
pub const LOCAL_PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Connections that may wait at the login prompts at once.
pub const DEFAULT_MAX_WAITING: usize = 8;

/// Connections that have not logged in this soon are closed.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Sessions idle this long are closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A client that has not taken output this long is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Wrong passwords one source address may give per [`GUESS_WINDOW`].
pub const GUESSES_PER_WINDOW: u32 = 10;

/// The window wrong passwords are counted over.
pub const GUESS_WINDOW: Duration = Duration::from_secs(60);

/// Addresses whose wrong passwords are remembered at most.
pub const MAX_GUESS_SOURCES: usize = 4096;

/// Bytes a client may send while a line runs before it is read no more
/// until the line ends.
pub const MAX_HELD: usize = 1 << 20;

/// The longest telnet subnegotiation skipped before the input is called
/// bad.
pub const MAX_SUBNEGOTIATION: usize = 4096;

/// The longest terminal key sequence (arrow keys and the like) skipped.
pub const MAX_ESCAPE: usize = 32;
