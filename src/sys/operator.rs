//! Messages to the person running the program: through the `log` crate
//! when the program installed a logger, on stderr when it did not (so a
//! program without a logger still shows where the console listens).

/// Says `message` at `info` level.
pub(crate) fn announce(message: &str) {
    say(log::Level::Info, message);
}

/// Says `message` at `warn` level.
pub(crate) fn warn(message: &str) {
    say(log::Level::Warn, message);
}

fn say(level: log::Level, message: &str) {
    if log::max_level() == log::LevelFilter::Off {
        eprintln!("{message}");
    } else {
        log::log!(level, "{message}");
    }
}
