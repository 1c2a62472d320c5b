//! Views of the heap: Guppy's partitions, diffs and stacks frame by
//! frame.

use std::fmt;

use super::table::{
    MIN_LABEL, WIDTH, change, columns_width, finish, label_width, percent, shorten_inside,
    shorten_left, table, wrap,
};
use crate::heap::{Heap, HeapDiff, Kind, Partition, Paths, Totals};
use crate::symbols::{self, Frame};

/// How a row's label reads in `width` columns: types without module paths
/// (`Arc<TrackedInner<HtmlResponse>>`; the row's `label` keeps the full
/// name), shortened inside their generic arguments, never by cutting the
/// outer container or a function's name; other labels from the left.
pub(super) fn shown_label(kind: Kind, label: &str, width: usize) -> String {
    match kind {
        Kind::Type => shorten_inside(&symbols::short_type(label), width),
        Kind::Via | Kind::Referrers => shorten_inside(label, width),
        Kind::Site => {
            let label = symbols::short_site(label);
            // A site too long keeps the program's frame, its line above
            // all, and only marks the dependency it went through.
            if label.chars().count() <= width {
                return label;
            }
            let label = match label.split_once(" via ") {
                Some((program, _)) => format!("{program} via …"),
                None => label,
            };
            // Then the closures inside the function go, then the mark of
            // the dependency, before any of the function's name.
            let label = if label.chars().count() > width {
                without_closures(&label)
            } else {
                label
            };
            let label = match label.strip_suffix(" via …") {
                Some(program) if label.chars().count() > width => program.to_string(),
                _ => label,
            };
            // The mark of a stack with no program frame stays whole while
            // anything of the frame after it fits: it says that frame is
            // not the program's.
            let mark = symbols::NO_PROGRAM_FRAME;
            let room = width.saturating_sub(mark.chars().count());
            match label.strip_prefix(mark) {
                Some(rest) if room >= 4 => format!("{mark}{}", shorten_left(rest, room)),
                _ => shorten_left(&label, width),
            }
        }
        Kind::Stack => shown_stack(label, width),
        _ => shorten_left(label, width),
    }
}

/// A stack's label (`f (file.rs:12) ← g ← main`) in `width` columns: each
/// frame without module paths; when too long, the closures go, then the
/// outer frames from the last, so the innermost frame (where the blocks
/// were made) stays whole as long as it fits.
fn shown_stack(label: &str, width: usize) -> String {
    let frames: Vec<String> = label.split(" ← ").map(symbols::short_site).collect();
    let all = frames.join(" ← ");
    if all.chars().count() <= width {
        return all;
    }
    let frames: Vec<String> = frames.iter().map(|f| without_closures(f)).collect();
    for k in (1..=frames.len()).rev() {
        let mut shown = frames[..k].join(" ← ");
        if k < frames.len() {
            shown.push_str(" ← …");
        }
        if shown.chars().count() <= width {
            return shown;
        }
    }
    shorten_left(&frames[0], width)
}

/// `f::{closure#0}::{closure#1}` → `f`.
fn without_closures(label: &str) -> String {
    let mut out = label.to_string();
    while let Some(at) = out.find("::{closure#") {
        match out[at..].find('}') {
            Some(end) => out.replace_range(at..at + end + 1, ""),
            None => break,
        }
    }
    out
}

/// Guppy's heading: `Partition of a set of N objects. Total size = X bytes.`
fn partition_heading(count: u64, size: u64, estimated: bool) -> String {
    let objects = if count == 1 { "object" } else { "objects" };
    if estimated {
        format!(
            "Partition of a set of about {count} {objects} (estimated from samples). \
             Total size = about {size} bytes."
        )
    } else {
        format!("Partition of a set of {count} {objects}. Total size = {size} bytes.")
    }
}

/// One page of a partition, Guppy's way: heading, Index, Count, %, Size, %,
/// Cumulative, %, Kind; then `<N more rows. Type e.g. '_.more' to view.>`.
pub(crate) fn partition(p: &Partition, width: usize) -> String {
    partition_labelled(p, width, false)
}

