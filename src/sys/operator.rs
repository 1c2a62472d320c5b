//! Messages to the person running the program: through the `log` crate
//! when the program installed a logger that lets them through, on stderr
//! otherwise (so a program without a logger, or whose logger filters
//! `info` out, still shows where the console listens and its password).

use std::io::Write;

/// Says `message` at `info` level.
pub(crate) fn announce(message: &str) {
    say(log::Level::Info, message);
}

/// Says `message` at `warn` level.
pub(crate) fn warn(message: &str) {
    say(log::Level::Warn, message);
}

fn say(level: log::Level, message: &str) {
    if through_log(level) {
        log::log!(level, "{message}");
    } else {
        // Not eprintln!: a closed stderr must not panic the caller.
        let _ = writeln!(std::io::stderr(), "{message}");
    }
}

/// Whether a message at `level` reaches the program's logger: one is
/// installed and does not filter the level out (a `tracing` subscriber
/// without `RUST_LOG` keeps only errors).
fn through_log(level: log::Level) -> bool {
    log::max_level() != log::LevelFilter::Off && log::log_enabled!(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logger that keeps warnings and errors only, as a `tracing`
    /// subscriber does by default.
    struct WarningsOnly;

    impl log::Log for WarningsOnly {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, _: &log::Record<'_>) {}
        fn flush(&self) {}
    }

    static LOGGER: WarningsOnly = WarningsOnly;

    #[test]
    fn a_logger_that_filters_info_out_leaves_announcements_on_stderr() {
        // The first logger of the process stays: this is the only test
        // that installs one.
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
        assert!(!through_log(log::Level::Info));
        assert!(through_log(log::Level::Warn));
    }
}
