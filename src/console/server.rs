//! The console's listener: the builder, the port, and a thread per session.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::admission::Admission;
use super::eval::{Error, Limits, Value};
use super::host::{Call, Entry, Function, Host, HostObject, IntoOutput, Origin, ProgramObject};
use super::limits::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LINE_TIMEOUT, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_WAITING, DEFAULT_SESSION_MEMORY, DEFAULT_WRITE_TIMEOUT,
};
use super::session::{Entry as SessionEntry, SessionConfig, spawn_session};

/// The first port tried (Scrapy's).
pub const DEFAULT_PORT: u16 = 6023;
/// The last port tried.
pub const DEFAULT_LAST_PORT: u16 = 6073;
/// The username sessions give.
pub const DEFAULT_USERNAME: &str = "leakscope";

/// Why a console could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A variable read by [`Builder::with_default_env`] has a value that
    /// cannot be used.
    #[error(transparent)]
    BadVariable(#[from] crate::config::BadValue),
    /// The password is empty (or only blanks): anyone could log in.
    #[error(
        "the console's password is empty, so anyone could log in: set a password \
         or leave LEAKSCOPE_CONSOLE_PASSWORD unset for a random one"
    )]
    EmptyPassword,
    /// No port of the range could be bound.
    #[error("no free port in {first}..={last}: {source}")]
    Bind {
        /// The first port tried.
        first: u16,
        /// The last port tried.
        last: u16,
        /// The last port's error.
        #[source]
        source: io::Error,
    },
    /// The listener thread could not be started.
    #[error("cannot start the console's thread: {0}")]
    Thread(#[source] io::Error),
}

/// Configures and starts a [`Console`]. Its settings are its own: the
/// environment applies only through [`Builder::with_default_env`].
pub struct Builder {
    pub(super) host: Host,
    /// `LEAKSCOPE_CONSOLE=off`: spawn nothing.
    disabled: bool,
    /// A variable [`Builder::with_default_env`] could not use.
    env_error: Option<SpawnError>,
    ports: (u16, u16),
    username: String,
    password: Option<String>,
    pub(super) idle_timeout: Duration,
    pub(super) login_timeout: Duration,
    pub(super) write_timeout: Duration,
    max_sessions: usize,
    max_waiting: usize,
    pub(super) limits: Limits,
    /// The fixed part of the views' budget, when set.
    views_memory: Option<u64>,
}

/// A running console (or a disabled one, with no address). Dropping it
/// stops the listener and ends the sessions.
pub struct Console {
    addr: Option<SocketAddr>,
    password: String,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    /// The local socket (see [`local_socket`](super::local_socket)), when
    /// it could be made.
    local: Option<super::local::LocalConsole>,
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: getrandom fills the buffer we own, up to its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Never without entropy: fall back to the clock and the address of
        // a stack variable, hashed.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (&buf as *const _ as u64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed
                .rotate_left(i as u32 * 8)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                >> 56) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Console {
    /// A builder with Scrapy's defaults: 127.0.0.1, the first free port of
    /// 6023..=6073, user `leakscope`, a random password.
    pub fn builder() -> Builder {
        Builder {
            host: Host::with_builtins(),
            disabled: false,
            env_error: None,
            ports: (DEFAULT_PORT, DEFAULT_LAST_PORT),
            username: DEFAULT_USERNAME.into(),
            password: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_waiting: DEFAULT_MAX_WAITING,
            limits: Limits {
                line_time: DEFAULT_LINE_TIMEOUT,
                session_bytes: DEFAULT_SESSION_MEMORY,
            },
            views_memory: None,
        }
    }

    /// Where it listens (`None` when disabled by `LEAKSCOPE_CONSOLE=off`).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The password sessions must give.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The Unix socket where this process's own user gets a session with
    /// no password (`leakscope connect --local PID`), when it listens.
    pub fn local_socket(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(|l| l.path())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.local.take());
        if let Some(addr) = self.addr {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
    }
}

impl Builder {
    /// Makes `value`'s attributes and methods reachable as `name`.
    pub fn var(mut self, name: &str, value: impl HostObject) -> Self {
        self.host.insert(
            name,
            Entry {
                value: Value::object(ProgramObject(value)),
                help: None,
                origin: Origin::Program,
            },
        );
        self
    }

