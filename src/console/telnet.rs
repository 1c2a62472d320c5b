//! The part of telnet a real `telnet` client and `nc` need: lines ending in `\r\n`, `\r\0` or
//! `\n` (a CR and its LF may arrive in different reads), IAC commands,
//! option negotiation answered only when an option's state changes, Ctrl-C
//! as `IAC IP` + `IAC DO TIMING-MARK` (answered, or the client discards all
//! later output), Ctrl-D, and `SB … SE` skipped up to a cap. Output doubles
//! 0xFF and turns `\n` into `\r\n`. Nothing here blocks or waits for a reply.

/// Interpret As Command.
pub(crate) const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const EL: u8 = 248;
const EC: u8 = 247;
const AYT: u8 = 246;
pub(crate) const IP: u8 = 244;
const SE: u8 = 240;
/// The ECHO option (server echoes: the client stops echoing).
pub(crate) const OPT_ECHO: u8 = 1;
/// The TIMING-MARK option.
pub(crate) const OPT_TM: u8 = 6;
/// NAWS: the client tells its window size.
pub(crate) const OPT_NAWS: u8 = 31;
/// Escape: starts a terminal's key sequence (arrow keys and the like).
const ESC: u8 = 0x1b;
use super::limits::{MAX_ESCAPE, MAX_SUBNEGOTIATION};

/// What the client did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A complete line (without its line ending).
    Line(Vec<u8>),
    /// Ctrl-C: cancel the line being typed.
    Interrupt,
    /// Ctrl-D on an empty line: end the session.
    EndOfFile,
    /// The line passed the length limit (it is dropped).
    LineTooLong,
    /// A subnegotiation passed [`MAX_SUBNEGOTIATION`] bytes.
    BadSubnegotiation,
    /// The client's window is this many columns wide (NAWS).
    WindowWidth(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Option(u8),
    Sub,
    SubIac,
    /// After ESC: a key sequence may follow.
    Escape,
    /// In `ESC [ …`, until its final byte.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

/// Decodes what a client sends, a read at a time.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    line: Vec<u8>,
    max_line: usize,
    /// The previous data byte was a CR that ended a line: a following LF or
    /// NUL belongs to it.
    after_cr: bool,
    sub_len: usize,
    /// Options the client has enabled on its side, and on ours.
    his: [bool; 256],
    ours: [bool; 256],
    /// Options we already refused, so a repeated request is not answered
    /// again (answering every WILL loops with some clients).
    refused_his: [bool; 256],
    refused_ours: [bool; 256],
    /// Options we asked the client to enable.
    asked_his: [bool; 256],
    /// Options of ours the client has answered (DO or DONT) since we last
    /// offered or withdrew them.
    answered_ours: [bool; 256],
    replies: Vec<u8>,
    /// The start of the subnegotiation being read.
    sub: Vec<u8>,
    /// Bytes of the key sequence being skipped.
    escape_len: usize,
}

impl Decoder {
    /// A decoder that calls a line longer than `max_line` bytes too long.
    pub(crate) fn new(max_line: usize) -> Self {
        Decoder {
            state: State::Data,
            line: Vec::new(),
            max_line,
            after_cr: false,
            sub_len: 0,
            his: [false; 256],
            ours: [false; 256],
            refused_his: [false; 256],
            refused_ours: [false; 256],
            asked_his: [false; 256],
            answered_ours: [false; 256],
            replies: Vec::new(),
            sub: Vec::new(),
            escape_len: 0,
        }
    }

