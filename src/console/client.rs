//! The client's side of a console session, for `leakscope connect` and
//! `leakscope attach`: server output with the telnet commands taken out,
//! split at the prompts, and lines sent as a telnet client sends them.

use std::io::{self, Read, Write};

use super::PROMPT;
use super::conn::Conn;
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
    stream: Conn,
    filter: OutputFilter,
    text: Vec<u8>,
}

/// Text held back from the output while its line has not ended: past
/// this, all of it but what may be the start of a prompt is copied out.
const MAX_HELD_TEXT: usize = 64 << 10;

/// The longest prompt: what of a long unended line is held back.
const LONGEST_PROMPT: usize = 10;

const PROMPTS: [(&str, Prompt); 3] = [
    (PROMPT, Prompt::Line),
    ("Username: ", Prompt::Username),
    ("Password: ", Prompt::Password),
];

impl Client {
    /// A client over a connected stream (a `TcpStream`, or a
    /// `UnixStream` to a console's local socket).
    pub fn new(stream: impl Into<Conn>) -> io::Result<Self> {
        let stream = stream.into();
        stream.set_nodelay()?;
        Ok(Client {
            stream,
            filter: OutputFilter::default(),
            text: Vec::new(),
        })
    }

    /// Copies the server's text to `out` until it prompts (the prompt
    /// itself is not copied: a line editor shows its own) or closes.
    /// Complete lines are copied as they come; a line that does not end
    /// is copied in pieces, so that what is held stays small.
    pub fn read_until_prompt(&mut self, out: &mut impl Write) -> io::Result<Prompt> {
        let mut buf = [0u8; 4096];
        // Text before this holds no line end: only what came since is
        // searched, so a long line costs time in proportion to its length.
        let mut searched = 0;
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
            if let Some(i) = self.text[searched..].iter().rposition(|&b| b == b'\n') {
                let i = searched + i;
                out.write_all(&self.text[..=i])?;
                out.flush()?;
                self.text.drain(..=i);
            } else if self.text.len() > MAX_HELD_TEXT {
                let upto = self.text.len() - LONGEST_PROMPT;
                out.write_all(&self.text[..upto])?;
                out.flush()?;
                self.text.drain(..upto);
            }
            searched = self.text.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what it is given, and the `x`s in it.
    #[derive(Default)]
    struct Sink {
        bytes: usize,
        x: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes += buf.len();
            self.x += buf.iter().filter(|&&b| b == b'x').count();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_that_never_ends_is_passed_on_in_pieces_and_held_text_stays_small() {
        const LONG: usize = 16 << 20;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..LONG / chunk.len() {
                s.write_all(&chunk).unwrap();
            }
            s.write_all(PROMPT.as_bytes()).unwrap();
        });
        let mut client = Client::new(std::net::TcpStream::connect(addr).unwrap()).unwrap();
        let mut sink = Sink::default();
        assert_eq!(client.read_until_prompt(&mut sink).unwrap(), Prompt::Line);
        assert_eq!((sink.bytes, sink.x), (LONG, LONG));
        assert!(
            client.text.capacity() <= 2 * MAX_HELD_TEXT,
            "{}",
            client.text.capacity()
        );
        server.join().unwrap();
    }
}
