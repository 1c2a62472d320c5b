//! A telnet console inside the running process (Scrapy's telnet console for
//! Rust services), and attach-by-PID for processes that opened no port
//! (diesel's `dconsole`, made safe).
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let console = leakscope::console::Console::builder()
//!     .func("est", || "Execution engine status\n\nrunning : True".to_string())
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

mod lang;
mod shell;
mod telnet;

pub use lang::{SyntaxError, parse};
pub use shell::{Shell, Value};
pub use telnet::{Decoder, Event, MAX_SUBNEGOTIATION, encode};

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest input line accepted (bytes).
pub const MAX_LINE: usize = 64 * 1024;
/// The prompt.
pub const PROMPT: &str = ">>> ";

/// Something of the host's reachable from the console (`engine.pause()`).
pub trait HostObject: Send + Sync + 'static {
    /// A data attribute (`engine.paused`), or `None` when there is none by
    /// that name (then `name` is looked up as a method).
    fn attribute(&self, name: &str) -> Option<serde_json::Value> {
        let _ = name;
        None
    }

    /// Calls a method. A string result is shown as text; other values as
    /// values; `Err` is shown as the error.
    fn call(&self, method: &str, args: &[serde_json::Value]) -> Result<serde_json::Value, String>;

    /// Method names, for `help()`.
    fn methods(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// What a host function may return: text (shown as is), a value, nothing,
/// or a `Result` whose error is shown as the error.
pub trait IntoOutput {
    /// Converts into the console's value.
    fn into_output(self) -> Result<serde_json::Value, String>;
}

impl IntoOutput for String {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self.into())
    }
}

impl IntoOutput for &str {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self.into())
    }
}

impl IntoOutput for () {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(serde_json::Value::Null)
    }
}

impl IntoOutput for serde_json::Value {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self)
    }
}

impl IntoOutput for bool {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self.into())
    }
}

impl IntoOutput for i64 {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self.into())
    }
}

impl IntoOutput for u64 {
    fn into_output(self) -> Result<serde_json::Value, String> {
        Ok(self.into())
    }
}

impl<T: IntoOutput, E: std::fmt::Display> IntoOutput for Result<T, E> {
    fn into_output(self) -> Result<serde_json::Value, String> {
        self.map_err(|e| e.to_string())
            .and_then(IntoOutput::into_output)
    }
}

type HostCall = dyn Fn(&[serde_json::Value]) -> Result<serde_json::Value, String> + Send + Sync;

/// A function of the host's, callable from the console.
pub struct HostFunc {
    name: String,
    call: Box<HostCall>,
}

/// The host's names, shared by every session.
#[derive(Default)]
pub struct Host {
    vars: HashMap<String, Arc<dyn HostObject>>,
    funcs: HashMap<String, Arc<HostFunc>>,
}

/// Configures and starts a [`Console`].
pub struct Builder {
    host: Host,
    ports: (u16, u16),
    username: String,
    password: Option<String>,
    idle_timeout: Duration,
    login_timeout: Duration,
    write_timeout: Duration,
    max_sessions: usize,
}

/// A running console (or a disabled one, with no address). Dropping it
/// stops the listener and ends the sessions.
pub struct Console {
    addr: Option<SocketAddr>,
    password: String,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

fn random_hex(bytes: usize) -> String {
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

fn announce(message: &str) {
    if log::max_level() == log::LevelFilter::Off {
        eprintln!("{message}");
    } else {
        log::info!("{message}");
    }
}

impl Console {
    /// A builder with Scrapy's defaults: 127.0.0.1, the first free port of
    /// 6023..=6073, user `leakscope`, a random password.
    pub fn builder() -> Builder {
        Builder {
            host: Host::default(),
            ports: (6023, 6073),
            username: "leakscope".into(),
            password: None,
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_sessions: 8,
        }
    }

    /// Where it listens (`None` when disabled by `LEAKSCOPE_CONSOLE=0`).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The password sessions must give.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
        self.host.vars.insert(name.to_string(), Arc::new(value));
        self
    }

    /// Makes `f` callable as `name()`.
    pub fn func<T: IntoOutput>(
        mut self,
        name: &str,
        f: impl Fn() -> T + Send + Sync + 'static,
    ) -> Self {
        let func = HostFunc {
            name: name.to_string(),
            call: Box::new(move |args| {
                if !args.is_empty() {
                    return Err("TypeError: this function takes no arguments".to_string());
                }
                f().into_output()
            }),
        };
        self.host.funcs.insert(name.to_string(), Arc::new(func));
        self
    }

    /// Listens on exactly this port (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.ports = (port, port);
        self
    }