    /// Bytes to send back (negotiation answers); empties the buffer.
    pub(crate) fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    /// The part of a line typed so far.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.line
    }

    /// Offers (or withdraws) server-side echo: `IAC WILL ECHO` around a
    /// password makes the client stop echoing. Returns the bytes to send;
    /// nothing when the state does not change.
    pub(crate) fn set_echo(&mut self, on: bool) -> Vec<u8> {
        if self.ours[OPT_ECHO as usize] == on {
            return Vec::new();
        }
        self.ours[OPT_ECHO as usize] = on;
        self.refused_ours[OPT_ECHO as usize] = false;
        self.answered_ours[OPT_ECHO as usize] = false;
        vec![IAC, if on { WILL } else { WONT }, OPT_ECHO]
    }

    fn end_line(&mut self, events: &mut Vec<Event>) {
        events.push(Event::Line(std::mem::take(&mut self.line)));
    }

    /// Feeds bytes as they came off the socket; complete events are added
    /// to `events`.
    pub(crate) fn feed(&mut self, bytes: &[u8], events: &mut Vec<Event>) {
        for &b in bytes {
            match self.state {
                State::Data => self.data(b, events),
                State::Iac => self.command(b, events),
                State::Option(verb) => {
                    self.negotiate(verb, b);
                    self.state = State::Data;
                }
                State::Sub => {
                    if b == IAC {
                        self.state = State::SubIac;
                    } else {
                        self.sub_byte(b, events);
                    }
                }
                State::SubIac => {
                    if b == SE {
                        self.state = State::Data;
                        self.end_sub(events);
                    } else {
                        self.state = State::Sub;
                        self.sub_byte(b, events);
                    }
                }
                // Terminal key sequences (arrow keys: `ESC [ A`, `ESC O A`)
                // are not text: they are dropped whole.
                State::Escape => {
                    self.escape_len = 0;
                    self.state = match b {
                        b'[' => State::Csi,
                        b'O' => State::Ss3,
                        IAC => State::Iac,
                        _ => State::Data,
                    };
                }
                State::Csi => {
                    self.escape_len += 1;
                    if (0x40..=0x7e).contains(&b) || self.escape_len > MAX_ESCAPE {
                        self.state = State::Data;
                    } else if b == IAC {
                        self.state = State::Iac;
                    }
                }
                State::Ss3 => self.state = State::Data,
            }
        }
    }

    fn sub_byte(&mut self, b: u8, events: &mut Vec<Event>) {
        self.sub_len += 1;
        if self.sub_len > MAX_SUBNEGOTIATION {
            events.push(Event::BadSubnegotiation);
            self.state = State::Data;
        } else if self.sub.len() < 8 {
            // Only the start is kept: NAWS needs five bytes.
            self.sub.push(b);
        }
    }

    /// A subnegotiation ended: NAWS gives the window's width.
    fn end_sub(&mut self, events: &mut Vec<Event>) {
        if let [OPT_NAWS, w1, w0, _, _, ..] = self.sub[..] {
            let width = u16::from_be_bytes([w1, w0]);
            if width > 0 {
                events.push(Event::WindowWidth(width));
            }
        }
        self.sub.clear();
    }

    /// Asks the client for its window size (`IAC DO NAWS`); a client that
    /// has one answers `WILL NAWS` and sends it, now and when it changes.
    pub(crate) fn ask_window_size(&mut self) -> Vec<u8> {
        self.asked_his[OPT_NAWS as usize] = true;
        vec![IAC, DO, OPT_NAWS]
    }

    fn data(&mut self, b: u8, events: &mut Vec<Event>) {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match b {
            IAC => self.state = State::Iac,
            ESC => self.state = State::Escape,
            b'\r' => {
                self.after_cr = true;
                self.end_line(events);
            }
            b'\n' | 0 if after_cr => {}
            b'\n' => self.end_line(events),
            0 => {}
            // Ctrl-D: end of input on an empty line, ignored otherwise.
            4 if self.line.is_empty() => events.push(Event::EndOfFile),
            4 => {}
            // Ctrl-C sent as a byte (nc, or a client in character mode).
            3 => {
                self.line.clear();
                events.push(Event::Interrupt);
            }
            // Backspace and DEL from clients that do not edit lines.
            8 | 127 => {
                self.line.pop();
            }
            _ => self.push(b, events),
        }
    }

    fn push(&mut self, b: u8, events: &mut Vec<Event>) {
        if self.line.len() >= self.max_line {
            self.line.clear();
            events.push(Event::LineTooLong);
        } else {
            self.line.push(b);
        }
    }

    fn command(&mut self, b: u8, events: &mut Vec<Event>) {
        self.state = State::Data;
        match b {
            // An escaped 0xFF is data.
            IAC => self.push(IAC, events),
            WILL | WONT | DO | DONT => self.state = State::Option(b),
            SB => {
                self.sub_len = 0;
                self.sub.clear();
                self.state = State::Sub;
            }
            IP => {
                self.line.clear();
                events.push(Event::Interrupt);
            }
            EC => {
                self.line.pop();
            }
            EL => self.line.clear(),
            AYT => self.replies.extend_from_slice(b"\r\n[yes]\r\n"),
            // NOP, DM, BRK, AO, GA and anything else: nothing to do.
            _ => {}
        }
    }

    /// Whether the client has answered our last offer of `opt` (a client
    /// such as nc never answers).
    pub(crate) fn answered(&self, opt: u8) -> bool {
        self.answered_ours[opt as usize]
    }

    fn negotiate(&mut self, verb: u8, opt: u8) {
        let o = opt as usize;
        if matches!(verb, DO | DONT) {
            self.answered_ours[o] = true;
        }
        match verb {
            // What we asked for: agreed, nothing more to say.
            WILL if self.asked_his[o] => self.his[o] = true,
            // We want none of the client's other options: refuse once.
            WILL if !self.his[o] && !self.refused_his[o] => {
                self.refused_his[o] = true;
                self.replies.extend_from_slice(&[IAC, DONT, opt]);
            }
            WONT if self.his[o] => {
                self.his[o] = false;
                self.replies.extend_from_slice(&[IAC, DONT, opt]);
            }
            // Ctrl-C's timing mark: always answered, or the client throws
            // away everything we send after it.
            DO if opt == OPT_TM => self.replies.extend_from_slice(&[IAC, WONT, OPT_TM]),
            // The client agreeing to what we offered: nothing to say.
            DO if self.ours[o] => {}
            DO if !self.refused_ours[o] => {
                self.refused_ours[o] = true;
                self.replies.extend_from_slice(&[IAC, WONT, opt]);
            }
            DONT if self.ours[o] => {
                self.ours[o] = false;
                self.replies.extend_from_slice(&[IAC, WONT, opt]);
            }
            _ => {}
        }
    }
}

