//! One telnet session: login, then lines through the shell, with every
//! limit (login deadline, idle timeout, a deadline for stalled writes, HTTP
//! first lines, wrong passwords throttled per source). While a line runs,
//! the client is still read now and then: Ctrl-C stops the line, and so
//! does the client going away.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PROMPT;
use super::admission::{Admission, SessionSlot, WaitTicket};
use super::conn::Conn;
use super::eval::{Limits, Poll, Shell};
use super::host::Host;
use super::limits::{MAX_HELD, MAX_LINE};
use super::telnet::{Decoder, Event, IAC, IP, OPT_ECHO, encode};
use crate::sys::cancel::Stop;

/// What every session of one console shares.
pub(super) struct SessionConfig {
    pub(super) host: Arc<Host>,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) idle_timeout: Duration,
    pub(super) login_timeout: Duration,
    pub(super) write_timeout: Duration,
    pub(super) limits: Limits,
    pub(super) admission: Arc<Admission>,
    pub(super) stop: Arc<AtomicBool>,
}

/// How a session came to be.
pub(super) enum Entry {
    /// A connection that must log in first.
    Login(WaitTicket),
    /// An attached console, with its slot.
    Attached(SessionSlot),
}

/// How long the password prompt waits for the client to answer the echo
/// offer (telnet answers at once; nc never does).
const ECHO_ANSWER: Duration = Duration::from_millis(250);

/// Narrowest and widest terminal tables are fitted to.
const MIN_WIDTH: usize = 40;
const MAX_WIDTH: usize = 400;

#[derive(PartialEq, Eq)]
enum Phase {
    Username,
    Password(String),
    Shell,
}

/// Whether a first line is HTTP (a web page in a local browser talking to
/// us, after DNS rebinding it may send any method): a request line ending
/// in `HTTP/…` or with a path second, or a header line `Name: value`.
fn looks_like_http(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let request = words.len() >= 2
        && (words[words.len() - 1]
            .to_ascii_lowercase()
            .starts_with("http/")
            || (words[1].starts_with('/') && words[0].bytes().all(|b| b.is_ascii_alphabetic())));
    let header = text.split_once(':').is_some_and(|(name, rest)| {
        !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && (rest.is_empty() || rest.starts_with(' '))
    });
    request || header
}

pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the length of the secret.
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= (x ^ a.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

/// Serves `stream` on a session thread of its own, keeping its handle in
/// `sessions` (those that ended are let go). A thread that cannot start
/// drops `entry`, and with it the place it held.
pub(super) fn spawn_session(
    stream: Conn,
    config: Arc<SessionConfig>,
    entry: Entry,
    sessions: &mut Vec<std::thread::JoinHandle<()>>,
) {
    let spawned = crate::tracker::spawn_own(
        std::thread::Builder::new()
            .name("leakscope-session".into())
            .stack_size(8 << 20),
        move || {
            let _ = Session::new(stream, config, entry).run();
        },
    );
    if let Ok(h) = spawned {
        sessions.retain(|h| !h.is_finished());
        sessions.push(h);
    }
}

pub(super) struct Session {
    stream: Conn,
    config: Arc<SessionConfig>,
    decoder: Decoder,
    shell: Shell,
    phase: Phase,
    failures: u32,
    first_line: bool,
    out: Vec<u8>,
    peer: IpAddr,
    /// The place among those waiting to log in, until logged in.
    waiting: Option<WaitTicket>,
    /// The logged-in slot, once logged in.
    slot: Option<SessionSlot>,
    /// What the client sent while a line ran, decoded, to handle next.
    queued: VecDeque<Event>,
    /// When the password prompt is due if the client does not answer the
    /// echo offer before (see [`ECHO_ANSWER`]).
    password_prompt: Option<Instant>,
}

impl Session {
    pub(super) fn new(stream: Conn, config: Arc<SessionConfig>, entry: Entry) -> Self {
        let peer = stream.peer_ip();
        let (phase, waiting, slot) = match entry {
            Entry::Login(ticket) => (Phase::Username, Some(ticket), None),
            Entry::Attached(slot) => (Phase::Shell, None, Some(slot)),
        };
        Session {
            stream,
            decoder: Decoder::new(MAX_LINE),
            shell: Shell::new(config.host.clone(), config.limits),
            config,
            phase,
            failures: 0,
            first_line: true,
            out: Vec::new(),
            peer,
            waiting,
            slot,
            queued: VecDeque::new(),
            password_prompt: None,
        }
    }

    /// The first lines after login: what this is, and what the build
    /// lacks, if anything; as wide as the client's window, when it said.
    fn greet(&mut self) {
        let width = self.shell.width;
        let hello = format!(
            "leakscope console in process {}; help() lists what it knows.",
            std::process::id()
        );
        for line in std::iter::once(hello).chain(crate::symbols::build_info().note()) {
            self.say(&crate::render::table::wrap(&line, width, 0));
            self.say("\n");
        }
    }

    fn say(&mut self, text: &str) {
        encode(text.as_bytes(), &mut self.out);
    }

    /// Sends what was said, within one deadline for the whole of it: a
    /// client that takes a byte now and then is dropped as one that takes
    /// none.
    fn flush(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let deadline = Instant::now() + self.config.write_timeout;
        let mut sent = 0;
        while sent < out.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                ));
            }
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(&out[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(super) fn run(mut self) -> io::Result<()> {
        self.stream.set_nodelay()?;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        let started = Instant::now();
        let mut last_input = Instant::now();
        // Tables fit the client's window when it tells its size (80
        // columns until then, and for clients such as nc that never do).
        let naws = self.decoder.ask_window_size();
        self.out.extend_from_slice(&naws);
        match self.phase {
            Phase::Username => self.say("Username: "),
            _ => {
                self.greet();
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
            if let Some(due) = self.password_prompt
                && (self.decoder.answered(OPT_ECHO) || Instant::now() >= due)
            {
                self.password_prompt = None;
                self.say("Password: ");
                self.flush()?;
            }
            if let Some(ev) = self.queued.pop_front() {
                if !self.handle(ev)? {
                    let _ = self.flush();
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
                self.flush()?;
                continue;
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
            self.flush()?;
            self.queued.extend(events.drain(..));
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
            Event::WindowWidth(cols) => {
                self.shell.width = usize::from(cols).clamp(MIN_WIDTH, MAX_WIDTH);
                Ok(true)
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
                // Echo off before the prompt, and the prompt once the
                // client has agreed (or has had time to), so that nothing
                // typed after the prompt is echoed.
                let echo_off = self.decoder.set_echo(true);
                self.out.extend_from_slice(&echo_off);
                self.password_prompt = Some(Instant::now() + ECHO_ANSWER);
            }
            Phase::Password(user) => {
                self.password_prompt = None;
                let echo_on = self.decoder.set_echo(false);
                self.out.extend_from_slice(&echo_on);
                self.say("\n");
                if let Some(wait) = self.config.admission.guess_wait(self.peer) {
                    self.say(&format!(
                        "Too many wrong passwords from this address; try again in {} s.\n",
                        wait.as_secs().max(1)
                    ));
                    return Ok(false);
                }
                let ok = same(user.as_bytes(), self.config.username.as_bytes())
                    & same(&line, self.config.password.as_bytes());
                if ok {
                    let Some(slot) = self.config.admission.session() else {
                        self.say("Too many console sessions; try again later.\n");
                        return Ok(false);
                    };
                    self.slot = Some(slot);
                    self.waiting = None;
                    self.greet();
                    self.say(PROMPT);
                } else {
                    self.config.admission.wrong_guess(self.peer);
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
                let shown = self.run_line(&text);
                if self.shell.gone {
                    return Ok(false);
                }
                self.say(&shown);
                self.say(PROMPT);
            }
        }
        Ok(true)
    }

    /// Runs one line through the shell, reading the client now and then
    /// meanwhile. A panic in leakscope's own code is reported, and the
    /// session goes on.
    fn run_line(&mut self, text: &str) -> String {
        let held = Arc::new(Mutex::new(Vec::new()));
        let poll: Poll = match self.stream.try_clone() {
            Ok(stream) => {
                let held = held.clone();
                Box::new(move || probe(&stream, &held))
            }
            Err(_) => Box::new(|| None),
        };
        let shell = &mut self.shell;
        let shown =
            catch_unwind(AssertUnwindSafe(|| shell.run_polled(text, poll))).unwrap_or_else(|_| {
                "SystemError: the line failed inside leakscope; the session goes on.\n".into()
            });
        // What came meanwhile is decoded now, so that its negotiation
        // answers (the timing mark of a Ctrl-C above all: a telnet client
        // throws away all output until it has it) go out before the line's
        // output; its lines wait their turn.
        let held = std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
        let mut events = Vec::new();
        self.decoder.feed(&held, &mut events);
        let replies = self.decoder.take_replies();
        self.out.extend_from_slice(&replies);
        let mut events = VecDeque::from(events);
        if shown.ends_with("KeyboardInterrupt\n")
            && let Some(i) = events.iter().position(|e| *e == Event::Interrupt)
        {
            // The Ctrl-C that stopped the line is answered by its output.
            events.remove(i);
        }
        self.queued.extend(events);
        shown
    }
}

/// Whether bytes from a client hold a Ctrl-C (`IAC IP`, or a raw 0x03).
fn has_interrupt(bytes: &[u8]) -> bool {
    bytes.contains(&3) || bytes.windows(2).any(|w| w == [IAC, IP])
}

/// Reads what the client sent, without waiting: Ctrl-C asks the line to
/// stop, an orderly or abrupt close says the client is gone. What was read
/// is kept for the decoder.
fn probe(stream: &Conn, held: &Mutex<Vec<u8>>) -> Option<Stop> {
    let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
    if held.len() >= MAX_HELD {
        return None;
    }
    let mut buf = [0u8; 4096];
    // SAFETY: recv writes at most `buf.len()` bytes into our buffer;
    // MSG_DONTWAIT makes it return at once when nothing is there.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return Some(Stop::Gone);
    }
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
            _ => Some(Stop::Gone),
        };
    }
    let tail = held.len().saturating_sub(1);
    held.extend_from_slice(&buf[..n as usize]);
    has_interrupt(&held[tail..]).then_some(Stop::Interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_first_lines_whatever_the_method_and_case() {
        for line in [
            "GET / HTTP/1.1",
            "get / HTTP/1.1",
            "PROPFIND / HTTP/1.1",
            "QUERY /x HTTP/1.0",
            "leakscope / HTTP/1.1",
            "BREW /pot",
            "Host: 127.0.0.1:6023",
            "content-type: text/plain",
            "Origin:",
        ] {
            assert!(looks_like_http(line.as_bytes()), "{line}");
        }
        for line in ["leakscope", "admin", "a:b", "hpy().heap()", "x = 1"] {
            assert!(!looks_like_http(line.as_bytes()), "{line}");
        }
    }
}