    /// Listens on the first free port of this range.
    pub fn port_range(mut self, first: u16, last: u16) -> Self {
        self.ports = (first, last.max(first));
        self
    }

    /// The username sessions must give.
    pub fn username(mut self, username: &str) -> Self {
        self.username = username.to_string();
        self
    }

    /// The password (default: 8 random bytes as 16 hex digits).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Closes sessions idle this long (default 30 minutes).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Closes connections that have not logged in this soon (default 30 s).
    pub fn login_timeout(mut self, t: Duration) -> Self {
        self.login_timeout = t;
        self
    }

    /// Drops a client that has not taken our output this long (default 10 s).
    pub fn write_timeout(mut self, t: Duration) -> Self {
        self.write_timeout = t;
        self
    }

    /// At most this many sessions at once (default 8).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    fn bind(&self) -> io::Result<TcpListener> {
        let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no port to try");
        for port in self.ports.0..=self.ports.1 {
            match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
                Ok(l) => return Ok(l),
                Err(e) => last = e,
            }
        }
        Err(io::Error::new(
            last.kind(),
            format!(
                "no free port in {}..={}: {last}",
                self.ports.0, self.ports.1
            ),
        ))
    }

    /// Binds and starts the listener thread; logs where it listens and the
    /// password. `LEAKSCOPE_CONSOLE=0` gives a disabled console;
    /// `LEAKSCOPE_CONSOLE_PORT` and `LEAKSCOPE_CONSOLE_PASSWORD` override the
    /// port and password.
    pub fn spawn(mut self) -> io::Result<Console> {
        let stop = Arc::new(AtomicBool::new(false));
        if std::env::var("LEAKSCOPE_CONSOLE").is_ok_and(|v| v == "0") {
            return Ok(Console {
                addr: None,
                password: String::new(),
                stop,
                listener: None,
            });
        }
        if let Ok(p) = std::env::var("LEAKSCOPE_CONSOLE_PORT") {
            let port = p.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("LEAKSCOPE_CONSOLE_PORT={p} is not a port number"),
                )
            })?;
            self.ports = (port, port);
        }
        if let Ok(p) = std::env::var("LEAKSCOPE_CONSOLE_PASSWORD") {
            self.password = Some(p);
        }
        let password = self.password.clone().unwrap_or_else(|| random_hex(8));
        let listener = self.bind()?;
        let addr = listener.local_addr()?;
        let config = Arc::new(Config {
            host: Arc::new(std::mem::take(&mut self.host)),
            username: self.username.clone(),
            password: password.clone(),
            idle_timeout: self.idle_timeout,
            login_timeout: self.login_timeout,
            write_timeout: self.write_timeout,
            max_sessions: self.max_sessions,
            sessions: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let thread = std::thread::Builder::new()
            .name("leakscope-console".into())
            .spawn(move || listen(listener, config))?;
        announce(&format!("Telnet console listening on {addr}"));
        announce(&format!("Telnet Password: {password}"));
        Ok(Console {
            addr: Some(addr),
            password,
            stop,
            listener: Some(thread),
        })
    }
}

struct Config {
    host: Arc<Host>,
    username: String,
    password: String,
    idle_timeout: Duration,
    login_timeout: Duration,
    write_timeout: Duration,
    max_sessions: usize,
    sessions: AtomicUsize,
    stop: Arc<AtomicBool>,
}