    /// Makes `f` callable as `name()`, with no arguments.
    pub fn func<T: IntoOutput>(
        self,
        name: &str,
        f: impl Fn() -> T + Send + Sync + 'static,
    ) -> Self {
        self.function(name, move |call| {
            call.arity(0)?;
            f().into_output()
        })
    }

    /// Makes `f` callable as `name(…)`, with the call's arguments.
    ///
    /// ```
    /// use leakscope::console::{Console, Error, ExceptionKind, Value};
    ///
    /// let builder = Console::builder().function("double", |call| match call.args() {
    ///     [Value::Int(n)] => Ok(Value::from(n.saturating_mul(2))),
    ///     _ => Err(Error::new(ExceptionKind::TypeError, "double(n) takes an integer")),
    /// });
    /// # drop(builder);
    /// ```
    pub fn function(
        mut self,
        name: &str,
        f: impl Fn(&Call<'_>) -> Result<Value, Error> + Send + Sync + 'static,
    ) -> Self {
        self.host.insert(
            name,
            Entry {
                value: Value::Function(Arc::new(Function::new(name, move |call| {
                    crate::tracker::as_program(|| f(call))
                }))),
                help: None,
                origin: Origin::Program,
            },
        );
        self
    }

    /// Applies the console's environment variables (see
    /// [`config`](crate::config)): `LEAKSCOPE_CONSOLE=off` (or `0`, `no`,
    /// `false`) makes [`spawn`](Self::spawn) start nothing,
    /// `LEAKSCOPE_CONSOLE_PORT` and `LEAKSCOPE_CONSOLE_PASSWORD` replace
    /// the port and password, and `LEAKSCOPE_APP_CRATES` is checked, since
    /// the console's views name sites by it. Settings made after this call
    /// win over the environment; a value that cannot be used makes `spawn`
    /// fail with [`SpawnError::BadVariable`].
    pub fn with_default_env(mut self) -> Self {
        use crate::config;
        let mut bad = Vec::new();
        match config::CONSOLE.flag() {
            Ok(on) => self.disabled |= on == Some(false),
            Err(e) => bad.push(e),
        }
        if let Err(e) = config::APP_CRATES.names() {
            bad.push(e);
        }
        if let Some(p) = config::CONSOLE_PORT.value() {
            match p.trim().parse() {
                Ok(port) => self.ports = (port, port),
                Err(_) => bad.push(config::CONSOLE_PORT.bad(p, "a port number")),
            }
        }
        if let Some(e) = bad.into_iter().next() {
            self.env_error.get_or_insert(SpawnError::BadVariable(e));
        }
        if let Some(p) = config::CONSOLE_PASSWORD.value() {
            self.password = Some(p);
        }
        self
    }

    /// Listens on exactly this port (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.ports = (port, port);
        self
    }

    /// Listens on the first free port of this range (default
    /// [`DEFAULT_PORT`] to [`DEFAULT_LAST_PORT`]).
    pub fn port_range(mut self, first: u16, last: u16) -> Self {
        self.ports = (first, last.max(first));
        self
    }

    /// The username sessions must give (default [`DEFAULT_USERNAME`]).
    pub fn username(mut self, username: &str) -> Self {
        self.username = username.to_string();
        self
    }

