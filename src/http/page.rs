//! The page: the overview at `/`, the drill-down pages of the heap, the
//! assets and the data they read. Each answer is built from the views the
//! console has (a heap, the leak report, the growth history); the chart's
//! data is the history as it stands, never a new snapshot.

use crate::heap::Heap;
use crate::render::html::address::{Address, By};
use crate::render::html::{self, ChartBy, Drilled, Header, Overview};

/// An answer: status, content type, body.
pub(super) struct Answer {
    pub(super) status: &'static str,
    pub(super) content_type: &'static str,
    pub(super) body: Vec<u8>,
}

impl Answer {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: "200 OK",
            content_type,
            body: body.into(),
        }
    }

    fn refused(status: &'static str, why: &str) -> Answer {
        Answer {
            status,
            content_type: HTML,
            body: html::refusal(&header(), why).into_bytes(),
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";

/// The answer to a page's path, or `None` when the path is not one of the
/// page's.
pub(super) fn answer(path: &str, query: &str) -> Option<Answer> {
    Some(match path {
        "/" => overview(query),
        html::HEAP_PATH => heap_page(query),
        html::CSS_PATH => Answer::ok("text/css; charset=utf-8", html::CSS),
        html::SCRIPT_PATH => Answer::ok("text/javascript; charset=utf-8", html::SCRIPT),
        html::HISTORY_PATH => history(query),
        html::FLAMEGRAPH_PATH => flamegraph(query),
        html::DHAT_PATH => dhat(query),
        _ => return None,
    })
}

/// The headers every answer of the page carries: it may load from the
/// endpoint and nowhere else, and may not be framed elsewhere.
pub(super) fn security_headers(content_type: &str) -> &'static str {
    if content_type.starts_with("image/svg+xml") {
        // The flamegraph draws and zooms with its own inline script.
        "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
         style-src 'unsafe-inline'; frame-ancestors 'self'\r\n\
         X-Content-Type-Options: nosniff\r\n"
    } else {
        "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'self'; frame-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'self'\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
    }
}

fn header() -> Header {
    let stats = crate::stats().ok();
    let mode = crate::mode();
    Header {
        pid: std::process::id(),
        mode,
        estimated: mode == crate::Mode::Sampled,
        uptime: crate::sys::clock::since_start(),
        live_bytes: stats.map_or(0, |s| s.live_bytes),
        own: stats.map(|s| (s.own_bytes, s.own_bound)),
        build_note: crate::symbols::build_info().note(),
    }
}

/// No parameters but those listed.
fn only(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, Answer> {
    let mut pairs = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&&*k) {
            return Err(Answer::refused(
                "400 Bad Request",
                &format!("unknown parameter {k}"),
            ));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

fn overview(query: &str) -> Answer {
    let mut chart = ChartBy::Types;
    match only(query, &["chart"]) {
        Err(a) => return a,
        Ok(pairs) => {
            for (_, v) in pairs {
                chart = match v.as_str() {
                    "types" => ChartBy::Types,
                    "sites" => ChartBy::Sites,
                    _ => {
                        return Answer::refused(
                            "400 Bad Request",
                            &format!("chart={v}: types or sites"),
                        );
                    }
                }
            }
        }
    }
    let header = header();
    let history = crate::leaks::history();
    let report = crate::leaks::report();
    let heap = crate::hpy()
        .try_heap()
        .map(|h| (h.bytype(), h.bysite()))
        .map_err(|e| format!("The heap could not be taken: {e}"));
    Answer::ok(
        HTML,
        html::overview(&Overview {
            header: &header,
            chart,
            history: &history,
            report: &report,
            heap,
        }),
    )
}

fn heap_page(query: &str) -> Answer {
    let address = match Address::parse(query) {
        Ok(a) => a,
        Err(why) => return Answer::refused("400 Bad Request", &why),
    };
    let header = header();
    let heap = match crate::hpy().try_heap() {
        Ok(h) => h,
        Err(e) => {
            return Answer::refused(
                "503 Service Unavailable",
                &format!("The heap could not be taken: {e}"),
            );
        }
    };
    let (heap, shown) = match chosen(heap, &address) {
        Ok(heap) => {
            let shown = view(&heap, address.by);
            (Some(heap), shown)
        }
        Err(why) => (None, Drilled::Refused(why)),
    };
    let status = match shown {
        Drilled::Refused(_) if heap.is_none() => "404 Not Found",
        _ => "200 OK",
    };
    let note = heap.as_ref().and_then(Heap::graph_note);
    let body = html::drill(
        &header,
        &address,
        heap.as_ref().map(|h| (h.totals(), h.estimated())),
        &shown,
        note.as_deref(),
    );
    Answer {
        status,
        content_type: HTML,
        body: body.into_bytes(),
    }
}

/// The blocks an address chooses: each step's row of the heap left by the
/// step before.
fn chosen(mut heap: Heap, address: &Address) -> Result<Heap, String> {
    for (kind, label) in &address.steps {
        let p = heap.partition(*kind);
        let Some(i) = p.rows().iter().position(|r| &r.label == label) else {
            return Err(format!(
                "No row {label} by {} in the heap now: its blocks were freed since the \
                 link was made, or the rows chosen before leave none of them.",
                By::Kind(*kind).name()
            ));
        };
        heap = p.row(i);
    }
    Ok(heap)
}

fn view(heap: &Heap, by: By) -> Drilled {
    match by {
        By::Kind(kind) => Drilled::Rows(heap.partition(kind)),
        By::Paths => match heap.sp() {
            Ok(p) => Drilled::Paths(p),
            Err(e) => Drilled::Refused(e.to_string()),
        },
        By::Dominators => match heap.dominators() {
            Ok(d) => Drilled::Dominators(d),
            Err(e) => Drilled::Refused(e.to_string()),
        },
    }
}

fn history(query: &str) -> Answer {
    if let Err(a) = only(query, &[]) {
        return a;
    }
    let h = crate::leaks::history();
    match serde_json::to_vec(&h) {
        Ok(body) => Answer::ok("application/json", body),
        Err(e) => Answer::refused("500 Internal Server Error", &format!("cannot encode: {e}")),
    }
}

fn flamegraph(query: &str) -> Answer {
    of_snapshot(
        query,
        "image/svg+xml",
        "The flamegraph could not be drawn",
        |snap| crate::export::flamegraph::svg_folded_to_program(snap).map_err(|e| e.to_string()),
    )
}

fn dhat(query: &str) -> Answer {
    of_snapshot(
        query,
        "application/json",
        "The DHAT file could not be made",
        |snap| {
            serde_json::to_vec(&crate::export::dhat::from_snapshot(snap)).map_err(|e| e.to_string())
        },
    )
}

/// A file made from a snapshot taken now (a query takes no parameter);
/// `failed` heads the reason when it cannot be.
fn of_snapshot(
    query: &str,
    content_type: &'static str,
    failed: &str,
    make: impl FnOnce(&crate::tracker::Snapshot) -> Result<Vec<u8>, String>,
) -> Answer {
    if let Err(a) = only(query, &[]) {
        return a;
    }
    match crate::tracker::try_snapshot()
        .map_err(|e| e.to_string())
        .and_then(|snap| make(&snap))
    {
        Ok(body) => Answer::ok(content_type, body),
        Err(e) => Answer::refused("503 Service Unavailable", &format!("{failed}: {e}")),
    }
}
