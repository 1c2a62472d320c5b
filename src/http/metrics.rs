//! `/metrics`: Prometheus' text exposition format, with labels bounded so
//! that a scrape never explodes in cardinality.

use std::fmt::Write;

use crate::heap::Kind;

/// Tracked classes given a series each, at most (sorted by name).
pub(crate) const MAX_CLASSES: usize = 100;
/// The longest label value (characters); longer ones are cut with `…`.
pub(crate) const MAX_LABEL: usize = 120;

/// One metric family: its help, type and samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn start<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value escaped as the format wants (`\\`, `\"`, `\n`) and cut
/// to [`MAX_LABEL`] characters.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len().min(MAX_LABEL) + 8);
    for (i, c) in v.chars().enumerate() {
        if i == MAX_LABEL {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The metrics page: counters, jemalloc's figures, leakscope's own memory,
/// live instances per tracked class, and the live bytes and blocks of the
/// `top` largest types and sites.
pub fn render(top: usize) -> String {
    let mut out = String::with_capacity(16 * 1024);
    if let Ok(s) = crate::stats() {
        let gauges: [(&str, &str, u64); 4] = [
            (
                "leakscope_live_bytes",
                "Bytes in live blocks (allocated minus freed), as the program asked for them.",
                s.live_bytes,
            ),
            ("leakscope_live_blocks", "Live blocks.", s.live_blocks),
            (
                "leakscope_peak_live_bytes",
                "The peak of live bytes (an estimate outside exact mode).",
                s.peak_live_bytes,
            ),
            (
                "leakscope_own_bytes",
                "Bytes leakscope holds for itself (recorder, symbol tables).",
                s.own_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            Family::start(&mut out, name, "gauge", help).sample(name, &[], v);
        }
        let name = "leakscope_own_part_bytes";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "Parts of leakscope's own memory: the recorder, debug info (frames, index, layouts), the console's sessions and views.",
        );
        let rest = s
            .own_bytes
            .saturating_sub(s.recorder_bytes + s.debug_info_bytes);
        f.sample(name, &[("part", "recorder")], s.recorder_bytes);
        f.sample(name, &[("part", "debug_info")], s.debug_info_bytes);
        f.sample(name, &[("part", "sessions_and_views")], rest);
        let name = "leakscope_own_bound_bytes";
        Family::start(
            &mut out,
            name,
            "gauge",
            "The bound leakscope keeps its own memory within (16 MiB + 5% of live bytes; exact mode adds 48 B per live block).",
        )
        .sample(name, &[], s.own_bound);
        let counters: [(&str, &str, u64); 4] = [
            (
                "leakscope_allocated_bytes_total",
                "Bytes allocated since the start.",
                s.total_bytes,
            ),
            (
                "leakscope_allocated_blocks_total",
                "Blocks allocated since the start.",
                s.total_blocks,
            ),
            (
                "leakscope_freed_bytes_total",
                "Bytes freed since the start.",
                s.freed_bytes,
            ),
            (
                "leakscope_freed_blocks_total",
                "Blocks freed since the start.",
                s.freed_blocks,
            ),
        ];
        for (name, help, v) in counters {
            Family::start(&mut out, name, "counter", help).sample(name, &[], v);
        }
        let name = "leakscope_jemalloc_bytes";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "jemalloc's own figures, by statistic.",
        );
        let j = &s.jemalloc;
        for (stat, v) in [
            ("allocated", j.allocated),
            ("active", j.active),
            ("resident", j.resident),
            ("mapped", j.mapped),
            ("retained", j.retained),
            ("metadata", j.metadata),
        ] {
            f.sample(name, &[("stat", stat)], v);
        }
    }
    let name = "leakscope_trackref_live";
    let mut f = Family::start(
        &mut out,
        name,
        "gauge",
        "Live instances per tracked class (trackref).",
    );
    for c in crate::trackref::live_refs().iter().take(MAX_CLASSES) {
        f.sample(name, &[("class", c.name)], c.live);
    }
    let name = "leakscope_leak_suspect_bytes";
    let mut f = Family::start(
        &mut out,
        name,
        "gauge",
        "Live bytes of each suspect of the leak report (a type and site whose live bytes grew in a sustained way over the growth history); no sample when there is none.",
    );
    for s in crate::leaks().suspects {
        f.sample(name, &[("type", &s.type_name), ("site", &s.site)], s.bytes);
    }
    let heap = crate::hpy().heap();
    let estimated = if heap.estimated() { 1 } else { 0 };
    Family::start(
        &mut out,
        "leakscope_heap_estimated",
        "gauge",
        "1 when the heap figures below are estimates from samples, 0 when exact.",
    )
    .sample("leakscope_heap_estimated", &[], estimated);
    for (kind, label, what) in [(Kind::Type, "type", "type"), (Kind::Site, "site", "site")] {
        let p = heap.partition(kind);
        for (unit, field) in [("bytes", 0), ("blocks", 1)] {
            let name = format!("leakscope_heap_{label}_{unit}");
            let help = format!(
                "Live {unit} of the {top} largest {what}s of the recorded heap (the rest under \
                 {label}=\"(other)\")."
            );
            let mut f = Family::start(&mut out, &name, "gauge", &help);
            let rows = p.rows();
            for r in rows.iter().take(top) {
                let v = if field == 0 { r.size } else { r.count };
                f.sample(&name, &[(label, &r.label)], v);
            }
            let rest: u64 = rows
                .iter()
                .skip(top)
                .map(|r| if field == 0 { r.size } else { r.count })
                .sum();
            if rows.len() > top {
                f.sample(&name, &[(label, "(other)")], rest);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_bounded() {
        assert_eq!(label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label_value("x\ny"), "x\\ny");
        let long = "x".repeat(500);
        assert_eq!(label_value(&long).chars().count(), MAX_LABEL + 1);
    }
}
