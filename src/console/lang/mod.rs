//! The console's small Python-flavoured language: enough for every line in
//! the seeds. Literals, names, attribute access, calls with positional and
//! keyword arguments, indexing, tuples and lists, comparisons and boolean
//! operators, `x = …`, `[expr for r in xs if cond]`, and
//! `from … import …`. This file parses; `shell` evaluates.
//!
//! Every error carries the column it was found at, so the shell can point a
//! caret at it. Nesting is bounded ([`MAX_DEPTH`]) so no input can exhaust
//! the stack.

mod ast;
mod error;
mod lexer;
mod parser;

pub(crate) use ast::{BinOp, Expr, ExprKind, Statement};
pub use error::{SyntaxError, SyntaxErrorKind};
pub(crate) use parser::parse;

/// The deepest nesting of brackets and operators accepted.
pub const MAX_DEPTH: usize = 64;

/// The most operators in one flat chain (`a + b + …`), which nests as deep
/// as it is long once parsed.
pub const MAX_CHAIN: usize = 1000;
