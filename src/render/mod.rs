//! Text for people. Every table leakscope prints is built here, from data
//! types that carry no formatting of their own: [`table`] holds the table
//! helpers (comfy-table; they know no type of leakscope's), and each other
//! module renders one domain's types, mostly as their `Display`.

mod dhat;
#[cfg(test)]
mod golden;
mod heap;
pub(crate) mod html;
mod leaks;
pub(crate) mod pympler;
mod retained;
mod stats;
pub(crate) mod table;
mod trackref;

pub(crate) use heap::{diff, stacks};
pub(crate) use leaks::live_over_time;
pub(crate) use table::WIDTH;
