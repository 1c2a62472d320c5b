//! No input makes the console panic: random bytes through the telnet
//! decoder and the shell, and random token streams through the parser and
//! the evaluator.

use std::sync::Arc;

use proptest::prelude::*;

use super::eval::{Limits, Shell};

const LIMITS: Limits = Limits {
    line_time: std::time::Duration::from_secs(2),
    session_bytes: 1 << 20,
};
use super::host::Host;
use super::lang::parse;
use super::telnet::Decoder;

const TOKENS: &[&str] = &[
    "prefs",
    "get_oldest",
    "iter_all",
    "hpy",
    "heap",
    "bytype",
    "bysite",
    "bysize",
    "byage",
    "more",
    "all",
    "stats",
    "len",
    "p",
    "help",
    "x",
    "_",
    "r",
    "Spider",
    "None",
    "True",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "=",
    "==",
    "<",
    "+",
    "-",
    "*",
    "/",
    "%",
    "0",
    "1",
    "-1",
    "99999999999",
    "1.5",
    "'a'",
    "\"b\"",
    "for",
    "in",
    "if",
    "not",
    "and",
    "or",
    "from",
    "import",
    "ignore",
    "url",
];

fn tokens() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_decoder_takes_any_bytes(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut d = Decoder::new(1024);
        let mut events = Vec::new();
        for c in &chunks {
            d.feed(c, &mut events);
            let _ = d.take_replies();
        }
        prop_assert!(d.pending().len() <= 1024);
    }

    #[test]
    fn the_shell_takes_any_text(line in any::<String>()) {
        let mut shell = Shell::new(Arc::new(Host::with_builtins()), LIMITS);
        let _ = shell.run(&line);
    }

    #[test]
    fn the_parser_and_shell_take_any_token_stream(line in tokens()) {
        let _ = parse(&line);
        let mut shell = Shell::new(Arc::new(Host::with_builtins()), LIMITS);
        let out = shell.run(&line);
        // Errors point somewhere inside the line (plus one: its end).
        if let Some(caret_line) = out.lines().nth(1)
            && caret_line.trim_end().ends_with('^')
        {
            prop_assert!(caret_line.trim_end().len() <= line.chars().count() + 3);
        }
    }
}