/// [`partition`], with every label whole when `full`.
fn partition_labelled(p: &Partition, width: usize, full: bool) -> String {
    let total = p.heap().totals();
    let rows = p.rows();
    let mut cumulative: Vec<u64> = Vec::with_capacity(rows.len());
    let mut acc = 0;
    for r in rows {
        acc += r.size;
        cumulative.push(acc);
    }
    let page: Vec<_> = p.page().collect();
    let cells: Vec<[String; 7]> = page
        .iter()
        .map(|(i, r)| {
            [
                i.to_string(),
                r.count.to_string(),
                percent(r.count, total.count),
                r.size.to_string(),
                percent(r.size, total.size),
                cumulative[*i].to_string(),
                percent(cumulative[*i], total.size),
            ]
        })
        .collect();
    let header = [
        "Index",
        "Count",
        "%",
        "Size",
        "%",
        "Cumulative",
        "%",
        p.kind().heading(),
    ];
    // A narrow window drops the cumulative columns before the label.
    // So does a partition whose rows overlap: cumulative sums would pass
    // the whole.
    // The label column is never narrower than its heading.
    let least = MIN_LABEL.max(header[7].len());
    let narrow = p.kind().overlapping() || columns_width(&cells, &header) + least > width;
    let (kept, header): (Vec<usize>, Vec<&str>) = if narrow {
        let kept = vec![0, 1, 2, 3, 4];
        let header = kept.iter().map(|&i| header[i]).chain([header[7]]).collect();
        (kept, header)
    } else {
        ((0..7).collect(), header.to_vec())
    };
    let shown: Vec<Vec<String>> = cells
        .iter()
        .map(|c| kept.iter().map(|&i| c[i].clone()).collect())
        .collect();
    let label_width = if narrow {
        let five: Vec<[String; 5]> = shown
            .iter()
            .map(|c| std::array::from_fn(|i| c[i].clone()))
            .collect();
        label_width(&five, &header, width)
    } else {
        label_width(&cells, &header, width)
    };
    let right: Vec<usize> = (0..kept.len()).collect();
    let mut t = table(&header, &right);
    for ((_, r), mut row) in page.iter().zip(shown) {
        row.push(if full {
            r.label.clone()
        } else {
            shown_label(p.kind(), &r.label, label_width)
        });
        t.add_row(row);
    }
    let mut out = wrap(
        &partition_heading(total.count, total.size, p.heap().estimated()),
        width,
        0,
    );
    out.push('\n');
    out.push_str(&build_note(width));
    if p.kind().overlapping() {
        out.push_str(&wrap(
            "A block held by several references is counted under each.",
            width,
            0,
        ));
        out.push('\n');
    }
    if matches!(p.kind(), Kind::Via | Kind::Referrers)
        && let Some(note) = p.heap().graph_note()
    {
        out.push_str(&wrap(&note, width, 0));
        out.push('\n');
    }
    let text = finish(&t);
    out.push_str(&text);
    out.push('\n');
    out.push_str(&legend(&text, width));
    if p.kind() == Kind::Site
        && page
            .iter()
            .any(|(_, r)| r.label.starts_with(symbols::NO_PROGRAM_FRAME))
        && !symbols::app_crates_named()
    {
        out.push_str(&wrap(NO_PROGRAM_LEGEND, width, 0));
        out.push('\n');
    }
    let more = p.rows_after_page();
    if more > 0 {
        out.push_str(&format!(
            "<{more} more rows. Type e.g. '_.more' to view.>\n"
        ));
    }
    out
}

