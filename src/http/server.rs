//! The HTTP server: one accept loop, a thread per request up to a bound,
//! every request read within a deadline and a size limit, every answer
//! `Connection: close`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::{MAX_REQUEST, Settings};

/// A request's place among those being answered; given back on drop.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn serve(listener: TcpListener, settings: Settings, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        let _ = stream.set_write_timeout(Some(settings.write_timeout));
        if busy.fetch_add(1, Ordering::Relaxed) >= settings.max_connections {
            busy.fetch_sub(1, Ordering::Relaxed);
            let _ = respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"Busy: too many requests at once; try again.\n",
                false,
            );
            continue;
        }
        let slot = Busy(busy.clone());
        let spawned = crate::tracker::spawn_own(
            // The views a request runs (the heap, the leak report) are the
            // console's: the same stack as a console session's.
            std::thread::Builder::new()
                .name("leakscope-http-request".into())
                .stack_size(8 << 20),
            move || {
                let _ = handle(&mut stream, settings);
                // The place is given back before the client can see the
                // connection end, so a client that asks again at once finds it.
                drop(slot);
                let _ = stream.shutdown(Shutdown::Both);
            },
        );
        // A thread that could not start gave its place back with the closure.
        drop(spawned);
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

fn handle(stream: &mut TcpStream, settings: Settings) -> io::Result<()> {
    let head = match read_head(stream, settings) {
        Ok(h) => h,
        Err(status) => {
            return respond(
                stream,
                status,
                "text/plain",
                format!("{status}\n").as_bytes(),
                false,
            );
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (method, target) = match req.parse(&head) {
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
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    respond_with(stream, status, content_type, body, head_only, "")
}

/// Answers with `extra` header lines (each ending in CRLF) as well.
fn respond_with(
    stream: &mut TcpStream,
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