/// What a telnet client sends for Ctrl-C: `IAC IP`, `IAC DO TIMING-MARK`.
pub(crate) const CTRL_C: [u8; 5] = [IAC, IP, IAC, DO, OPT_TM];
/// What a telnet client sends for Ctrl-D on an empty line.
pub(crate) const CTRL_D: u8 = 4;

/// The client's side: strips telnet commands from what a server sends
/// (`IAC IAC` is a data 0xFF, `SB … SE` is skipped) and drops CRs, leaving
/// the text to print.
#[derive(Debug, Default)]
pub(crate) struct OutputFilter {
    state: OutputState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OutputState {
    #[default]
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
}

impl OutputFilter {
    /// Appends the text in `bytes` to `text`.
    pub(crate) fn feed(&mut self, bytes: &[u8], text: &mut Vec<u8>) {
        use OutputState as S;
        for &b in bytes {
            self.state = match (self.state, b) {
                (S::Data, IAC) => S::Iac,
                (S::Data, b'\r') => S::Data,
                (S::Data, b) => {
                    text.push(b);
                    S::Data
                }
                (S::Iac, IAC) => {
                    text.push(IAC);
                    S::Data
                }
                (S::Iac, WILL | WONT | DO | DONT) => S::Option,
                (S::Iac, SB) => S::Sub,
                (S::Iac, _) | (S::Option, _) => S::Data,
                (S::Sub, IAC) => S::SubIac,
                (S::Sub, _) => S::Sub,
                (S::SubIac, SE) => S::Data,
                (S::SubIac, _) => S::Sub,
            };
        }
    }
}

/// Encodes text for the wire: `\n` becomes `\r\n` and 0xFF is doubled.
pub(crate) fn encode(text: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in text {
        match b {
            b'\n' if prev != b'\r' => out.extend_from_slice(b"\r\n"),
            IAC => out.extend_from_slice(&[IAC, IAC]),
            _ => out.push(b),
        }
        prev = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_keys_are_not_text() {
        let mut d = Decoder::new(100);
        let ev = feed(&mut d, b"hp\x1b[Ay\x1b[1;5C()\x1bOB\r\n");
        assert_eq!(ev, [line("hpy()")]);
    }

    #[test]
    fn the_window_width_comes_from_naws() {
        let mut d = Decoder::new(100);
        assert_eq!(d.ask_window_size(), [IAC, DO, OPT_NAWS]);
        let ev = feed(
            &mut d,
            &[
                IAC, WILL, OPT_NAWS, IAC, SB, OPT_NAWS, 0, 132, 0, 40, IAC, SE,
            ],
        );
        assert_eq!(ev, [Event::WindowWidth(132)]);
        assert!(
            d.take_replies().is_empty(),
            "agreeing to what we asked needs no answer"
        );
        // A width of 255 comes as IAC IAC.
        let ev = feed(&mut d, &[IAC, SB, OPT_NAWS, 0, IAC, IAC, 0, 24, IAC, SE]);
        assert_eq!(ev, [Event::WindowWidth(255)]);
    }

    #[test]
    fn the_client_filter_keeps_text_and_drops_commands() {
        let mut f = OutputFilter::default();
        let mut text = Vec::new();
        f.feed(
            &[b'P', IAC, WILL, OPT_ECHO, b'w', b'\r', b'\n', IAC],
            &mut text,
        );
        f.feed(&[IAC, IAC, SB, 24, 1, IAC, SE, b'!'], &mut text);
        assert_eq!(text, [b'P', b'w', b'\n', 0xFF, b'!']);
    }

    fn feed(d: &mut Decoder, bytes: &[u8]) -> Vec<Event> {
        let mut ev = Vec::new();
        d.feed(bytes, &mut ev);
        ev
    }

    fn line(s: &str) -> Event {
        Event::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn every_line_ending_real_clients_send() {
        let mut d = Decoder::new(100);
        assert_eq!(feed(&mut d, b"a\r\n"), [line("a")], "telnet, line mode");
        assert_eq!(feed(&mut d, b"b\r\0"), [line("b")], "telnet after SGA");
        assert_eq!(feed(&mut d, b"c\n"), [line("c")], "nc");
        assert_eq!(
            feed(&mut d, b"d\r"),
            [line("d")],
            "CR at the end of one read"
        );
        assert_eq!(feed(&mut d, b"\ne\r\n"), [line("e")], "its LF in the next");
        assert_eq!(feed(&mut d, b"\r\n"), [line("")], "an empty line");
        assert!(d.take_replies().is_empty());
    }

    #[test]
    fn ctrl_c_from_telnet_cancels_the_line_and_answers_the_timing_mark() {
        let mut d = Decoder::new(100);
        let ev = feed(&mut d, &[b'x', b'y', IAC, IP, IAC, DO, OPT_TM]);
        assert_eq!(ev, [Event::Interrupt]);
        assert_eq!(d.take_replies(), [IAC, WONT, OPT_TM]);
        assert!(d.pending().is_empty());
        // A second Ctrl-C is answered again: the mark is not a state.
        feed(&mut d, &[IAC, IP, IAC, DO, OPT_TM]);
        assert_eq!(d.take_replies(), [IAC, WONT, OPT_TM]);
        assert_eq!(feed(&mut d, &[3]), [Event::Interrupt], "a raw Ctrl-C byte");
    }

    #[test]
    fn ctrl_d_ends_the_session_only_on_an_empty_line() {
        let mut d = Decoder::new(100);
        assert_eq!(feed(&mut d, b"ab\x04"), []);
        assert_eq!(feed(&mut d, b"\n"), [line("ab")]);
        assert_eq!(feed(&mut d, &[4]), [Event::EndOfFile]);
    }

    #[test]
    fn escaped_ff_is_data_and_output_doubles_it() {
        let mut d = Decoder::new(100);
        assert_eq!(
            feed(&mut d, &[b'a', IAC, IAC, b'b', b'\n']),
            [Event::Line(vec![b'a', 0xFF, b'b'])]
        );
        let mut out = Vec::new();
        encode(&[b'x', 0xFF, b'\n', b'y'], &mut out);
        assert_eq!(out, [b'x', IAC, IAC, b'\r', b'\n', b'y']);
        let mut out = Vec::new();
        encode(b"a\r\nb\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\n", "an existing CRLF is kept as is");
    }

    #[test]
    fn negotiation_is_answered_once_per_state_change() {
        let mut d = Decoder::new(100);
        // The client offers to do terminal type and asks us to do SGA.
        feed(&mut d, &[IAC, WILL, 24, IAC, DO, 3]);
        assert_eq!(d.take_replies(), [IAC, DONT, 24, IAC, WONT, 3]);
        // The same requests again: no answer, no loop.
        feed(
            &mut d,
            &[IAC, WILL, 24, IAC, DO, 3, IAC, WONT, 24, IAC, DONT, 3],
        );
        assert!(d.take_replies().is_empty());
        // Echo around a password: offered, agreed, withdrawn.
        assert_eq!(d.set_echo(true), [IAC, WILL, OPT_ECHO]);
        assert!(d.set_echo(true).is_empty());
        feed(&mut d, &[IAC, DO, OPT_ECHO]);
        assert!(
            d.take_replies().is_empty(),
            "the client's DO ECHO is its agreement"
        );
        assert_eq!(d.set_echo(false), [IAC, WONT, OPT_ECHO]);
        feed(&mut d, &[IAC, DONT, OPT_ECHO]);
        assert!(d.take_replies().is_empty());
    }

    #[test]
    fn subnegotiation_is_skipped_with_a_cap() {
        let mut d = Decoder::new(100);
        let mut bytes = vec![IAC, SB, 24, 0];
        bytes.extend_from_slice(b"xterm");
        bytes.extend_from_slice(&[IAC, SE]);
        bytes.extend_from_slice(b"ok\n");
        assert_eq!(feed(&mut d, &bytes), [line("ok")]);
        let mut long = vec![IAC, SB, 24];
        long.extend(std::iter::repeat_n(b'x', MAX_SUBNEGOTIATION + 1));
        assert_eq!(feed(&mut d, &long), [Event::BadSubnegotiation]);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut d = Decoder::new(8);
        assert_eq!(feed(&mut d, b"123456789"), [Event::LineTooLong]);
        assert_eq!(feed(&mut d, b"\n"), [line("")], "the rest of the long line");
    }
}
