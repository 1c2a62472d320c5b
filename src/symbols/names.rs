//! How function names read in tables and in other tools.

/// A function's name without Rust's brackets: `<Type>::method` and
/// `<Type as Trait>::method` become `Type::method`, and turbofish arguments
/// (`f::<T>`) are left out. Tools that drop every `<…>` (pprof's
/// simplifier) would otherwise show `::method`.
pub fn plain_name(function: &str) -> String {
    without_turbofish(&brackets_off(function))
}

/// `a::f::<T, U>::g` → `a::f::g`: a tool that drops every `<…>` would
/// leave the `::`.
fn without_turbofish(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut prev = ' ';
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if depth == 0 && rest.starts_with("::<") {
            depth = 1;
            rest = &rest[3..];
            prev = '<';
            continue;
        }
        if depth > 0 {
            match c {
                '>' if prev == '-' => {}
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
        } else {
            out.push(c);
        }
        prev = c;
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Splits `<Type as Trait>::f` or `<Type>::f` into the self type (`Type`)
/// and what follows its closing `>` (`::f`).
pub(super) fn split_self_type(function: &str) -> Option<(&str, &str)> {
    let body = function.strip_prefix('<')?;
    let mut depth = 0usize;
    let mut prev = ' ';
    let mut self_end = None;
    let mut as_at = None;
    for (i, c) in body.char_indices() {
        let arrow = prev == '-';
        prev = c;
        match c {
            // The `>` of `-> R` in `dyn Fn() -> R` closes nothing.
            '>' if arrow => {}
            '<' => depth += 1,
            '>' if depth == 0 => {
                self_end = Some(i);
                break;
            }
            '>' => depth -= 1,
            ' ' if depth == 0 && as_at.is_none() && body[i..].starts_with(" as ") => {
                as_at = Some(i)
            }
            _ => {}
        }
    }
    let end = self_end?;
    Some((&body[..as_at.unwrap_or(end)], &body[end + 1..]))
}

/// `<Type>::f` → `Type::f`, `<Type as Trait>::f` → `Type::f`.
fn brackets_off(function: &str) -> String {
    match split_self_type(function) {
        Some((self_type, rest)) => format!("{}{}", brackets_off(self_type), brackets_off(rest)),
        None => function.to_string(),
    }
}

/// A function's name short enough for a table: [`plain_name`] without the
/// types' generic arguments and closures, the crate and the last two
/// segments kept (`<reqwest::async_impl::response::Response>::text::{closure#0}`
/// → `reqwest::…::Response::text`).
pub fn short_function(function: &str) -> String {
    let mut plain = String::new();
    let mut depth = 0usize;
    let mut prev = ' ';
    for c in plain_name(function).chars() {
        match c {
            '>' if prev == '-' => {}
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
        prev = c;
    }
    let segments: Vec<&str> = plain
        .split("::")
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    match segments.as_slice() {
        [] => function.to_string(),
        [first, .., a, b] if segments.len() > 3 => format!("{first}::…::{a}::{b}"),
        all => all.join("::"),
    }
}

/// A type name without module paths: `alloc::sync::Arc<app::spiders::Page>`
/// → `Arc<Page>`, `fn app::load` → `fn load`.
pub fn short_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        // `::f` after a closing `>` names a function of that type: kept.
        if token.contains("::") && !token.starts_with("::") {
            let trailing = token.ends_with("::");
            let last = token
                .trim_end_matches("::")
                .rsplit("::")
                .next()
                .unwrap_or("");
            out.push_str(last);
            if trailing {
                out.push_str("::");
            }
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// A function's name without module paths or brackets: the self type
/// short (`<app::Cache<u64, app::Page>>::insert` → `Cache<u64, Page>::insert`),
/// a free function from its own name on (`app::engine::fetch::{closure#0}` →
/// `fetch::{closure#0}`).
fn short_method(function: &str) -> String {
    match split_self_type(function) {
        Some((self_type, rest)) => format!(
            "{}{}",
            short_type(&without_turbofish(self_type)),
            without_turbofish(rest)
        ),
        None => {
            let plain = without_turbofish(function);
            let segments: Vec<&str> = plain.split("::").collect();
            let own = segments
                .iter()
                .rposition(|s| !s.starts_with('{'))
                .unwrap_or(0);
            segments[own..].join("::")
        }
    }
}

/// A site label (see [`super::site_label`]) as tables show it: the
/// function without module paths or brackets, its place, and the
/// dependency it went through (`<app::engine::Engine>::crawl::{closure#0}
/// (engine.rs:229) via reqwest::…::Response::text` → `Engine::crawl::{closure#0}
/// (engine.rs:229) via reqwest::…::Response::text`).
pub fn short_site(label: &str) -> String {
    let (program, via) = match label.split_once(" via ") {
        Some((p, v)) => (p, Some(v)),
        None => (label, None),
    };
    let (prefix, rest) = match program.strip_prefix(super::NO_PROGRAM_FRAME) {
        Some(rest) => (super::NO_PROGRAM_FRAME, rest),
        None => ("", program),
    };
    let (function, place) = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => rest.split_at(i),
        _ => (rest, ""),
    };
    let mut out = format!("{prefix}{}{place}", short_method(function));
    if let Some(v) = via {
        out.push_str(" via ");
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_sites_keep_function_place_and_dependency() {
        assert_eq!(
            short_site(
                "<leaky_spider::engine::Engine>::crawl::{closure#0}::{closure#0} (engine.rs:229) \
                 via reqwest::…::Response::text"
            ),
            "Engine::crawl::{closure#0}::{closure#0} (engine.rs:229) via reqwest::…::Response::text"
        );
        assert_eq!(
            short_site(
                "[no program frame] <bytes::bytes_mut::BytesMut>::reserve_inner (bytes_mut.rs:790)"
            ),
            "[no program frame] BytesMut::reserve_inner (bytes_mut.rs:790)"
        );
        assert_eq!(short_site("app::load (main.rs:3)"), "load (main.rs:3)");
        assert_eq!(
            short_site("<app::Cache<u64, app::Page>>::insert"),
            "Cache<u64, Page>::insert"
        );
        assert_eq!(short_site("?"), "?");
    }

    #[test]
    fn short_types_drop_module_paths_only() {
        assert_eq!(
            short_type(
                "Arc<leakscope::trackref::tracked::TrackedInner<app::spiders::HtmlResponse>>"
            ),
            "Arc<TrackedInner<HtmlResponse>>"
        );
        assert_eq!(
            short_type("fn app::main::{closure#0}"),
            "fn main::{closure#0}"
        );
        assert_eq!(
            short_type("HashMap<u64, (String, [u8; 4])>"),
            "HashMap<u64, (String, [u8; 4])>"
        );
    }

    #[test]
    fn plain_names_have_no_brackets() {
        assert_eq!(
            plain_name("<leaky_spider::engine::Engine>::crawl::{closure#0}"),
            "leaky_spider::engine::Engine::crawl::{closure#0}"
        );
        assert_eq!(
            plain_name("<alloc::vec::Vec<u8> as core::clone::Clone>::clone"),
            "alloc::vec::Vec<u8>::clone"
        );
        assert_eq!(
            plain_name("<<app::A as app::T>::Out as core::fmt::Debug>::fmt"),
            "app::A::Out::fmt"
        );
        assert_eq!(plain_name("app::load"), "app::load");
        assert_eq!(
            plain_name("std::panicking::catch_unwind::<(), F>::do_call::<G>"),
            "std::panicking::catch_unwind::do_call"
        );
        assert_eq!(
            plain_name("<std::thread::local::LocalKey<app::S>>::with::<app::f::{closure#0}, ()>"),
            "std::thread::local::LocalKey<app::S>::with"
        );
        assert_eq!(
            plain_name("<alloc::boxed::Box<dyn core::ops::function::Fn() -> u8>>::new"),
            "alloc::boxed::Box<dyn core::ops::function::Fn() -> u8>::new"
        );
    }

    #[test]
    fn short_names_keep_the_crate_and_the_method() {
        assert_eq!(
            short_function("<reqwest::async_impl::response::Response>::text::{closure#0}"),
            "reqwest::…::Response::text"
        );
        assert_eq!(short_function("app::load"), "app::load");
        assert_eq!(
            short_function("<alloc::vec::Vec<u8> as core::clone::Clone>::clone"),
            "alloc::…::Vec::clone"
        );
    }
}
