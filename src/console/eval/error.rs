//! Evaluation errors: a Python exception name, a message and the column of
//! the expression that raised it.

use std::fmt;

/// The exception a console line raises, by Python's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExceptionKind {
    /// A line that does not parse.
    SyntaxError,
    /// A name that is not defined.
    NameError,
    /// An operation or call on the wrong kind of value.
    TypeError,
    /// An attribute or method that does not exist.
    AttributeError,
    /// `from … import name` of an unknown name.
    ImportError,
    /// An index out of range.
    IndexError,
    /// A key that is not there.
    KeyError,
    /// Division or modulo by zero.
    ZeroDivisionError,
    /// Integer arithmetic beyond 64 bits.
    OverflowError,
    /// A value larger than a session may hold.
    MemoryError,
    /// An error of the operating system (a file, jemalloc).
    OSError,
    /// A value of the right type but not acceptable.
    ValueError,
    /// Evaluation nested deeper than a session allows.
    RecursionError,
    /// A line ran longer than its time budget.
    TimeoutError,
    /// Ctrl-C stopped the line.
    KeyboardInterrupt,
    /// Anything else a host function reported.
    RuntimeError,
}

impl fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An exception raised by a console line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Error {
    /// Which exception.
    pub kind: ExceptionKind,
    /// What happened (may be empty).
    pub message: String,
    /// The column (0-based, in characters) of the expression that raised
    /// it, once the evaluator knows it.
    pub column: Option<usize>,
}

impl Error {
    /// An exception of `kind`.
    pub fn new(kind: ExceptionKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            column: None,
        }
    }

    /// `AttributeError: '<type>' object has no attribute '<name>'`.
    pub fn no_attribute(type_name: &str, name: &str) -> Self {
        Error::new(
            ExceptionKind::AttributeError,
            format!("'{type_name}' object has no attribute '{name}'"),
        )
    }

    /// The same error, pointed at `column` unless it already has one.
    pub(crate) fn at(mut self, column: usize) -> Self {
        self.column.get_or_insert(column);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for Error {}
