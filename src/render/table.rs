//! Table helpers: a plain table for terminals and telnet, fitting a label
//! column to the width, and the small number formats every view shares.
//! Knows no type of leakscope's.

use std::time::Duration;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};

/// Default terminal width for `Display`.
pub(crate) const WIDTH: usize = 80;

/// A plain table that reads well in a terminal and over telnet: a header, a
/// rule under it, columns separated by spaces, numbers right-aligned.
pub(crate) fn table(header: &[&str], right_aligned: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    let last = header.len().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i == last { 0 } else { 2 }));
    }
    for &i in right_aligned {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The room left for the last (label) column of a table whose first
/// columns hold `cells` under `header`, in a terminal `width` wide (at least
/// 12, so a label always has room for a word).
pub(crate) fn label_width<const N: usize>(
    cells: &[[String; N]],
    header: &[&str],
    width: usize,
) -> usize {
    width
        .saturating_sub(columns_width(cells, header))
        .max(MIN_LABEL)
}

/// The narrowest a label column is made.
pub(crate) const MIN_LABEL: usize = 12;

/// How wide the first columns of a table are, each with its gap.
pub(crate) fn columns_width<const N: usize>(cells: &[[String; N]], header: &[&str]) -> usize {
    (0..N)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum()
}

/// Renders a table with a rule under its header.
pub(crate) fn finish(t: &Table) -> String {
    let text = t.trim_fmt();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(text.len() * 2);
    out.push_str(header.trim_end());
    out.push('\n');
    out.push_str(&"-".repeat(header.trim_end().chars().count()));
    for l in lines {
        out.push('\n');
        out.push_str(l.trim_end());
    }
    out
}

/// An age in whole seconds, as trackref reports it: `265s ago`.
pub(crate) fn age(d: Duration) -> String {
    format!("{}s ago", d.as_secs())
}

/// A signed change: `+3`, `-2`, `0`.
pub(crate) fn change(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// `label` in at most `width` characters, keeping what comes before its
/// first `<` (the outer name: `HashMap<`, `fn main`) and shortening what is
/// inside from the left ([`shorten_left`]): `HashMap<…Page>>`.
pub(crate) fn shorten_inside(label: &str, width: usize) -> String {
    let len = |s: &str| s.chars().count();
    if len(label) <= width {
        return label.to_string();
    }
    match label.find('<') {
        Some(i) if len(&label[..=i]) + MIN_LABEL / 2 <= width => {
            let (head, rest) = label.split_at(i + 1);
            format!("{head}{}", shorten_left(rest, width - len(head)))
        }
        _ => shorten_left(label, width),
    }
}

/// Shortens `label` from the left to at most `width` characters by dropping
/// whole leading path segments or words (`…` marks the cut); never cuts a
/// word in the middle, so a single word longer than `width` stays whole.
pub(crate) fn shorten_left(label: &str, width: usize) -> String {
    let len = |s: &str| s.chars().count();
    if len(label) <= width {
        return label.to_string();
    }
    let mut rest = label;
    loop {
        let cut = rest.char_indices().find_map(|(i, c)| match c {
            ':' if rest[i..].starts_with("::") => Some(i + 2),
            ' ' | '<' | '(' | ',' => Some(i + 1),
            _ => None,
        });
        match cut {
            Some(i) if i < rest.len() => {
                rest = &rest[i..];
                if len(rest) < width {
                    return format!("…{rest}");
                }
            }
            // Nothing more to drop without cutting a word: the word is cut
            // too, from the left, rather than overflow the window.
            _ => {
                let keep = width.saturating_sub(1).max(1);
                let skip = len(rest).saturating_sub(keep);
                let tail: String = rest.chars().skip(skip).collect();
                return format!("…{tail}");
            }
        }
    }
}

pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0".to_string()
    } else {
        (part as f64 * 100.0 / whole as f64).round().to_string()
    }
}

/// `text` wrapped at spaces to lines of at most `width` characters (a word
/// longer than that stands alone), each line after the first indented by
/// `indent` spaces.
pub(crate) fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let n = word.chars().count();
        if line_len > 0 && line_len + 1 + n > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            line_len = indent;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += n;
    }
    out
}

/// Bytes with a binary unit: `12.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_indents() {
        assert_eq!(wrap("a bb ccc dddd", 8, 2), "a bb ccc\n  dddd");
        assert_eq!(
            wrap("averyveryverylongword x", 5, 1),
            "averyveryverylongword\n x"
        );
        assert_eq!(wrap("short", 80, 4), "short");
    }

    #[test]
    fn shorten_inside_keeps_the_outer_name() {
        assert_eq!(
            shorten_inside("Arc<TrackedInner<HtmlResponse>>", 40),
            "Arc<TrackedInner<HtmlResponse>>"
        );
        assert_eq!(
            shorten_inside("Arc<TrackedInner<HtmlResponse>>", 22),
            "Arc<…HtmlResponse>>"
        );
        assert_eq!(
            shorten_inside("HashMap<u64, Box<Page>> (?)", 22),
            "HashMap<…Page>> (?)"
        );
    }

    #[test]
    fn shorten_left_drops_whole_segments() {
        assert_eq!(shorten_left("Box<app::Widget>", 40), "Box<app::Widget>");
        assert_eq!(
            shorten_left("alloc::vec::Vec<app::Request>", 20),
            "…Vec<app::Request>"
        );
        assert_eq!(
            shorten_left("alloc::vec::Vec<app::Request>", 16),
            "…app::Request>"
        );
        // A word longer than the room is cut too: a table never runs past
        // the window.
        assert_eq!(shorten_left("a_very_long_single_word", 5), "…word");
        assert_eq!(shorten_left("app::a_very_long_single_word", 5), "…word");
        assert_eq!(
            shorten_left("fn app::test_main_static", 16),
            "…est_main_static"
        );
    }
}
