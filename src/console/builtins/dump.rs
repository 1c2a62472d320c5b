//! Files for the viewers, written mid-run: `dump_dhat`, `dump_flamegraph`,
//! `dump_pprof`.

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::{Call, Host};
use crate::export;

pub(super) fn register(host: &mut Host) {
    host.builtin_function(
        "dump_dhat",
        Some(
            "dump_dhat('/tmp/heap.json') — a DHAT file for Valgrind's dh_view.html, now, tracking goes on",
        ),
        |c| {
            let path = path(c)?;
            let f = export::dhat::write(&path).map_err(os_error)?;
            Ok(said(
                &format!(
                    "Wrote {} program points to {path}; open it with Valgrind's dh_view.html \
                     (leakscope view {path}).",
                    f.pps.len()
                ),
                c.width(),
            ))
        },
    );
    host.builtin_function(
        "dump_flamegraph",
        Some("dump_flamegraph('/tmp/live.svg') — an SVG flamegraph of live bytes by stack"),
        |c| {
            let path = path(c)?;
            export::flamegraph::write(&path).map_err(os_error)?;
            Ok(said(
                &format!("Wrote a flamegraph of live bytes to {path}."),
                c.width(),
            ))
        },
    );
    host.builtin_function(
        "dump_pprof",
        Some("dump_pprof('/tmp/heap.pb.gz') — a pprof profile (go tool pprof, Pyroscope, Parca)"),
        |c| {
            let path = path(c)?;
            let p = export::pprof::write(&path).map_err(os_error)?;
            Ok(said(
                &format!(
                    "Wrote {} samples to {path}; go tool pprof {path}",
                    p.sample.len()
                ),
                c.width(),
            ))
        },
    );
}

/// A sentence for the session, wrapped to its window.
fn said(text: &str, width: usize) -> Value {
    Value::Text(crate::render::table::wrap(text, width, 0))
}

/// The one path argument of a dump, made absolute (what is written is
/// reported as it can be found).
fn path(c: &Call<'_>) -> Result<String, Error> {
    c.arity(1)?;
    let given = c.str_arg(0)?;
    std::path::absolute(given)
        .map(|p| p.display().to_string())
        .map_err(|e| Error::new(ExceptionKind::OSError, format!("{given}: {e}")))
}

fn os_error(e: export::Error) -> Error {
    Error::new(ExceptionKind::OSError, e.to_string())
}
