//! The HTTP endpoint's page, as HTML: the overview at `/` (live memory
//! over time, the leak report, the heap's top rows, the flamegraph) and
//! the drill-down pages of the heap at [`HEAP_PATH`]. Every asset is in the
//! binary; the page loads nothing from elsewhere. [`markup`] holds the
//! building blocks (they know no type of leakscope's), [`address`] the
//! drill-down's addresses.

pub(crate) mod address;
pub(crate) mod markup;

use std::fmt::Write as _;
use std::time::Duration;

pub(crate) use self::address::HEAP_PATH;
use self::address::{Address, By, VIEWS};
use self::markup::{Cell, Table, escape, link, sparkline};
use super::heap::shown_label;
use super::leaks::{notes, span, summary};
use super::table::{bytes, percent};
use crate::heap::{Kind, Partition, Paths, Retainers, Totals};
use crate::leaks::{GrowthHistory, LeakReport, LeakSuspect};

/// Where the page's style sheet is served.
pub(crate) const CSS_PATH: &str = "/assets/page.css";
/// Where the page's script is served.
pub(crate) const SCRIPT_PATH: &str = "/assets/page.js";
/// The page's style sheet.
pub(crate) const CSS: &str = include_str!("assets/page.css");
/// The page's script: draws the chart from `/debug/history`, and sizes the
/// flamegraph.
pub(crate) const SCRIPT: &str = include_str!("assets/page.js");
/// Where the chart's figures are served (the growth history as JSON).
pub(crate) const HISTORY_PATH: &str = "/debug/history";
/// Where the page's flamegraph is served.
pub(crate) const FLAMEGRAPH_PATH: &str = "/debug/flamegraph.svg";
/// Where the DHAT file of the heap is served.
pub(crate) const DHAT_PATH: &str = "/debug/dhat.json";

/// Rows a table of the overview shows.
const TOP_ROWS: usize = 10;
/// Rows a drill-down page shows at most.
const PAGE_ROWS: usize = 50;
/// The widest a label is drawn before it is shortened (its whole text is
/// on hover).
const LABEL: usize = 90;

/// What every page's header says about the process.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    /// The process id.
    pub(crate) pid: u32,
    /// The mode in force.
    pub(crate) mode: crate::Mode,
    /// Whether figures are estimates from samples.
    pub(crate) estimated: bool,
    /// How long the process has run.
    pub(crate) uptime: Duration,
    /// Live bytes (leakscope's counters).
    pub(crate) live_bytes: u64,
    /// Bytes leakscope holds for itself, and its bound.
    pub(crate) own: Option<(u64, u64)>,
    /// What the build lacks, when it lacks something.
    pub(crate) build_note: Option<String>,
}

/// Which rows the chart stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChartBy {
    /// The largest types.
    Types,
    /// The largest sites.
    Sites,
}

impl ChartBy {
    /// Its name in the page's address (`/?chart=sites`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChartBy::Types => "types",
            ChartBy::Sites => "sites",
        }
    }
}

/// What the overview shows.
pub(crate) struct Overview<'a> {
    /// The header.
    pub(crate) header: &'a Header,
    /// Which rows the chart stacks.
    pub(crate) chart: ChartBy,
    /// The growth history (the chart's text alternative is drawn from it).
    pub(crate) history: &'a GrowthHistory,
    /// The leak report.
    pub(crate) report: &'a LeakReport,
    /// The heap by type and by site, or why it could not be taken.
    pub(crate) heap: Result<(Partition, Partition), String>,
}

/// The overview page at `/`.
pub(crate) fn overview(o: &Overview<'_>) -> String {
    let mut body = header(o.header, "Overview");
    body.push_str("<main>");
    chart(&mut body, o.chart, o.history);
    leak_report(&mut body, o.report);
    heap_now(&mut body, &o.heap);
    flamegraph(&mut body);
    body.push_str("</main>");
    markup::page(
        &format!("leakscope · process {}", o.header.pid),
        CSS_PATH,
        SCRIPT_PATH,
        &body,
    )
}

/// What a drill-down page shows.
pub(crate) enum Drilled {
    /// The blocks split by a kind.
    Rows(Partition),
    /// Their shortest paths from the roots.
    Paths(Paths),
    /// What retains them.
    Dominators(Retainers),
    /// Why it cannot be shown (the heap changed since the link was made, a
    /// view this mode has not got, no memory for it).
    Refused(String),
}