/// Guppy's `sp`: each distinct shortest path from a root, root first, one
/// step a line, with the blocks at its end.
pub(crate) fn paths(p: &Paths, width: usize) -> String {
    let objects = if p.count == 1 { "object" } else { "objects" };
    let mut out = wrap(
        &format!(
            "Shortest paths from a root to a set of {} {objects}. Total size = {} bytes.",
            p.count, p.size
        ),
        width,
        0,
    );
    out.push('\n');
    out.push_str(&build_note(width));
    if p.before_exact {
        out.push_str(&wrap(
            "Exact mode since a switch: blocks from before it are not in the graph, so a \
             path through one of them is not seen (a block held only that way has none).",
            width,
            0,
        ));
        out.push('\n');
    }
    for (i, row) in p.rows.iter().enumerate() {
        out.push_str(&format!(
            "{i}: {} {} ({}%), {} bytes ({}%)\n",
            row.count,
            if row.count == 1 { "object" } else { "objects" },
            percent(row.count, p.count),
            row.size,
            percent(row.size, p.size)
        ));
        for (k, step) in row.steps.iter().enumerate() {
            let lead = if k == 0 { "   " } else { "   → " };
            let room = width.saturating_sub(lead.chars().count()).max(MIN_LABEL);
            out.push_str(lead);
            out.push_str(&shorten_left(step, room));
            out.push('\n');
        }
    }
    let legend = legend(&out, width);
    out.push_str(&legend);
    let objects = |n: u64| if n == 1 { "object" } else { "objects" };
    if p.unreachable > 0 {
        let line = if p.before_exact {
            format!(
                "{} {} no root reaches through blocks recorded in exact mode: held from \
                 before the switch to exact mode, or unreachable.",
                p.unreachable,
                objects(p.unreachable)
            )
        } else {
            format!(
                "{} {} no root reaches (see hpy().unreachable()).",
                p.unreachable,
                objects(p.unreachable)
            )
        };
        out.push_str(&wrap(&line, width, 0));
        out.push('\n');
    }
    if p.from_samples > 0 {
        let line = format!(
            "{} {} recorded as samples before exact mode: not in the graph, no path known.",
            p.from_samples,
            objects(p.from_samples)
        );
        out.push_str(&wrap(&line, width, 0));
        out.push('\n');
    }
    if p.rows.is_empty() && p.unreachable == 0 && p.from_samples == 0 {
        out.push_str("No objects.\n");
    }
    out
}

/// What ` (?)` after a type means.
pub(crate) const AMBIGUOUS_LEGEND: &str = "(?): the type comes from a generic function that \
     the compiler may have merged with other instantiations; it may stand for several types.";

/// Under a table of sites with a row that has no program frame, while
/// `LEAKSCOPE_APP_CRATES` is unset.
const NO_PROGRAM_LEGEND: &str = "[no program frame]: no frame of the stack is the program's own \
     code (the package of the binary's main, and code from outside the cargo registry, git \
     checkouts and the toolchain). To count other crates as the program's, name them: \
     LEAKSCOPE_APP_CRATES=crate_a,crate_b.";

/// The legend line for `text` (a rendered table) when a row in it has a
/// ` (?)` type; empty otherwise.
pub(super) fn legend(text: &str, width: usize) -> String {
    if text.contains(" (?)") {
        wrap(AMBIGUOUS_LEGEND, width, 0) + "\n"
    } else {
        String::new()
    }
}

/// The build's note (what it lacks for types and stacks), wrapped, with
/// its line end; empty when the build has everything.
fn build_note(width: usize) -> String {
    match crate::symbols::build_info().note() {
        Some(note) => wrap(&note, width, 0) + "\n",
        None => String::new(),
    }
}

/// The difference between two heaps, Pympler's and tracemalloc's way:
/// signed counts and sizes, largest absolute change first.
pub(crate) fn diff(d: &HeapDiff, width: usize) -> String {
    let heading = format!(
        "Difference: {} blocks, {} bytes{}.",
        change(d.count),
        change(d.size),
        if d.estimated {
            " (estimated from samples)"
        } else {
            ""
        }
    );
    let mut out = wrap(&heading, width, 0);
    out.push('\n');
    out.push_str(&build_note(width));
    if d.rows.is_empty() {
        return out;
    }
    let cells: Vec<[String; 2]> = d
        .rows
        .iter()
        .map(|r| [change(r.count), change(r.size)])
        .collect();
    let header = ["Count", "Size", d.kind.heading()];
    let label_width = label_width(&cells, &header, width);
    let mut t = table(&header, &[0, 1]);
    for (r, c) in d.rows.iter().zip(cells) {
        t.add_row(vec![
            c[0].clone(),
            c[1].clone(),
            shown_label(d.kind, &r.label, label_width),
        ]);
    }
    let text = finish(&t);
    out.push_str(&text);
    out.push('\n');
    out.push_str(&legend(&text, width));
    out
}

