//! The HTTP server: one accept loop, a thread per connection, every
//! request read within a deadline and a size limit, every answer
//! `Connection: close` and written within a deadline. Connections still
//! sending their request and requests being answered have places of their
//! own: clients that send slowly (or never finish) delay no complete
//! request.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{MAX_READING, MAX_REQUEST, Settings};
use crate::sys::cancel::{self, Stop};

/// A request's place among those being answered; given back on drop.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections whose request is still arriving, oldest first.
#[derive(Default)]
struct Reading {
    next: u64,
    conns: VecDeque<(u64, TcpStream)>,
}

/// [`Reading`], shared by the accept loop and the connections' threads.
#[derive(Clone, Default)]
struct ReadingPlaces(Arc<Mutex<Reading>>);

impl ReadingPlaces {
    /// Takes a place for `stream`; when all [`MAX_READING`] are taken, the
    /// connection that has waited longest loses its place: it is closed.
    fn admit(&self, stream: &TcpStream) -> u64 {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.conns.len() >= MAX_READING
            && let Some((_, oldest)) = r.conns.pop_front()
        {
            let _ = oldest.shutdown(Shutdown::Both);
        }
        r.next += 1;
        let id = r.next;
        if let Ok(copy) = stream.try_clone() {
            r.conns.push_back((id, copy));
        }
        id
    }

    /// Gives back the place `id` took (its request has arrived, or never
    /// will).
    fn leave(&self, id: u64) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = r.conns.iter().position(|(k, _)| *k == id) {
            r.conns.remove(i);
        }
    }
}

pub(super) fn serve(listener: TcpListener, settings: Settings, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicUsize::new(0));
    let reading = ReadingPlaces::default();
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        let id = reading.admit(&stream);
        let (busy, places) = (busy.clone(), reading.clone());
        let spawned = crate::tracker::spawn_own(
            // The views a request runs (the heap, the leak report) are the
            // console's: the same stack as a console session's.
            std::thread::Builder::new()
                .name("leakscope-http-request".into())
                .stack_size(8 << 20),
            move || {
                let head = read_head(&mut stream, settings);
                places.leave(id);
                let mut out = Answer {
                    stream: &stream,
                    timeout: settings.write_timeout,
                    deadline: None,
                };
                match head {
                    Err(status) => {
                        let body = format!("{status}\n");
                        let _ = respond(&mut out, status, "text/plain", body.as_bytes(), false);
                    }
                    Ok(_) if busy.fetch_add(1, Ordering::Relaxed) >= settings.max_connections => {
                        busy.fetch_sub(1, Ordering::Relaxed);
                        let _ = respond(
                            &mut out,
                            "503 Service Unavailable",
                            "text/plain",
                            b"Busy: too many requests at once; try again.\n",
                            false,
                        );
                    }
                    Ok(head) => {
                        let slot = Busy(busy);
                        let check = view_check(settings.view_timeout);
                        let ran = cancel::watched(check, || handle(&head, &mut out, settings));
                        if let Err(stopped) = ran
                            && stopped.why == Stop::OverBudget
                        {
                            let _ = respond(
                                &mut out,
                                "503 Service Unavailable",
                                "text/plain; charset=utf-8",
                                b"leakscope's own memory is past the views' budget (see stats() \
                                  in the console): no new snapshot or heap graph is made.\n",
                                false,
                            );
                        } else if let Err(stopped) = ran
                            && stopped.why == Stop::Deadline
                        {
                            let doing = match stopped.doing {
                                "" => String::new(),
                                doing => format!(", while {doing}"),
                            };
                            let _ = respond(
                                &mut out,
                                "503 Service Unavailable",
                                "text/plain; charset=utf-8",
                                format!(
                                    "The view ran longer than {} s{doing}: ask again for less \
                                     (a row of the heap), or give views longer \
                                     (http::Builder::view_timeout).\n",
                                    settings.view_timeout.as_secs_f64(),
                                )
                                .as_bytes(),
                                false,
                            );
                        }
                        // The place is given back before the client can see
                        // the connection end, so a client that asks again at
                        // once finds it.
                        drop(slot);
                    }
                }
                let _ = stream.shutdown(Shutdown::Both);
            },
        );
        if spawned.is_err() {
            // No thread: the connection closes with the closure.
            reading.leave(id);
        }
    }
}

/// The check a request's view runs under: its time. (A client that has
/// closed its side may still want the answer, as `nc -N` does, and
/// nothing short of writing tells it from one that left: only time
/// counts.)
fn view_check(timeout: Duration) -> cancel::Check {
    let deadline = Instant::now() + timeout;
    Box::new(move || (Instant::now() > deadline).then_some(Stop::Deadline))
}

/// Where an answer goes: the connection, within one deadline for the
/// whole answer from its first byte (a client that takes a few bytes now
/// and then cannot hold its place for longer).
struct Answer<'a> {
    stream: &'a TcpStream,
    timeout: Duration,
    deadline: Option<Instant>,
}

impl Write for Answer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.timeout;
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took too long to take the answer",
            ));
        }
        self.stream
            .set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the request head: until it parses whole, within the deadline and