fn listen(listener: TcpListener, config: Arc<Config>) {
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if config.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        if config.sessions.load(Ordering::Relaxed) >= config.max_sessions {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(b"Too many console sessions; try again later.\r\n");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        config.sessions.fetch_add(1, Ordering::Relaxed);
        let session_config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("leakscope-session".into())
            .stack_size(8 << 20)
            .spawn(move || {
                let _ = Session::new(stream, &session_config, true).run();
                session_config.sessions.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(h) => {
                sessions.retain(|h| !h.is_finished());
                sessions.push(h);
            }
            Err(_) => {
                config.sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    for h in sessions {
        let _ = h.join();
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    Username,
    Password(String),
    Shell,
}

/// Whether a first line is an HTTP request (a browser talking to us).
fn looks_like_http(line: &[u8]) -> bool {
    const STARTS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    STARTS.iter().any(|s| line.starts_with(s)) || line.to_ascii_lowercase().starts_with(b"host:")
}

fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the length of the secret.
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= (x ^ a.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

struct Session<'a> {
    stream: TcpStream,
    config: &'a Config,
    decoder: Decoder,
    shell: Shell,
    phase: Phase,
    failures: u32,
    first_line: bool,
    out: Vec<u8>,
}

impl<'a> Session<'a> {
    fn new(stream: TcpStream, config: &'a Config, login: bool) -> Self {
        Session {
            stream,
            config,
            decoder: Decoder::new(MAX_LINE),
            shell: Shell::new(config.host.clone()),
            phase: if login { Phase::Username } else { Phase::Shell },
            failures: 0,
            first_line: true,
            out: Vec::new(),
        }
    }

    fn say(&mut self, text: &str) {
        encode(text.as_bytes(), &mut self.out);
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.stream.write_all(&out)?;
        }
        Ok(())
    }

    fn run(mut self) -> io::Result<()> {
        self.stream.set_nodelay(true)?;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        self.stream
            .set_write_timeout(Some(self.config.write_timeout))?;
        let started = Instant::now();
        let mut last_input = Instant::now();
        match self.phase {
            Phase::Username => self.say("Username: "),
            _ => {
                self.say("leakscope console; help() lists what it knows.\n");
                self.say(PROMPT);
            }
        }
        self.flush()?;
        let mut buf = [0u8; 4096];
        let mut events = Vec::new();
        loop {
            if self.config.stop.load(Ordering::Relaxed) {
                self.say("\nThe console is shutting down.\n");
                let _ = self.flush();
                return Ok(());
            }
            if self.phase != Phase::Shell && started.elapsed() > self.config.login_timeout {
                self.say("\nLogin timed out.\n");
                let _ = self.flush();
                return Ok(());
            }
            if last_input.elapsed() > self.config.idle_timeout {
                self.say("\nIdle too long; closing.\n");
                let _ = self.flush();
                return Ok(());
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            last_input = Instant::now();
            self.decoder.feed(&buf[..n], &mut events);
            let replies = self.decoder.take_replies();
            self.out.extend_from_slice(&replies);
            for ev in events.drain(..) {
                if !self.handle(ev)? {
                    let _ = self.flush();
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            self.flush()?;
        }
    }

    /// Handles one event; false ends the session.
    fn handle(&mut self, ev: Event) -> io::Result<bool> {
        match ev {
            Event::Line(line) => {
                if std::mem::replace(&mut self.first_line, false) && looks_like_http(&line) {
                    return Ok(false);
                }
                self.line(line)
            }
            Event::Interrupt => {
                if self.phase == Phase::Shell {
                    self.say("\nKeyboardInterrupt\n");
                    self.say(PROMPT);
                }
                Ok(true)
            }
            Event::EndOfFile => {
                self.say("\n");
                Ok(false)
            }
            Event::LineTooLong => {
                self.say(&format!(
                    "\nerror: line longer than {MAX_LINE} bytes; closing.\n"
                ));
                Ok(false)
            }
            Event::BadSubnegotiation => {
                self.say("\nerror: telnet subnegotiation too long; closing.\n");
                Ok(false)
            }
        }
    }

    fn line(&mut self, line: Vec<u8>) -> io::Result<bool> {
        match std::mem::replace(&mut self.phase, Phase::Shell) {
            Phase::Username => {
                let user = String::from_utf8_lossy(&line).trim().to_string();
                self.phase = Phase::Password(user);
                self.say("Password: ");
                let echo_off = self.decoder.set_echo(true);
                self.out.extend_from_slice(&echo_off);
            }
            Phase::Password(user) => {
                let echo_on = self.decoder.set_echo(false);
                self.out.extend_from_slice(&echo_on);
                self.say("\n");
                let ok = same(user.as_bytes(), self.config.username.as_bytes())
                    & same(&line, self.config.password.as_bytes());
                if ok {
                    self.say("leakscope console; help() lists what it knows.\n");
                    self.say(PROMPT);
                } else {
                    self.failures += 1;
                    self.flush()?;
                    // Each wrong guess costs the guesser a second.
                    std::thread::sleep(Duration::from_secs(1));
                    if self.failures >= 3 {
                        self.say("Login failed; closing.\n");
                        return Ok(false);
                    }
                    self.say("Login failed.\nUsername: ");
                    self.phase = Phase::Username;
                }
            }
            Phase::Shell => {
                let text = match std::str::from_utf8(&line) {
                    Ok(t) => t.trim_end().to_string(),
                    Err(e) => {
                        self.say(&format!(
                            "SyntaxError: input is not UTF-8 (byte {})\n",
                            e.valid_up_to()
                        ));
                        self.say(PROMPT);
                        return Ok(true);
                    }
                };
                if matches!(text.trim(), "exit()" | "quit()" | "exit" | "quit") {
                    return Ok(false);
                }
                let shown = self.shell.run(&text);
                self.say(&shown);
                self.say(PROMPT);
            }
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------
// Attach by PID

/// The signal `leakscope attach` sends by default.
pub const ATTACH_SIGNAL: i32 = libc::SIGUSR2;

/// The per-user directory holding rendezvous files: `$XDG_RUNTIME_DIR/
/// leakscope` when set, else `/tmp/leakscope-<uid>`; created 0700.
pub fn rendezvous_dir() -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("leakscope"),
        _ => std::path::PathBuf::from(format!("/tmp/leakscope-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(dir)
}

/// The rendezvous file for process `pid`.
pub fn rendezvous_file(pid: u32) -> io::Result<std::path::PathBuf> {
    Ok(rendezvous_dir()?.join(format!("{pid}.attach")))
}

/// Reads and checks a rendezvous file: owned by this user, readable by no
/// one else, holding `PORT TOKEN`.
pub fn read_rendezvous(path: &std::path::Path) -> io::Result<(u16, String)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !meta.is_file() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private file of this user; refused",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)?;
    let mut parts = text.split_whitespace();
    let port = parts.next().and_then(|p| p.parse().ok());
    let token = parts.next().filter(|t| t.len() >= 16).map(str::to_string);
    match (port, token) {
        (Some(port), Some(token)) => Ok((port, token)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed rendezvous file",
        )),
    }
}

/// Writes a rendezvous file (0600) for `pid`: `PORT TOKEN`.
pub fn write_rendezvous(pid: u32, port: u16, token: &str) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = rendezvous_file(pid)?;
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{port} {token}")?;
    Ok(path)
}

/// A fresh one-time token.
pub fn new_token() -> String {
    random_hex(16)
}

/// Lets `leakscope attach PID` open a console in this process: a signal
/// handler (signal-hook; nothing allocates in the handler) wakes a thread
/// that reads this process's rendezvous file (it must belong to this user
/// and be private), connects to the port it names on 127.0.0.1, presents
/// the token and serves one session with `host`'s names.
pub fn enable_attach(host: Builder) -> io::Result<()> {
    enable_attach_on(ATTACH_SIGNAL, host)
}

/// [`enable_attach`] with another signal.
pub fn enable_attach_on(signal: i32, mut host: Builder) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal])?;
    let config = Arc::new(Config {
        host: Arc::new(std::mem::take(&mut host.host)),
        username: String::new(),
        password: String::new(),
        idle_timeout: host.idle_timeout,
        login_timeout: host.login_timeout,
        write_timeout: host.write_timeout,
        max_sessions: 1,
        sessions: AtomicUsize::new(0),
        stop: Arc::new(AtomicBool::new(false)),
    });
    std::thread::Builder::new()
        .name("leakscope-attach".into())
        .stack_size(8 << 20)
        .spawn(move || {
            for _ in signals.forever() {
                if let Err(e) = attach_once(&config) {
                    announce(&format!("leakscope: attach refused: {e}"));
                }
            }
        })?;
    Ok(())
}

fn attach_once(config: &Config) -> io::Result<()> {
    let path = rendezvous_file(std::process::id())?;
    let (port, token) = read_rendezvous(&path)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("LEAKSCOPE-ATTACH {token}\r\n").as_bytes())?;
    Session::new(stream, config, false).run()
}

/// The CLI's side of attach: waits on `listener` (up to `timeout`) for the
/// process to connect and present `token`. A peer with a wrong or missing
/// token is dropped and waiting goes on, so nobody who merely saw the port
/// can stand in for the process.
pub fn accept_attached(
    listener: &TcpListener,
    token: &str,
    timeout: Duration,
) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let expected = format!("LEAKSCOPE-ATTACH {token}");
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while line.len() < 200 && !line.ends_with(b"\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => line.push(byte[0]),
                        _ => break,
                    }
                }
                if same(
                    line.strip_suffix(b"\r\n").unwrap_or(&line),
                    expected.as_bytes(),
                ) {
                    stream.set_read_timeout(None)?;
                    return Ok(stream);
                }
                let _ = stream.shutdown(Shutdown::Both);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the process did not connect back (did it call leakscope::console::enable_attach()?)",
    ))
}