/// The top `n` stacks of a heap, frame by frame: the program's frames
/// whole, runs of other frames folded (`… 41 frames in tokio, std`); at
/// the top, the frame the program called (`Vec::push`) stays. A frame too
/// long for `width` has its place on a line of its own and its name
/// shortened inside its generics. `full`: every frame, none folded.
pub(crate) fn stacks(list: &[(Vec<Frame>, Totals)], n: usize, width: usize, full: bool) -> String {
    let mut out = build_note(width);
    for (i, (frames, t)) in list.iter().take(n).enumerate() {
        out.push_str(&format!(
            "Stack {i}: {} objects, {} bytes\n",
            t.count, t.size
        ));
        let lines = if full {
            frames.iter().map(frame_line).collect()
        } else {
            folded(frames)
        };
        for line in lines {
            fit_frame(&mut out, &line, width);
        }
    }
    if list.len() > n {
        out.push_str(&format!("<{} more stacks>\n", list.len() - n));
    }
    out
}

/// One frame line of [`stacks`], indented, within `width` where it can
/// be: `function (place)`, else the function (shortened inside its
/// generics) and the place below it.
fn fit_frame(out: &mut String, line: &str, width: usize) {
    const INDENT: &str = "    ";
    let room = width.saturating_sub(INDENT.len()).max(MIN_LABEL);
    if line.chars().count() <= room {
        out.push_str(&format!("{INDENT}{line}\n"));
        return;
    }
    let (function, place) = match line.rfind(" (") {
        Some(i) if line.ends_with(')') => (&line[..i], Some(&line[i + 1..])),
        _ => (line, None),
    };
    out.push_str(&format!("{INDENT}{}\n", shorten_inside(function, room)));
    if let Some(place) = place {
        out.push_str(&format!("{INDENT}    {}\n", shorten_left(place, room - 4)));
    }
}

/// The shortest run of frames outside the program that is folded.
const FOLD_AT_LEAST: usize = 3;

/// A stack's lines, runs of frames outside the program folded.
/// A frame as a line of [`stacks`]: `(inlined) function (place)`.
fn frame_line(f: &Frame) -> String {
    let place = f.place().map_or_else(String::new, |p| format!(" ({p})"));
    format!(
        "{}{}{place}",
        if f.inlined { "(inlined) " } else { "" },
        f.function
    )
}

fn folded(frames: &[Frame]) -> Vec<String> {
    let line = frame_line;
    let fold = |run: &[Frame]| {
        let mut crates: Vec<&str> = Vec::new();
        // C functions (`main`, `start_thread`) name no crate.
        for f in run.iter().filter(|f| f.function.contains("::")) {
            if !crates.contains(&f.crate_name()) {
                crates.push(f.crate_name());
            }
        }
        if crates.is_empty() {
            format!("… {} frames", run.len())
        } else {
            format!("… {} frames in {}", run.len(), crates.join(", "))
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        if frames[i].is_program() {
            out.push(line(&frames[i]));
            i += 1;
            continue;
        }
        let end = frames[i..]
            .iter()
            .position(Frame::is_program)
            .map_or(frames.len(), |k| i + k);
        let run = &frames[i..end];
        // At the top, the last frame before the program's is what it
        // called: kept, the plumbing above it folded.
        let (run, called) = match (i, run.split_last()) {
            (0, Some((last, rest))) if end < frames.len() => (rest, Some(last)),
            _ => (run, None),
        };
        if run.len() >= FOLD_AT_LEAST {
            out.push(fold(run));
        } else {
            out.extend(run.iter().map(line));
        }
        out.extend(called.map(line));
        i = end;
    }
    out
}

impl fmt::Display for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&partition(&self.bytype(), WIDTH))
    }
}

impl Partition {
    /// Renders the current page for a terminal `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        partition(self, width)
    }

    /// Renders the current page with every label whole (module paths and
    /// all), however wide that makes it.
    pub fn render_full(&self, width: usize) -> String {
        partition_labelled(self, width, true)
    }
}

impl Paths {
    /// The paths as the console shows them, `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        paths(self, width)
    }
}

impl fmt::Display for Paths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(WIDTH))
    }
}

