//! Allocation sites in a failed heap assertion's message.

use super::table::{finish, table};
use crate::testing::Site;

/// Allocation sites for an assertion message, one per line: blocks, bytes,
/// type, function and place.
pub(crate) fn sites(list: &[Site]) -> String {
    if list.is_empty() {
        return "  (no allocation sites recorded)\n".to_string();
    }
    let mut t = table(&["Blocks", "Bytes", "Type", "Allocated at"], &[0, 1]);
    for s in list {
        let place = match (&s.file, s.line) {
            (Some(f), Some(l)) => {
                format!("{} ({}:{l})", s.function, f.rsplit('/').next().unwrap_or(f))
            }
            _ => s.function.clone(),
        };
        t.add_row(vec![
            s.blocks.to_string(),
            s.bytes.to_string(),
            s.type_name.clone(),
            place,
        ]);
    }
    let mut out = String::new();
    for line in finish(&t).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
