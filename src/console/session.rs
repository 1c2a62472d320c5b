//! One telnet session: login, then lines through the shell, with every
//! limit (login deadline, idle timeout, stalled writes, HTTP first lines).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::eval::Shell;
use super::server::SessionConfig;
use super::telnet::{Decoder, Event, encode};
use super::{MAX_LINE, PROMPT};

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

pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the length of the secret.
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= (x ^ a.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

pub(super) struct Session<'a> {
    stream: TcpStream,
    config: &'a SessionConfig,
    decoder: Decoder,
    shell: Shell,
    phase: Phase,
    failures: u32,
    first_line: bool,
    out: Vec<u8>,
}

impl<'a> Session<'a> {
    pub(super) fn new(stream: TcpStream, config: &'a SessionConfig, login: bool) -> Self {
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

    pub(super) fn run(mut self) -> io::Result<()> {
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