/// A drill-down page: the rows chosen, the views of what they leave, and
/// the view asked for.
pub(crate) fn drill(
    h: &Header,
    address: &Address,
    totals: Option<(Totals, bool)>,
    shown: &Drilled,
    graph_note: Option<&str>,
) -> String {
    let mut body = header(h, "Heap");
    body.push_str("<main>");
    breadcrumb(&mut body, address);
    tabs(&mut body, address, h.mode == crate::Mode::Exact);
    if let Some((t, estimated)) = totals {
        let approx = if estimated { "~" } else { "" };
        let _ = write!(
            body,
            "<p class=\"totals\">{approx}{} blocks, {approx}{} ({approx}{} bytes){}.</p>",
            t.count,
            bytes(t.size),
            t.size,
            if estimated {
                " — estimated from samples"
            } else {
                ""
            }
        );
    }
    if let Some(note) = graph_note.filter(|_| address.by.needs_graph()) {
        let _ = write!(body, "<p class=\"note\">{}</p>", escape(note));
    }
    match shown {
        Drilled::Rows(p) => body.push_str(&rows_table(p, address, PAGE_ROWS)),
        Drilled::Paths(p) => paths(&mut body, p),
        Drilled::Dominators(d) => dominators(&mut body, d, address),
        Drilled::Refused(why) => {
            let _ = write!(
                body,
                "<p class=\"refused\" role=\"alert\">{}</p>",
                escape(why)
            );
        }
    }
    body.push_str("</main>");
    markup::page(
        &format!("leakscope · heap · process {}", h.pid),
        CSS_PATH,
        SCRIPT_PATH,
        &body,
    )
}

/// A page that only says why a request was refused.
pub(crate) fn refusal(h: &Header, why: &str) -> String {
    let mut body = header(h, "");
    let _ = write!(
        body,
        "<main><p class=\"refused\" role=\"alert\">{}</p><p>{}</p></main>",
        escape(why),
        link("Back to the overview", "/")
    );
    markup::page("leakscope", CSS_PATH, SCRIPT_PATH, &body)
}

fn header(h: &Header, current: &str) -> String {
    let mut out = String::from("<header><div class=\"bar\"><h1>leakscope</h1><nav>");
    for (name, href) in [
        ("Overview", "/"),
        ("Heap", "/heap?by=type"),
        ("Leak report (text)", "/debug/leaks"),
        ("Metrics", "/metrics"),
    ] {
        let current = if name == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a href=\"{}\"{current}>{}</a>",
            escape(href),
            escape(name)
        );
    }
    out.push_str("</nav></div><dl class=\"facts\">");
    let own = match h.own {
        Some((own, bound)) => format!("{} (bound {})", bytes(own), bytes(bound)),
        None => "unknown".to_string(),
    };
    for (term, value) in [
        ("process", h.pid.to_string()),
        ("mode", h.mode.name().to_string()),
        ("up", span(h.uptime.as_secs_f64())),
        ("live", bytes(h.live_bytes)),
        ("leakscope itself", own),
    ] {
        let _ = write!(
            out,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(term),
            escape(&value)
        );
    }
    out.push_str("</dl>");
    if let Some(note) = &h.build_note {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
    }
    if h.mode != crate::Mode::Exact {
        let _ = write!(
            out,
            "<p class=\"note\">In {} mode the figures are {}, and what holds the blocks \
             (via, sp, dominators, the leak report's holders) is not known: the console's \
             <code>leaks(deep=True)</code> switches to exact mode for a few seconds to find \
             it, <code>set_mode('exact')</code> for good.</p>",
            h.mode.name(),
            if h.estimated {
                "estimated from samples"
            } else {
                "not recorded"
            }
        );
    }
    out.push_str("</header>");
    out
}

