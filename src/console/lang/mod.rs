//! The console's small Python-flavoured language: enough for every line of
//! the Scrapy and Guppy leak-hunting sessions the console reproduces. Literals, names, attribute access, calls with positional and
//! keyword arguments, indexing, tuples and lists, comparisons and boolean
//! operators, `x = …`, `[expr for r in xs if cond]`, and
//! `from … import …`. This module parses; `eval` evaluates.
//!
//! Every error carries the column it was found at, so the session can point a
//! caret at it. Nesting is bounded ([`MAX_DEPTH`]) so no input can exhaust
//! the stack.

mod ast;
mod error;
mod lexer;
mod parser;

pub(crate) use ast::{BinOp, Expr, ExprKind, Statement};
pub use error::{SyntaxError, SyntaxErrorKind};
pub(crate) use parser::parse;

pub(crate) use super::limits::{MAX_CHAIN, MAX_DEPTH};
