//! The allocator's figures: `stats()`, `purge()`.

use crate::console::eval::{Error, ExceptionKind, Value};
use crate::console::host::Host;

pub(super) fn register(host: &mut Host) {
    host.builtin_function(
        "stats",
        Some(
            "stats() — allocator counters, jemalloc's allocated/active/resident/mapped/retained/metadata, and live bytes over the growth history",
        ),
        |c| {
            c.arity(0)?;
            crate::stats()
                .map(|s| {
                    let history = crate::leaks::history();
                    Value::Text(
                        s.to_string()
                            + &crate::render::live_over_time(&history, crate::render::WIDTH),
                    )
                })
                .map_err(|e| Error::new(ExceptionKind::OSError, e.to_string()))
        },
    );
    host.builtin_function(
        "purge",
        Some("purge() — return unused pages to the OS, and say how much"),
        |c| {
            c.arity(0)?;
            crate::purge()
                .map(|r| Value::Text(r.render(c.width())))
                .map_err(|e| Error::new(ExceptionKind::OSError, e.to_string()))
        },
    );
}