fn chart(out: &mut String, by: ChartBy, history: &GrowthHistory) {
    let other = match by {
        ChartBy::Types => ChartBy::Sites,
        ChartBy::Sites => ChartBy::Types,
    };
    let _ = write!(
        out,
        "<section aria-labelledby=\"memory-h\"><h2 id=\"memory-h\">Live memory over time</h2>\
         <p class=\"toggle\">Stacked by <strong>{}</strong> · {}</p>",
        by.name(),
        link(
            &format!("stack by {}", other.name()),
            &format!("/?chart={}", other.name())
        )
    );
    let _ = write!(
        out,
        "<figure class=\"chart\"><div class=\"plot\"><svg id=\"chart\" data-by=\"{}\" \
         data-source=\"{HISTORY_PATH}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" \
         viewBox=\"0 0 800 280\" preserveAspectRatio=\"none\"><title id=\"chart-title\">Live \
         bytes over time, the largest {} stacked</title><desc id=\"chart-desc\">{}</desc></svg>\
         <div id=\"chart-tip\" class=\"tip\" role=\"status\" hidden></div></div>\
         <ul id=\"chart-legend\" class=\"legend\"></ul><figcaption>{}</figcaption></figure>\
         </section>",
        by.name(),
        by.name(),
        escape(&chart_text(history)),
        escape(&format!(
            "A point every {} (LEAKSCOPE_WATCH_INTERVAL); the chart follows by itself. The \
             history takes {}.",
            span(history.interval_seconds),
            bytes(history.history_bytes as u64)
        )),
    );
}

/// The chart in words, for those who cannot see it.
fn chart_text(h: &GrowthHistory) -> String {
    if !h.running {
        return "No growth history runs.".to_string();
    }
    let (Some(first), Some(last)) = (h.total.bytes.first(), h.total.bytes.last()) else {
        return "No point taken yet.".to_string();
    };
    let secs = h.times.last().unwrap_or(&0.0) - h.times.first().unwrap_or(&0.0);
    format!(
        "Live bytes went from {} to {} over {} ({} points).",
        bytes(*first),
        bytes(*last),
        span(secs),
        h.times.len()
    )
}

fn leak_report(out: &mut String, r: &LeakReport) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"leaks-h\"><h2 id=\"leaks-h\">Leak report</h2><p>{}</p>",
        escape(&summary(r))
    );
    if r.suspects.is_empty() || r.points < r.points_needed {
        out.push_str("</section>");
        return;
    }
    let approx = if r.estimated { "~" } else { "" };
    let exact = r.suspects.iter().any(|s| s.held_by.is_some());
    let headings = ["Type", "Site", "Now", "Growth", "For", "History"];
    let mut t = Table::new("Suspects, fastest growth first", &headings, &[2, 3, 4]);
    for s in &r.suspects {
        let row = vec![
            label_cell(Kind::Type, &s.type_name).linked(suspect_address(s, exact).href()),
            label_cell(Kind::Site, &s.site)
                .linked(Address::top().and_row(Kind::Site, &s.site).href()),
            Cell::text(format!(
                "{approx}{} in {approx}{} blocks",
                bytes(s.bytes),
                s.blocks
            )),
            Cell::text(format!(
                "{approx}+{}/min",
                bytes(s.bytes_per_minute.max(0.0) as u64)
            )),
            Cell::text(span(s.growing_seconds)),
            Cell::markup(sparkline(
                &s.history,
                &format!(
                    "from {} to {}",
                    bytes(*s.history.first().unwrap_or(&0)),
                    bytes(*s.history.last().unwrap_or(&0))
                ),
            )),
        ];
        match &s.held_by {
            Some(_) => t.row_with_detail(row, holder(s)),
            None => t.row(row),
        }
    }
    out.push_str(&t.draw());
    for note in notes(r) {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(&note));
    }
    out.push_str("</section>");
}

/// Where a suspect's row leads: its blocks by what holds them in exact
/// mode, else by site.
fn suspect_address(s: &LeakSuspect, exact: bool) -> Address {
    let a = Address::top().and_row(Kind::Type, &s.type_name);
    if exact && !s.site.is_empty() {
        a.and_row(Kind::Site, &s.site).shown(By::Kind(Kind::Via))
    } else {
        a
    }
}

fn holder(s: &LeakSuspect) -> String {
    let Some(h) = &s.held_by else {
        return String::new();
    };
    let mut out = format!(
        "<span class=\"dim\">held by</span> <span title=\"{}\">{}</span> \
         <span class=\"dim\">({} of {} blocks looked at)</span>",
        escape(&h.via),
        escape(&shown_label(Kind::Via, &h.via, LABEL)),
        h.blocks,
        h.of_blocks
    );
    for step in &h.above {
        let _ = write!(out, " ← {}", escape(&shown_label(Kind::Via, step, LABEL)));
    }
    if let Some((steps, n)) = &h.path {
        let _ = write!(
            out,
            "<br><span class=\"dim\">path</span> {} ({n} blocks)",
            escape(&steps.join(" → "))
        );
    }
    if let Some(k) = &h.kept_by {
        let _ = write!(
            out,
            "<br><span class=\"dim\">kept by</span> {} {} retaining {} ({}%)",
            k.blocks,
            escape(&shown_label(Kind::Type, &k.type_name, LABEL)),
            bytes(k.retained),
            percent(k.retained, k.reachable)
        );
    }
    out
}

