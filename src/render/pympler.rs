//! Pympler's tables: `summary.print_(rows)` and a tracker's `print_diff()`,
//! in Pympler's layout (right-aligned `types | # objects | total size`, a
//! `===` rule, sizes as `1.10 MB`).

use super::table::shorten_inside;
use crate::symbols;

/// Pympler's size format: bytes as `%4d     B`, larger sizes in binary
/// units with two decimals (`856.62 KB`, `1.10 MB`); negative sizes (a
/// diff) with their sign.
pub(crate) fn size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "EB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let mut n = bytes.unsigned_abs() as f64;
    let mut unit = 0;
    while n > 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{:>4}     B", format!("{sign}{}", bytes.unsigned_abs()))
    } else {
        format!("{:>7} {}", format!("{sign}{n:.2}"), UNITS[unit])
    }
}

/// The rows (type, objects, bytes), largest total size first, the top
/// `limit`, as `summary.print_` prints them, `width` columns wide.
pub(crate) fn summary(rows: &[(String, i64, i64)], limit: usize, width: usize) -> String {
    let mut rows: Vec<&(String, i64, i64)> = rows.iter().collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    table(&rows, limit, width)
}

/// A tracker's change by type (signed objects and bytes), the largest
/// change either way first, the top `limit`, in the summary's layout.
pub(crate) fn diff(rows: &[(String, i64, i64)], limit: usize, width: usize) -> String {
    let mut rows: Vec<&(String, i64, i64)> = rows.iter().collect();
    rows.sort_by(|a, b| b.2.abs().cmp(&a.2.abs()).then_with(|| a.0.cmp(&b.0)));
    table(&rows, limit, width)
}

/// How wide column `i` is: its widest cell or its heading.
fn wide(cells: &[[String; 3]], header: &[&str; 3], i: usize) -> usize {
    cells
        .iter()
        .map(|c| c[i].chars().count())
        .chain([header[i].len()])
        .max()
        .unwrap_or(0)
}

fn table(rows: &[&(String, i64, i64)], limit: usize, width: usize) -> String {
    let rows = &rows[..rows.len().min(limit)];
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|(ty, count, bytes)| [symbols::short_type(ty), count.to_string(), size(*bytes)])
        .collect();
    let header = ["types", "# objects", "total size"];
    let (count_w, size_w) = (wide(&cells, &header, 1), wide(&cells, &header, 2));
    // The types take what the numbers leave, shortened inside their
    // generic arguments when they must.
    let room = width.saturating_sub(count_w + size_w + 6).max(12);
    let cells: Vec<[String; 3]> = cells
        .into_iter()
        .map(|[ty, c, s]| [shorten_inside(&ty, room), c, s])
        .collect();
    let type_w = wide(&cells, &header, 0);
    let line = |a: &str, b: &str, c: &str| format!("{a:>type_w$} | {b:>count_w$} | {c:>size_w$}\n");
    let mut out = line(header[0], header[1], header[2]);
    out.push_str(&line(
        &"=".repeat(type_w),
        &"=".repeat(count_w),
        &"=".repeat(size_w),
    ));
    for [ty, count, bytes] in &cells {
        out.push_str(&line(ty, count, bytes));
    }
    let legend = super::heap::legend(&out, width);
    out.push_str(&legend);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_pympler_prints_them() {
        assert_eq!(size(120), " 120     B");
        assert_eq!(size(1024), "1024     B");
        assert_eq!(size(877_179), " 856.62 KB");
        assert_eq!(size(1_153_434), "   1.10 MB");
        assert_eq!(size(-96), " -96     B");
        assert_eq!(size(-877_179), "-856.62 KB");
    }

    #[test]
    fn the_summary_is_pymplers_table() {
        let rows = [
            ("alloc::vec::Vec<u8>".to_string(), 9822, 1_153_434),
            ("app::Page".to_string(), 1658, 877_179),
            ("String".to_string(), 3, 120),
        ];
        assert_eq!(
            summary(&rows, 15, 80),
            "  types | # objects | total size\n\
             ======= | ========= | ==========\n\
             Vec<u8> |      9822 |    1.10 MB\n\
             \x20  Page |      1658 |  856.62 KB\n\
             \x20String |         3 |  120     B\n"
        );
        assert_eq!(summary(&rows, 1, 80).lines().count(), 3);
        let change = [
            ("String".to_string(), -3, -120),
            ("app::Page".to_string(), 2, 2048),
        ];
        assert_eq!(
            diff(&change, 15, 80),
            " types | # objects | total size\n\
             ====== | ========= | ==========\n\
             \x20 Page |         2 |    2.00 KB\n\
             String |        -3 | -120     B\n"
        );
    }
}