/// [`MAX_REQUEST`] bytes; what cannot be HTTP is refused as soon as it
/// shows. `Err` with the status to answer.
fn read_head(stream: &mut TcpStream, settings: Settings) -> Result<Vec<u8>, &'static str> {
    let deadline = Instant::now() + settings.read_timeout;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::Request::new(&mut headers).parse(&head) {
            Ok(httparse::Status::Complete(_)) => return Ok(head),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err("431 Request Header Fields Too Large");
            }
            Err(_) => return Err("400 Bad Request"),
        }
        if head.len() > MAX_REQUEST {
            return Err("431 Request Header Fields Too Large");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("408 Request Timeout");
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return Err("400 Bad Request"),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("408 Request Timeout");
            }
            Err(_) => return Err("400 Bad Request"),
        }
    }
}

/// Answers the request whose head is `head`.
fn handle(head: &[u8], stream: &mut Answer<'_>, settings: Settings) -> io::Result<()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (method, target) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => (
            req.method.unwrap_or("").to_string(),
            req.path.unwrap_or("").to_string(),
        ),
        _ => {
            return respond(
                stream,
                "400 Bad Request",
                "text/plain",
                b"Not an HTTP request.\n",
                false,
            );
        }
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            stream,
            "405 Method Not Allowed",
            "text/plain",
            b"Only GET and HEAD: every endpoint here reads, none changes the process.\n",
            false,
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if let Some(a) = super::page::answer(path, query) {
        return respond_with(
            stream,
            a.status,
            a.content_type,
            &a.body,
            head_only,
            super::page::security_headers(a.content_type),
        );
    }
    match path {
        "/metrics" => {
            let body = super::metrics::render(settings.top);
            respond(
                stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
        }
        "/debug/leaks" => match leak_report(query) {
            Ok((content_type, body)) => {
                respond(stream, "200 OK", content_type, body.as_bytes(), head_only)
            }
            Err(why) => respond(
                stream,
                "400 Bad Request",
                "text/plain; charset=utf-8",
                why.as_bytes(),
                head_only,
            ),
        },
        "/debug/pprof/heap" => match heap_profile(query) {
            Ok(body) => respond(
                stream,
                "200 OK",
                "application/octet-stream",
                &body,
                head_only,
            ),
            Err(why) => respond(
                stream,
                "400 Bad Request",
                "text/plain; charset=utf-8",
                why.as_bytes(),
                head_only,
            ),
        },
        _ => respond(
            stream,
            "404 Not Found",
            "text/plain; charset=utf-8",
            format!("No {path} here.\n\n{INDEX}").as_bytes(),
            head_only,
        ),
    }
}

const INDEX: &str = "leakscope\n\n\
/                  the page: live memory over time, the leak report, the heap's top rows, the flamegraph\n\
/heap              the heap's rows, to drill down into (?type=LABEL&site=LABEL&by=via …)\n\
/debug/history     the growth history the chart draws, as JSON\n\
/debug/flamegraph.svg  the live heap by stack, as an SVG flamegraph\n\
/debug/dhat.json   the live heap as a DHAT file (Valgrind's dh_view.html)\n\
/debug/leaks       the leak report: what keeps growing, its site, growth and holder (?format=json)\n\
/debug/pprof/heap  the live heap as Go's heap profile (gzipped pprof): go tool pprof http://HOST/debug/pprof/heap\n\
/metrics           Prometheus text format: counters, jemalloc, leakscope's own memory, tracked classes, top types and sites\n";

/// The leak report as text (80 columns, as the console's) or, with
/// `format=json`, as JSON.
fn leak_report(query: &str) -> Result<(&'static str, String), String> {
    let mut json = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("format", "json") => json = true,
            ("format", "text") => json = false,
            ("format", other) => return Err(format!("format={other}: text or json\n")),
            (key, _) => return Err(format!("unknown parameter {key}\n")),
        }
    }
    let report = crate::leaks();
    if json {
        serde_json::to_string_pretty(&report)
            .map(|body| ("application/json", body + "\n"))
            .map_err(|e| format!("cannot encode: {e}\n"))
    } else {
        Ok(("text/plain; charset=utf-8", report.to_string()))
    }
}

/// The heap profile, with Go's query parameters treated as Go treats them
/// where that means anything here: `gc=1` asks for a collection first,
/// which a Rust program has none of (accepted, nothing to do); `debug=N`
/// with N > 0 asks for Go's text format and `seconds=N` for a delta
/// profile, which are refused with the reason.
fn heap_profile(query: &str) -> Result<Vec<u8>, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "gc" => {}
            "debug" if value == "0" || value.is_empty() => {}
            "debug" => {
                return Err(format!(
                    "debug={value}: leakscope serves only the binary profile (debug=0); \
                     read it with go tool pprof\n"
                ));
            }
            "seconds" => {
                return Err(format!(
                    "seconds={value}: leakscope serves the heap as it is now, not a delta; \
                     go tool pprof -base old.pb.gz new.pb.gz compares two\n"
                ));
            }
            _ => return Err(format!("unknown parameter {key}\n")),
        }
    }
    let profile = crate::export::pprof::from_snapshot(&crate::tracker::snapshot());
    crate::export::pprof::encode(&profile).map_err(|e| format!("cannot encode: {e}\n"))
}

fn respond(
    stream: &mut Answer<'_>,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    respond_with(stream, status, content_type, body, head_only, "")
}

/// Answers with `extra` header lines (each ending in CRLF) as well.
fn respond_with(
    stream: &mut Answer<'_>,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    extra: &str,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}