fn heap_now(out: &mut String, heap: &Result<(Partition, Partition), String>) {
    out.push_str("<section aria-labelledby=\"heap-h\"><h2 id=\"heap-h\">The heap now</h2>");
    match heap {
        Err(why) => {
            let _ = write!(
                out,
                "<p class=\"refused\" role=\"alert\">{}</p>",
                escape(why)
            );
        }
        Ok((bytype, bysite)) => {
            let t = bytype.heap().totals();
            let approx = if bytype.heap().estimated() { "~" } else { "" };
            let _ = write!(
                out,
                "<p>{approx}{} blocks, {approx}{}. A row leads to its blocks split the next \
                 way; {} lists every view.</p><div class=\"pair\">",
                t.count,
                bytes(t.size),
                link("the heap page", &Address::top().href())
            );
            for (p, at) in [
                (bytype, Address::top()),
                (bysite, Address::top().shown(By::Kind(Kind::Site))),
            ] {
                let _ = write!(out, "<div>{}</div>", rows_table(p, &at, TOP_ROWS));
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</section>");
}

fn flamegraph(out: &mut String) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"flame-h\"><h2 id=\"flame-h\">The live heap by stack</h2>\
         <p>Each box is a function, as wide as the live bytes allocated under it; click one to \
         zoom in. The program's frames are whole; runs of the standard library's and \
         dependencies' frames are folded into one box in [brackets]. Download the live \
         heap, as it is when you click, as {} (go tool pprof) or as {} (Valgrind's \
         dh_view.html).</p>\
         <object id=\"flamegraph\" class=\"flame\" type=\"image/svg+xml\" \
         data-src=\"{FLAMEGRAPH_PATH}\" \
         aria-label=\"Flamegraph of the live heap by stack\">{}</object></section>",
        link("a pprof profile", "/debug/pprof/heap"),
        link("a DHAT file", DHAT_PATH),
        link("Open the flamegraph", FLAMEGRAPH_PATH),
    );
}

fn breadcrumb(out: &mut String, a: &Address) {
    out.push_str("<nav class=\"crumbs\" aria-label=\"Rows chosen\"><ol><li>");
    out.push_str(&link("the heap", &a.first(0).href()));
    out.push_str("</li>");
    for (i, (kind, label)) in a.steps.iter().enumerate() {
        let shown = format!(
            "{}: {}",
            By::Kind(*kind).name(),
            shown_label(*kind, label, LABEL)
        );
        out.push_str("<li>");
        if i + 1 == a.steps.len() {
            let _ = write!(
                out,
                "<span title=\"{}\">{}</span>",
                escape(label),
                escape(&shown)
            );
        } else {
            out.push_str(&link(&shown, &a.first(i + 1).href()));
        }
        out.push_str("</li>");
    }
    out.push_str("</ol></nav>");
}

fn tabs(out: &mut String, a: &Address, exact: bool) {
    out.push_str("<nav class=\"tabs\" aria-label=\"Views of these blocks\">");
    for (name, by) in VIEWS {
        let label = match by {
            By::Kind(Kind::Referrers) => "by referrers (rcs)".to_string(),
            By::Kind(_) => format!("by {name}"),
            By::Paths => "paths from roots (sp)".to_string(),
            By::Dominators => "what retains them (dominators)".to_string(),
        };
        let current = if by == a.by {
            " aria-current=\"page\""
        } else {
            ""
        };
        let dim = if by.needs_graph() && !exact {
            " class=\"dim\" title=\"from samples: exact mode knows what holds the blocks\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a href=\"{}\"{current}{dim}>{}</a>",
            escape(&a.shown(by).href()),
            escape(&label)
        );
    }
    out.push_str("</nav>");
}

fn label_cell(kind: Kind, label: &str) -> Cell {
    if label.is_empty() {
        return Cell::text("(unknown)");
    }
    Cell::text(shown_label(kind, label, LABEL))
        .titled(label)
        .breakable()
}

/// A partition's first `max` rows, each linking to its blocks.
fn rows_table(p: &Partition, at: &Address, max: usize) -> String {
    let kind = p.kind();
    let whole = p.heap().totals();
    let approx = if p.heap().estimated() { "~" } else { "" };
    let caption = format!(
        "By {}{}",
        By::Kind(kind).name(),
        if kind.overlapping() {
            " (a block held by several references is under each)"
        } else {
            ""
        }
    );
    let mut t = Table::new(
        &caption,
        &[kind.heading(), "Blocks", "%", "Bytes", "%"],
        &[1, 2, 3, 4],
    );
    for row in p.rows().iter().take(max) {
        t.row(vec![
            label_cell(kind, &row.label).linked(at.and_row(kind, &row.label).href()),
            Cell::text(format!("{approx}{}", row.count)),
            Cell::text(percent(row.count, whole.count)),
            Cell::text(format!("{approx}{}", bytes(row.size))),
            Cell::text(percent(row.size, whole.size)),
        ]);
    }
    let mut out = t.draw();
    let left = p.rows().len().saturating_sub(max);
    if left > 0 {
        let _ = write!(out, "<p class=\"dim\">{left} more rows, smaller.</p>");
    } else if t.len() == 0 {
        out.push_str("<p class=\"dim\">No blocks.</p>");
    }
    out
}

fn paths(out: &mut String, p: &Paths) {
    let mut t = Table::new(
        "Shortest paths from a root, the most common first",
        &["Path", "Blocks", "Bytes"],
        &[1, 2],
    );
    for row in p.rows.iter().take(PAGE_ROWS) {
        t.row(vec![
            Cell::text(row.steps.join(" → ")),
            Cell::text(row.count.to_string()),
            Cell::text(bytes(row.size)),
        ]);
    }
    out.push_str(&t.draw());
    let mut notes = Vec::new();
    if p.rows.len() > PAGE_ROWS {
        notes.push(format!("{} more paths, rarer.", p.rows.len() - PAGE_ROWS));
    }
    if p.unreachable > 0 {
        notes.push(format!(
            "{} of the blocks no root reaches (the console's hpy().unreachable() lists \
             them).",
            p.unreachable
        ));
    }
    if p.from_samples > 0 {
        notes.push(format!(
            "{} blocks are known only by their samples: no path is known for them.",
            p.from_samples
        ));
    }
    for n in notes {
        let _ = write!(out, "<p class=\"dim\">{}</p>", escape(&n));
    }
}

fn dominators(out: &mut String, d: &Retainers, at: &Address) {
    let mut t = Table::new(
        "What keeps the most alive: blocks no other block of these dominates, by type and \
         site, and all they retain",
        &["Type", "Site", "Blocks", "Own bytes", "Retained", "%"],
        &[2, 3, 4, 5],
    );
    for row in d.rows.iter().take(PAGE_ROWS) {
        let blocks = at
            .and_row(Kind::Type, &row.ty)
            .and_row(Kind::Site, &row.site)
            .shown(By::Kind(Kind::Via));
        t.row(vec![
            label_cell(Kind::Type, &row.ty).linked(blocks.href()),
            label_cell(Kind::Site, &row.site),
            Cell::text(row.count.to_string()),
            Cell::text(bytes(row.shallow)),
            Cell::text(bytes(row.retained)),
            Cell::text(percent(row.retained, d.reachable)),
        ]);
    }
    out.push_str(&t.draw());
    if d.unreachable > 0 {
        let _ = write!(
            out,
            "<p class=\"dim\">{} blocks no root reaches are not in the tree.</p>",
            d.unreachable
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            pid: 42,
            mode: crate::Mode::Sampled,
            estimated: true,
            uptime: Duration::from_secs(125),
            live_bytes: 3 << 20,
            own: Some((1 << 20, 16 << 20)),
            build_note: None,
        }
    }

    #[test]
    fn the_header_says_the_process_mode_and_what_sampled_mode_cannot_show() {
        let page = refusal(&header(), "no <such> row");
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.contains("<dt>process</dt><dd>42</dd>"));
        assert!(page.contains("<dt>mode</dt><dd>sampled</dd>"));
        assert!(page.contains("<dt>up</dt><dd>2 min 5 s</dd>"));
        assert!(page.contains("<dt>leakscope itself</dt><dd>1.0 MiB (bound 16.0 MiB)</dd>"));
        assert!(page.contains("is not known: the console's <code>leaks(deep=True)</code>"));
        assert!(page.contains("role=\"alert\">no &lt;such&gt; row</p>"));
        assert!(page.contains(&format!("<link rel=\"stylesheet\" href=\"{CSS_PATH}\">")));
    }
}