    /// The password (default: 8 random bytes as 16 hex digits); an empty
    /// one makes [`spawn`](Self::spawn) fail with
    /// [`SpawnError::EmptyPassword`].
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Closes sessions idle this long (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Closes connections that have not logged in this soon (default
    /// [`DEFAULT_LOGIN_TIMEOUT`]).
    pub fn login_timeout(mut self, t: Duration) -> Self {
        self.login_timeout = t;
        self
    }

    /// Drops a client that has not taken our output this long (default
    /// [`DEFAULT_WRITE_TIMEOUT`]).
    pub fn write_timeout(mut self, t: Duration) -> Self {
        self.write_timeout = t;
        self
    }

    /// At most this many logged-in sessions at once (default
    /// [`DEFAULT_MAX_SESSIONS`]).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// At most this many connections waiting at the login prompts (default
    /// [`DEFAULT_MAX_WAITING`]); when one more comes, the one that has waited longest is closed.
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.max_waiting = n.max(1);
        self
    }

    /// Stops a console line that runs longer than this (default
    /// [`DEFAULT_LINE_TIMEOUT`]) with `TimeoutError`.
    pub fn line_timeout(mut self, t: Duration) -> Self {
        self.limits.line_time = t;
        self
    }

    /// The fixed part of the process-wide budget of leakscope's own memory
    /// for views (default [`DEFAULT_VIEWS_MEMORY`], plus a quarter of the
    /// program's live bytes): past the budget, a line that would make a new
    /// snapshot or heap graph fails with `MemoryError`, whatever session
    /// asks. Set for the whole process when the console spawns.
    ///
    /// [`DEFAULT_VIEWS_MEMORY`]: crate::tracker::DEFAULT_VIEWS_MEMORY
    pub fn views_memory(mut self, bytes: u64) -> Self {
        self.views_memory = Some(bytes);
        self
    }

    /// Bytes one session's values may take, written out (default
    /// [`DEFAULT_SESSION_MEMORY`]);
    /// beyond, a line fails with `MemoryError`.
    pub fn session_memory(mut self, bytes: usize) -> Self {
        self.limits.session_bytes = bytes;
        self
    }

    fn bind(&self) -> Result<TcpListener, SpawnError> {
        let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no port to try");
        for port in self.ports.0..=self.ports.1 {
            match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
                Ok(l) => return Ok(l),
                Err(e) => last = e,
            }
        }
        Err(SpawnError::Bind {
            first: self.ports.0,
            last: self.ports.1,
            source: last,
        })
    }

    /// Binds and starts the listener thread; logs where it listens and the
    /// password. A builder disabled by [`with_default_env`](Self::with_default_env)
    /// gives a console with no address.
    pub fn spawn(mut self) -> Result<Console, SpawnError> {
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(e) = self.env_error.take() {
            return Err(e);
        }
        if self.disabled {
            return Ok(Console {
                addr: None,
                password: String::new(),
                stop,
                listener: None,
                local: None,
            });
        }
        let password = self.password.clone().unwrap_or_else(|| random_hex(8));
        if password.trim().is_empty() {
            return Err(SpawnError::EmptyPassword);
        }
        let listener = self.bind()?;
        let addr = listener.local_addr().map_err(SpawnError::Thread)?;
        if let Some(bytes) = self.views_memory {
            crate::tracker::set_views_memory(bytes);
        }
        let config = Arc::new(SessionConfig {
            host: Arc::new(std::mem::take(&mut self.host)),
            username: self.username.clone(),
            password: password.clone(),
            idle_timeout: self.idle_timeout,
            login_timeout: self.login_timeout,
            write_timeout: self.write_timeout,
            limits: self.limits,
            admission: Admission::new(self.max_sessions, self.max_waiting),
            stop: stop.clone(),
        });
        // The operator's way in, which no password guessing can lock. A
        // console without it still serves TCP, and says why.
        let local = match super::local::start(&config) {
            Ok(l) => Some(l),
            Err(e) => {
                crate::sys::operator::warn(&format!(
                    "leakscope: no local console socket ({e}); the TCP console still listens"
                ));
                None
            }
        };
        let thread = crate::tracker::spawn_own(
            std::thread::Builder::new().name("leakscope-console".into()),
            move || listen(listener, config),
        )
        .map_err(SpawnError::Thread)?;
        // The history behind leaks(): watching from the start, it has
        // something to judge by the time anyone asks.
        crate::leaks::start();
        crate::sys::operator::announce(&format!("Telnet console listening on {addr}"));
        crate::sys::operator::announce(&format!("Telnet Password: {password}"));
        if local.is_some() {
            crate::sys::operator::announce(&format!(
                "This user, with no password: leakscope connect --local {}",
                std::process::id()
            ));
        }
        Ok(Console {
            addr: Some(addr),
            password,
            stop,
            listener: Some(thread),
            local,
        })
    }
}

fn listen(listener: TcpListener, config: Arc<SessionConfig>) {
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if config.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        if config.admission.full() {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(b"Too many console sessions; try again later.\r\n");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let ticket = config.admission.wait(&stream);
        spawn_session(
            stream.into(),
            config.clone(),
            SessionEntry::Login(ticket),
            &mut sessions,
        );
    }
    for h in sessions {
        let _ = h.join();
    }
}