impl fmt::Display for HeapDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&diff(self, WIDTH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_row_keeps_its_innermost_frame_and_cuts_outer_ones() {
        let label = "<app::engine::Engine>::crawl::{closure#0}::{closure#0} (engine.rs:229) \
                     ← <app::engine::Engine>::crawl::{closure#0} ← app::main";
        assert_eq!(
            shown_label(Kind::Stack, label, 200),
            "Engine::crawl::{closure#0}::{closure#0} (engine.rs:229) ← \
             Engine::crawl::{closure#0} ← main"
        );
        assert_eq!(
            shown_label(Kind::Stack, label, 60),
            "Engine::crawl (engine.rs:229) ← Engine::crawl ← main"
        );
        assert_eq!(
            shown_label(Kind::Stack, label, 40),
            "Engine::crawl (engine.rs:229) ← …"
        );
        // The innermost frame alone, without the mark, before any of it
        // is cut (from the left, as a site is).
        assert_eq!(
            shown_label(Kind::Stack, label, 31),
            "Engine::crawl (engine.rs:229)"
        );
        assert_eq!(shown_label(Kind::Stack, label, 20), "…(engine.rs:229)");
    }

    #[test]
    fn stacks_fold_the_runtime_and_keep_the_program() {
        let f = |function: &str, file: &str| Frame {
            addr: 0,
            function: function.into(),
            file: Some(file.into()),
            line: Some(7),
            column: None,
            inlined: false,
            v0: true,
        };
        let rustc = "/rustc/abc/library/alloc/src/raw_vec.rs";
        let tokio = "/root/.cargo/registry/src/index.crates.io-0/tokio-1/src/rt.rs";
        let mut frames = vec![
            f("alloc::raw_vec::finish_grow", rustc),
            f("<alloc::raw_vec::RawVecInner>::grow_one", rustc),
            f("<alloc::vec::Vec<u8>>::push", rustc),
            f("app::fill", "/src/app/main.rs"),
            f("app::run", "/src/app/main.rs"),
        ];
        for k in 0..41 {
            frames.push(f(&format!("<tokio::runtime::Runtime>::poll{k}"), tokio));
        }
        frames.push(f("std::rt::lang_start", rustc));
        frames.push(f("main", rustc));
        assert_eq!(
            folded(&frames),
            [
                "alloc::raw_vec::finish_grow (raw_vec.rs:7)",
                "<alloc::raw_vec::RawVecInner>::grow_one (raw_vec.rs:7)",
                "<alloc::vec::Vec<u8>>::push (raw_vec.rs:7)",
                "app::fill (main.rs:7)",
                "app::run (main.rs:7)",
                "… 43 frames in tokio, std",
            ]
        );
        let list = vec![(frames, Totals { count: 2, size: 64 })];
        let full = stacks(&list, 10, 200, true);
        assert_eq!(full.lines().filter(|l| l.starts_with("    ")).count(), 48);
        assert!(full.contains("    <tokio::runtime::Runtime>::poll40 (rt.rs:7)\n"));
        let short = stacks(&list, 10, 200, false);
        assert_eq!(short.lines().filter(|l| l.starts_with("    ")).count(), 6);
    }

    #[test]
    fn long_labels_keep_what_leads_to_the_culprit() {
        let site = "<app::engine::Engine>::crawl::{closure#0} (engine.rs:220) via reqwest::…::Response::text";
        assert_eq!(
            shown_label(Kind::Site, site, 36),
            "Engine::crawl (engine.rs:220) via …"
        );
        assert_eq!(
            shown_label(Kind::Site, site, 30),
            "Engine::crawl (engine.rs:220)"
        );
        assert_eq!(shown_label(Kind::Site, site, 24), "…crawl (engine.rs:220)");
        assert_eq!(
            shown_label(Kind::Site, site, 200),
            "Engine::crawl::{closure#0} (engine.rs:220) via reqwest::…::Response::text"
        );
        // With no program frame, the mark stays whole while some of the
        // frame after it fits.
        let std_only =
            "[no program frame] <alloc::boxed::Box<str>>::try_clone_from_ref_in (boxed.rs:872)";
        assert_eq!(
            shown_label(Kind::Site, std_only, 36),
            "[no program frame] …(boxed.rs:872)"
        );
        assert_eq!(
            shown_label(Kind::Site, std_only, 28),
            "[no program frame] ….rs:872)"
        );
        // Narrower than the mark and a few characters: cut like any label.
        assert_eq!(shown_label(Kind::Site, std_only, 12), "…xed.rs:872)");
        let ty = "alloc::sync::Arc<leakscope::trackref::tracked::TrackedInner<app::spiders::HtmlResponse>>";
        assert_eq!(
            shown_label(Kind::Type, ty, 40),
            "Arc<TrackedInner<HtmlResponse>>"
        );
        assert_eq!(shown_label(Kind::Type, ty, 22), "Arc<…HtmlResponse>>");
    }
}
