//! HTML building blocks: escaping, links, tables whose cells may link, the
//! page's frame. Knows no type of leakscope's.

use std::fmt::Write as _;

/// `text` safe inside an element or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped, with a place to break (`<wbr>`) after each `::`, `<`
/// and `,`, and before each `(`.
pub(crate) fn breakable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut colon = false;
    for c in text.chars() {
        if c == '(' {
            out.push_str("<wbr>");
        }
        out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
        if matches!(c, '<' | ',') || (c == ':' && colon) {
            out.push_str("<wbr>");
        }
        colon = c == ':' && !colon;
    }
    out
}

/// A link: `<a href="HREF">TEXT</a>`, both escaped.
pub(crate) fn link(text: &str, href: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
}

/// One cell of a [`Table`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Cell {
    /// What the cell shows (plain text, escaped when drawn), or markup when
    /// `markup` is set.
    text: String,
    /// Markup drawn as it is instead of `text`.
    markup: Option<String>,
    /// Where the cell's text links to.
    href: Option<String>,
    /// The whole text, shown on hover, when `text` is shortened.
    title: Option<String>,
    /// Whether the text may break after `::`, `<` and `,`, and before `(`
    /// (long type names have no spaces).
    breakable: bool,
}

impl Cell {
    /// A cell of plain text.
    pub(crate) fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }

    /// A cell of markup, drawn as it is (the caller escaped what it holds).
    pub(crate) fn markup(markup: impl Into<String>) -> Cell {
        Cell {
            markup: Some(markup.into()),
            ..Cell::default()
        }
    }

    /// The cell links to `href`.
    pub(crate) fn linked(mut self, href: impl Into<String>) -> Cell {
        self.href = Some(href.into());
        self
    }

    /// The text may break inside a name: after `::`, `<` and `,`, and
    /// before `(`.
    pub(crate) fn breakable(mut self) -> Cell {
        self.breakable = true;
        self
    }

    /// Hovering the cell shows `title` (the whole of a shortened label).
    pub(crate) fn titled(mut self, title: impl Into<String>) -> Cell {
        let title = title.into();
        if title != self.text {
            self.title = Some(title);
        }
        self
    }

    fn draw(&self, tag: &str, class: &str, out: &mut String) {
        let _ = write!(out, "<{tag}{class}");
        if let Some(t) = &self.title {
            let _ = write!(out, " title=\"{}\"", escape(t));
        }
        out.push('>');
        let inner = match &self.markup {
            Some(m) => m.clone(),
            None if self.breakable => breakable(&self.text),
            None => escape(&self.text),
        };
        match &self.href {
            Some(h) => {
                let _ = write!(out, "<a href=\"{}\">{inner}</a>", escape(h));
            }
            None => out.push_str(&inner),
        }
        let _ = write!(out, "</{tag}>");
    }
}

/// A table with a caption, column headings and rows of [`Cell`]s; the
/// columns listed as numeric are right-aligned. The first column's cells
/// head their rows.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    caption: String,
    headings: Vec<String>,
    numeric: Vec<usize>,
    rows: Vec<(Vec<Cell>, Option<String>)>,
}

