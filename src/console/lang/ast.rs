//! What a line parses into.

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `and`
    And,
    /// `or`
    Or,
}

/// An expression, with the column it starts at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expr {
    /// Where it starts.
    pub col: usize,
    /// What it is.
    pub kind: ExprKind,
}

/// The kinds of expressions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ExprKind {
    /// `None`
    None,
    /// `True`, `False`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A name.
    Name(String),
    /// `a.b`
    Attr(Box<Expr>, String),
    /// `f(a, k=v)`
    Call(Box<Expr>, Vec<Expr>, Vec<(String, Expr)>),
    /// `a[i]`
    Index(Box<Expr>, Box<Expr>),
    /// `a[i:j]`, either bound left out
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `(a, b)`
    Tuple(Vec<Expr>),
    /// `[a, b]`
    List(Vec<Expr>),
    /// `[e for name in iter if cond]`
    Comprehension {
        /// The element.
        element: Box<Expr>,
        /// The loop variable.
        name: String,
        /// What it loops over.
        iter: Box<Expr>,
        /// The filter.
        cond: Option<Box<Expr>>,
    },
    /// `-a`
    Neg(Box<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// One line of input.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Statement {
    /// An expression to evaluate and show.
    Expr(Expr),
    /// `name = expr`
    Assign(String, Expr),
    /// `from module import a, b`, or `import a, b` (the module empty):
    /// the names, with their columns.
    Import(String, Vec<(String, usize)>),
    /// An empty line.
    Empty,
}
