//! The client's side of a console session, for `leakscope connect` and
//! `leakscope attach`: server output with the telnet commands taken out,
//! split at the prompts, and lines sent as a telnet client sends them.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use super::PROMPT;
use super::telnet::{CTRL_C, CTRL_D, OutputFilter, encode};

/// What the server is waiting for, once its output pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A console line (`>>> `).
    Line,
    /// `Username: `
    Username,
    /// `Password: `
    Password,
    /// The server closed the session.
    Closed,
}

/// One session with a console, as a client.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    filter: OutputFilter,
    text: Vec<u8>,
}

const PROMPTS: [(&str, Prompt); 3] = [
    (PROMPT, Prompt::Line),
    ("Username: ", Prompt::Username),
    ("Password: ", Prompt::Password),
];

impl Client {
    /// A client over a connected stream.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            filter: OutputFilter::default(),
            text: Vec::new(),
        })
    }

    /// Copies the server's text to `out` until it prompts (the prompt
    /// itself is not copied: a line editor shows its own) or closes.
    /// Complete lines are copied as they come.
    pub fn read_until_prompt(&mut self, out: &mut impl Write) -> io::Result<Prompt> {
        let mut buf = [0u8; 4096];
        loop {
            for (prompt, kind) in PROMPTS {
                if self.text.ends_with(prompt.as_bytes()) {
                    self.text.truncate(self.text.len() - prompt.len());
                    out.write_all(&self.text)?;
                    out.flush()?;
                    self.text.clear();
                    return Ok(kind);
                }
            }
            if let Some(i) = self.text.iter().rposition(|&b| b == b'\n') {
                out.write_all(&self.text[..=i])?;
                out.flush()?;
                self.text.drain(..=i);
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => 0,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                out.write_all(&self.text)?;
                out.flush()?;
                self.text.clear();
                return Ok(Prompt::Closed);
            }
            self.filter.feed(&buf[..n], &mut self.text);
        }
    }

    /// Sends one line.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        encode(line.as_bytes(), &mut bytes);
        bytes.extend_from_slice(b"\r\n");
        self.stream.write_all(&bytes)
    }

    /// Sends Ctrl-C, as telnet does.
    pub fn interrupt(&mut self) -> io::Result<()> {
        self.stream.write_all(&CTRL_C)
    }

    /// Ends the session (Ctrl-D) and copies what the server says last.
    pub fn end(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.stream.write_all(&[CTRL_D])?;
        self.read_until_prompt(out).map(|_| ())
    }
}
