//! Splits a line into tokens.

use super::error::{SyntaxError, SyntaxErrorKind};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
    End,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) col: usize,
}

pub(super) const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "(", ")", "[", "]", ",", ".", "=", "<", ">", "+", "-", "*", "/", "%",
    ":",
];

pub(super) fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let col = i;
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Name(chars[start..i].iter().collect()),
                col,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            let mut float = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let tok = if float {
                Tok::Float(text.parse().map_err(|_| SyntaxError {
                    column: col,
                    kind: SyntaxErrorKind::BadNumber,
                })?)
            } else {
                Tok::Int(text.parse().map_err(|_| SyntaxError {
                    column: col,
                    kind: SyntaxErrorKind::IntegerTooLarge,
                })?)
            };
            out.push(Token { tok, col });
        } else if c == '\'' || c == '"' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(SyntaxError {
                        column: col,
                        kind: SyntaxErrorKind::UnterminatedString,
                    });
                };
                i += 1;
                match ch {
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return Err(SyntaxError {
                                column: col,
                                kind: SyntaxErrorKind::UnterminatedString,
                            });
                        };
                        i += 1;
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            '0' => '\0',
                            other => other,
                        });
                    }
                    ch if ch == quote => break,
                    ch => s.push(ch),
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                col,
            });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(*op)) else {
                return Err(SyntaxError {
                    column: col,
                    kind: SyntaxErrorKind::UnexpectedChar(c),
                });
            };
            i += op.chars().count();
            out.push(Token {
                tok: Tok::Op(op),
                col,
            });
        }
    }
    out.push(Token {
        tok: Tok::End,
        col: chars.len(),
    });
    Ok(out)
}
