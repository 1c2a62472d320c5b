//! Syntax errors, with the column they were found at.

/// A syntax error at a column (0-based, in characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SyntaxError: {kind}")]
#[non_exhaustive]
pub struct SyntaxError {
    /// What is wrong.
    pub kind: SyntaxErrorKind,
    /// Where it was found.
    pub column: usize,
}

impl SyntaxError {
    pub(super) fn new(kind: SyntaxErrorKind, column: usize) -> Self {
        SyntaxError { kind, column }
    }

    /// What is wrong, as a sentence (`unterminated string`).
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// What a [`SyntaxError`] found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxErrorKind {
    /// A number that does not parse.
    #[error("bad number")]
    BadNumber,
    /// An integer beyond 64 bits.
    #[error("integer too large")]
    IntegerTooLarge,
    /// A string without its closing quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// A character the language has no use for.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// A token that does not belong here (`)`, a keyword).
    #[error("unexpected '{0}'")]
    Unexpected(String),
    /// The line ended in the middle of an expression.
    #[error("unexpected end of line")]
    UnexpectedEnd,
    /// Something else was needed here (`expected 'import'`, `expected a name`).
    #[error("expected {0}")]
    Expected(String),
    /// More text after a complete statement.
    #[error("unexpected text after the expression")]
    TrailingText,
    /// Brackets or operators nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("expression too deeply nested")]
    TooDeep,
    /// A chain of more than [`MAX_CHAIN`](super::MAX_CHAIN) operators.
    #[error("expression too long")]
    TooLong,
    /// `f(a=1, a=2)`
    #[error("keyword argument repeated: {0}")]
    RepeatedKeyword(String),
    /// `f(a=1, 2)`
    #[error("positional argument follows keyword argument")]
    PositionalAfterKeyword,
}