impl Table {
    /// An empty table.
    pub(crate) fn new(caption: &str, headings: &[&str], numeric: &[usize]) -> Table {
        Table {
            caption: caption.to_string(),
            headings: headings.iter().map(|h| h.to_string()).collect(),
            numeric: numeric.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push((cells, None));
    }

    /// Adds a row, and under it a row as wide as the table holding
    /// `detail` (markup) about it.
    pub(crate) fn row_with_detail(&mut self, cells: Vec<Cell>, detail: String) {
        self.rows.push((cells, Some(detail)));
    }

    /// Rows added so far.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The table's markup.
    pub(crate) fn draw(&self) -> String {
        let mut out = String::from("<div class=\"scroll\"><table>");
        if !self.caption.is_empty() {
            let _ = write!(out, "<caption>{}</caption>", escape(&self.caption));
        }
        out.push_str("<thead><tr>");
        for (i, h) in self.headings.iter().enumerate() {
            let _ = write!(out, "<th scope=\"col\"{}>{}</th>", self.class(i), escape(h));
        }
        out.push_str("</tr></thead><tbody>");
        for (row, detail) in &self.rows {
            out.push_str(if detail.is_some() {
                "<tr class=\"has-detail\">"
            } else {
                "<tr>"
            });
            for (i, cell) in row.iter().enumerate() {
                if i == 0 {
                    // The first cell heads its row for a screen reader.
                    let class = self.class(i);
                    let mut head = String::new();
                    cell.draw("th", &format!(" scope=\"row\"{class}"), &mut head);
                    out.push_str(&head);
                } else {
                    cell.draw("td", self.class(i), &mut out);
                }
            }
            out.push_str("</tr>");
            if let Some(d) = detail {
                let _ = write!(
                    out,
                    "<tr class=\"detail\"><td colspan=\"{}\">{d}</td></tr>",
                    self.headings.len()
                );
            }
        }
        out.push_str("</tbody></table></div>");
        out
    }

    fn class(&self, column: usize) -> &'static str {
        if self.numeric.contains(&column) {
            " class=\"num\""
        } else {
            ""
        }
    }
}

/// A whole page: `title`, the style sheet and script at `assets`, and
/// `body` (markup).
pub(crate) fn page(title: &str, css: &str, script: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"{}\">\
         <script src=\"{}\" defer></script></head>\n<body>{body}</body></html>\n",
        escape(title),
        escape(css),
        escape(script)
    )
}

/// A sparkline as an inline SVG polyline, lowest value at the bottom;
/// `label` is its text for those who cannot see it.
pub(crate) fn sparkline(values: &[u64], label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let hi = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let lo = values.iter().copied().min().unwrap_or(0) as f64;
    let span = (hi - lo).max(1.0);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let y = H - 2.0 - (v as f64 - lo) / span * (H - 4.0);
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"{}\"><polyline points=\"{}\"/></svg>",
        escape(label),
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_reads_as_markup() {
        assert_eq!(
            escape("Vec<u8> & \"x\" 'y'"),
            "Vec&lt;u8&gt; &amp; &quot;x&quot; &#39;y&#39;"
        );
        assert_eq!(
            link("<b>", "/heap?type=a&b"),
            "<a href=\"/heap?type=a&amp;b\">&lt;b&gt;</a>"
        );
    }

    #[test]
    fn long_names_may_break_after_their_separators() {
        assert_eq!(
            breakable("a::B<c::D, (E)>"),
            "a::<wbr>B&lt;<wbr>c::<wbr>D,<wbr> <wbr>(E)&gt;"
        );
        assert_eq!(breakable(":::"), "::<wbr>:");
    }

    #[test]
    fn a_table_heads_its_rows_and_aligns_numbers() {
        let mut t = Table::new("Cap", &["Label", "Size"], &[1]);
        t.row(vec![
            Cell::text("Vec<u8>")
                .linked("/x?a=1&b=2")
                .titled("alloc::vec::Vec<u8>"),
            Cell::text("12"),
        ]);
        t.row_with_detail(vec![Cell::text("a"), Cell::text("1")], "<b>held</b>".into());
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.draw(),
            "<div class=\"scroll\"><table><caption>Cap</caption><thead><tr>\
             <th scope=\"col\">Label</th><th scope=\"col\" class=\"num\">Size</th></tr></thead>\
             <tbody><tr><th scope=\"row\" title=\"alloc::vec::Vec&lt;u8&gt;\">\
             <a href=\"/x?a=1&amp;b=2\">Vec&lt;u8&gt;</a></th><td class=\"num\">12</td></tr>\
             <tr class=\"has-detail\"><th scope=\"row\">a</th><td class=\"num\">1</td></tr>\
             <tr class=\"detail\"><td colspan=\"2\"><b>held</b></td></tr></tbody></table></div>"
        );
    }

    #[test]
    fn a_sparkline_spans_its_box() {
        assert_eq!(
            sparkline(&[0, 5, 10], "up"),
            "<svg class=\"spark\" viewBox=\"0 0 120 24\" width=\"120\" height=\"24\" \
             role=\"img\" aria-label=\"up\"><polyline points=\"0.0,22.0 60.0,12.0 120.0,2.0\"/></svg>"
        );
    }
}
