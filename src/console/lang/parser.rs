//! Recursive descent over the tokens, with nesting and chain length
//! bounded so that no input can exhaust the stack.

use super::ast::{BinOp, Expr, ExprKind, Statement};
use super::error::{SyntaxError, SyntaxErrorKind};
use super::lexer::{Tok, Token, lex};
use super::{MAX_CHAIN, MAX_DEPTH};

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "for", "if", "from", "import"];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn col(&self) -> usize {
        self.toks[self.pos].col
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, kind: SyntaxErrorKind) -> Result<T, SyntaxError> {
        Err(SyntaxError::new(kind, self.col()))
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), SyntaxError> {
        if self.is_op(op) {
            self.next();
            Ok(())
        } else {
            self.err(SyntaxErrorKind::Expected(format!("'{op}'")))
        }
    }

    fn name(&mut self) -> Result<(String, usize), SyntaxError> {
        let col = self.col();
        match self.peek().clone() {
            Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => {
                self.next();
                Ok((n, col))
            }
            _ => self.err(SyntaxErrorKind::Expected("a name".into())),
        }
    }

    fn nest(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(SyntaxErrorKind::TooDeep);
        }
        Ok(())
    }

    /// `import a, b` from its keyword on: the names, to the line's end.
    fn imported_names(&mut self, module: String) -> Result<Statement, SyntaxError> {
        self.next();
        let mut names = vec![self.name()?];
        while self.is_op(",") {
            self.next();
            names.push(self.name()?);
        }
        self.end()?;
        Ok(Statement::Import(module, names))
    }

    fn statement(&mut self) -> Result<Statement, SyntaxError> {
        if matches!(self.peek(), Tok::End) {
            return Ok(Statement::Empty);
        }
        if self.is_kw("from") {
            self.next();
            let (mut module, _) = self.name()?;
            while self.is_op(".") {
                self.next();
                module.push('.');
                module.push_str(&self.name()?.0);
            }
            if !self.is_kw("import") {
                return self.err(SyntaxErrorKind::Expected("'import'".into()));
            }
            return self.imported_names(module);
        }
        if self.is_kw("import") {
            return self.imported_names(String::new());
        }
        if let (Tok::Name(n), Some(Tok::Op("="))) = (
            self.peek().clone(),
            self.toks.get(self.pos + 1).map(|t| &t.tok),
        ) && !KEYWORDS.contains(&n.as_str())
        {
            self.next();
            self.next();
            let e = self.expr()?;
            self.end()?;
            return Ok(Statement::Assign(n, e));
        }
        let e = self.expr()?;
        self.end()?;
        Ok(Statement::Expr(e))
    }

    fn end(&self) -> Result<(), SyntaxError> {
        if matches!(self.peek(), Tok::End) {
            Ok(())
        } else {
            self.err(SyntaxErrorKind::TrailingText)
        }
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        self.nest()?;
        let e = self.or();
        self.depth -= 1;
        e
    }

    fn binary_chain(
        &mut self,
        next: fn(&mut Self) -> Result<Expr, SyntaxError>,
        ops: &[(&str, BinOp, bool)],
    ) -> Result<Expr, SyntaxError> {
        let mut left = next(self)?;
        let mut chain = 0;
        loop {
            let found = ops.iter().find(|(text, _, kw)| {
                if *kw {
                    self.is_kw(text)
                } else {
                    self.is_op(text)
                }
            });
            let Some(&(_, op, _)) = found else {
                return Ok(left);
            };
            chain += 1;
            if chain > MAX_CHAIN {
                return self.err(SyntaxErrorKind::TooLong);
            }
            self.next();
            self.nest()?;
            let right = next(self);
            self.depth -= 1;
            let col = left.col;
            left = Expr {
                col,
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right?)),
            };
        }
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        self.binary_chain(Self::and, &[("or", BinOp::Or, true)])
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        self.binary_chain(Self::not, &[("and", BinOp::And, true)])
    }

    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_kw("not") {
            let col = self.col();
            self.next();
            self.nest()?;
            let inner = self.not();
            self.depth -= 1;
            return Ok(Expr {
                col,
                kind: ExprKind::Not(Box::new(inner?)),
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.sum()?;
        let mut chain = 0;
        loop {
            chain += 1;
            if chain > MAX_CHAIN {
                return self.err(SyntaxErrorKind::TooLong);
            }
            let op = match self.peek() {
                Tok::Op("==") => BinOp::Eq,
                Tok::Op("!=") => BinOp::Ne,
                Tok::Op("<") => BinOp::Lt,
                Tok::Op("<=") => BinOp::Le,
                Tok::Op(">") => BinOp::Gt,
                Tok::Op(">=") => BinOp::Ge,
                Tok::Name(n) if n == "in" => BinOp::In,
                Tok::Name(n)
                    if n == "not"
                        && matches!(self.toks.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Name(m)) if m == "in") =>
                {
                    self.next();
                    BinOp::NotIn
                }
                _ => return Ok(left),
            };
            self.next();
            self.nest()?;
            let right = self.sum();
            self.depth -= 1;
            let col = left.col;
            left = Expr {
                col,
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right?)),
            };
        }
    }

    fn sum(&mut self) -> Result<Expr, SyntaxError> {
        self.binary_chain(
            Self::term,
            &[("+", BinOp::Add, false), ("-", BinOp::Sub, false)],
        )
    }

    fn term(&mut self) -> Result<Expr, SyntaxError> {
        self.binary_chain(
            Self::unary,
            &[
                ("*", BinOp::Mul, false),
                ("/", BinOp::Div, false),
                ("%", BinOp::Rem, false),
            ],
        )
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_op("-") {
            let col = self.col();
            self.next();
            self.nest()?;
            let inner = self.unary();
            self.depth -= 1;
            return Ok(Expr {
                col,
                kind: ExprKind::Neg(Box::new(inner?)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.atom()?;
        let mut chain = 0;
        loop {
            let col = self.col();
            if self.is_op(".") {
                self.next();
                let (name, _) = self.name()?;
                e = Expr {
                    col,
                    kind: ExprKind::Attr(Box::new(e), name),
                };
            } else if self.is_op("(") {
                self.next();
                let (args, kwargs) = self.arguments()?;
                e = Expr {
                    col,
                    kind: ExprKind::Call(Box::new(e), args, kwargs),
                };
            } else if self.is_op("[") {
                self.next();
                let start = (!self.is_op(":")).then(|| self.expr()).transpose()?;
                if self.is_op(":") {
                    self.next();
                    let end = (!self.is_op("]")).then(|| self.expr()).transpose()?;
                    self.expect_op("]")?;
                    e = Expr {
                        col,
                        kind: ExprKind::Slice(Box::new(e), start.map(Box::new), end.map(Box::new)),
                    };
                } else {
                    self.expect_op("]")?;
                    let Some(index) = start else {
                        return self.err(SyntaxErrorKind::Expected("an index".into()));
                    };
                    e = Expr {
                        col,
                        kind: ExprKind::Index(Box::new(e), Box::new(index)),
                    };
                }
            } else {
                return Ok(e);
            }
            chain += 1;
            if chain > MAX_DEPTH {
                return self.err(SyntaxErrorKind::TooDeep);
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn arguments(&mut self) -> Result<(Vec<Expr>, Vec<(String, Expr)>), SyntaxError> {
        let mut args = Vec::new();
        let mut kwargs: Vec<(String, Expr)> = Vec::new();
        while !self.is_op(")") {
            let keyword = match (
                self.peek().clone(),
                self.toks.get(self.pos + 1).map(|t| t.tok.clone()),
            ) {
                (Tok::Name(n), Some(Tok::Op("="))) if !KEYWORDS.contains(&n.as_str()) => Some(n),
                _ => None,
            };
            if let Some(k) = keyword {
                let col = self.col();
                self.next();
                self.next();
                if kwargs.iter().any(|(n, _)| *n == k) {
                    return Err(SyntaxError {
                        column: col,
                        kind: SyntaxErrorKind::RepeatedKeyword(k.clone()),
                    });
                }
                kwargs.push((k, self.expr()?));
            } else if !kwargs.is_empty() {
                return self.err(SyntaxErrorKind::PositionalAfterKeyword);
            } else {
                args.push(self.expr()?);
            }
            if self.is_op(",") {
                self.next();
            } else if !self.is_op(")") {
                return self.err(SyntaxErrorKind::Expected("',' or ')'".into()));
            }
        }
        self.next();
        Ok((args, kwargs))
    }

    fn atom(&mut self) -> Result<Expr, SyntaxError> {
        let col = self.col();
        let t = self.next();
        let kind = match t.tok {
            Tok::Int(n) => ExprKind::Int(n),
            Tok::Float(f) => ExprKind::Float(f),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Name(n) => match n.as_str() {
                "None" => ExprKind::None,
                "True" => ExprKind::Bool(true),
                "False" => ExprKind::Bool(false),
                kw if KEYWORDS.contains(&kw) => {
                    return Err(SyntaxError {
                        column: col,
                        kind: SyntaxErrorKind::Unexpected(kw.to_string()),
                    });
                }
                _ => ExprKind::Name(n),
            },
            Tok::Op("(") => {
                if self.is_op(")") {
                    self.next();
                    ExprKind::Tuple(Vec::new())
                } else {
                    let first = self.expr()?;
                    if self.is_op(")") {
                        self.next();
                        return Ok(first);
                    }
                    let mut items = vec![first];
                    while self.is_op(",") {
                        self.next();
                        if self.is_op(")") {
                            break;
                        }
                        items.push(self.expr()?);
                    }
                    self.expect_op(")")?;
                    ExprKind::Tuple(items)
                }
            }
            Tok::Op("[") => {
                if self.is_op("]") {
                    self.next();
                    ExprKind::List(Vec::new())
                } else {
                    let first = self.expr()?;
                    if self.is_kw("for") {
                        self.next();
                        let (name, _) = self.name()?;
                        if !self.is_kw("in") {
                            return self.err(SyntaxErrorKind::Expected("'in'".into()));
                        }
                        self.next();
                        let iter = self.expr()?;
                        let cond = if self.is_kw("if") {
                            self.next();
                            Some(Box::new(self.expr()?))
                        } else {
                            None
                        };
                        self.expect_op("]")?;
                        ExprKind::Comprehension {
                            element: Box::new(first),
                            name,
                            iter: Box::new(iter),
                            cond,
                        }
                    } else {
                        let mut items = vec![first];
                        while self.is_op(",") {
                            self.next();
                            if self.is_op("]") {
                                break;
                            }
                            items.push(self.expr()?);
                        }
                        self.expect_op("]")?;
                        ExprKind::List(items)
                    }
                }
            }
            Tok::End => {
                return Err(SyntaxError {
                    column: col,
                    kind: SyntaxErrorKind::UnexpectedEnd,
                });
            }
            Tok::Op(op) => {
                return Err(SyntaxError {
                    column: col,
                    kind: SyntaxErrorKind::Unexpected(op.to_string()),
                });
            }
        };
        Ok(Expr { col, kind })
    }
}

/// Parses one line.
pub(crate) fn parse(src: &str) -> Result<Statement, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    p.statement()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Statement {
        parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    #[test]
    fn every_line_of_the_scrapy_and_guppy_sessions_parses() {
        for line in [
            "prefs()",
            "prefs(ignore=Spider)",
            "prefs(ignore=(Spider, Item))",
            "from scrapy.utils.trackref import get_oldest",
            "from leakscope.trackref import get_oldest, iter_all",
            "import os",
            "import gc, os",
            "os.getpid()",
            "gc.get_count()",
            "from pympler import muppy",
            "all_objects = muppy.get_objects()",
            "suml = summary.summarize(all_objects)",
            "summary.print_(suml)",
            "r = get_oldest('HtmlResponse')",
            "r.url",
            "get_oldest('HtmlResponse').url",
            "[r.url for r in iter_all('HtmlResponse')]",
            "[r.url for r in iter_all('HtmlResponse') if r.status != 200]",
            "hpy().heap()",
            "x = hpy().heap()",
            "x.bytype",
            "x.bytype[0].bysite",
            "_.more",
            "hpy().heap().bytype()",
            "est()",
            "engine.pause()",
            "len(iter_all(\"HtmlResponse\"))",
            "p(stats())",
            "not True and 1 < 2 or 3 >= 4",
            "-1 + 2 * 3 % 4 / 5",
            "'a' not in ['b', 'c']",
            "",
            "   # a comment",
        ] {
            ok(line);
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(
            ok("x = 1"),
            Statement::Assign(
                "x".into(),
                Expr {
                    col: 4,
                    kind: ExprKind::Int(1)
                }
            )
        );
        let Statement::Import(m, names) = ok("from a.b import c, d") else {
            panic!()
        };
        assert_eq!(m, "a.b");
        assert_eq!(names, [("c".to_string(), 16), ("d".to_string(), 19)]);
        let Statement::Import(m, names) = ok("import os, gc") else {
            panic!()
        };
        assert_eq!(m, "");
        assert_eq!(names, [("os".to_string(), 7), ("gc".to_string(), 11)]);
        assert!(parse("import").is_err());
        assert!(parse("import os.path").is_err());
        let Statement::Expr(e) = ok("f(1, k='v')") else {
            panic!()
        };
        let ExprKind::Call(_, args, kwargs) = e.kind else {
            panic!()
        };
        assert_eq!(args.len(), 1);
        assert_eq!(kwargs[0].0, "k");
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(parse("prefs(").unwrap_err().column, 6);
        assert_eq!(parse("1 +").unwrap_err().column, 3);
        assert_eq!(parse("a b").unwrap_err().column, 2);
        assert_eq!(parse("'abc").unwrap_err().message(), "unterminated string");
        assert_eq!(parse("x = $").unwrap_err().column, 4);
        assert_eq!(
            parse("f(a=1, a=2)").unwrap_err().message(),
            "keyword argument repeated: a"
        );
        assert_eq!(
            parse("f(a=1, 2)").unwrap_err().message(),
            "positional argument follows keyword argument"
        );
        assert_eq!(
            parse("99999999999999999999").unwrap_err().message(),
            "integer too large"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "(".repeat(10_000) + &")".repeat(10_000);
        assert_eq!(
            parse(&deep).unwrap_err().message(),
            "expression too deeply nested"
        );
        let deep = "-".repeat(10_000) + "1";
        assert_eq!(
            parse(&deep).unwrap_err().message(),
            "expression too deeply nested"
        );
        let deep = "not ".repeat(10_000) + "1";
        assert_eq!(
            parse(&deep).unwrap_err().message(),
            "expression too deeply nested"
        );
        let chain = "a".to_string() + &".b".repeat(10_000);
        assert_eq!(
            parse(&chain).unwrap_err().message(),
            "expression too deeply nested"
        );
        let sum = vec!["1"; MAX_CHAIN + 1].join("+");
        assert!(
            parse(&sum).is_ok(),
            "a chain of MAX_CHAIN operators is fine"
        );
        let sum = vec!["1"; MAX_CHAIN + 2].join("+");
        assert_eq!(parse(&sum).unwrap_err().message(), "expression too long");
    }
}
