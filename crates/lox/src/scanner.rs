//! The scanner: source bytes to tokens, on demand, exactly as clox's
//! `scanner.c` (a byte that starts no token is an "Unexpected character."
//! error token; strings may span lines; a NUL byte ends the source).

/// The kinds of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    Dot,
    Minus,
    Plus,
    Semicolon,
    Slash,
    Star,
    Bang,
    BangEqual,
    Equal,
    EqualEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Identifier,
    String,
    Number,
    And,
    Class,
    Else,
    False,
    For,
    Fun,
    If,
    Nil,
    Or,
    Print,
    Return,
    Super,
    This,
    True,
    Var,
    While,
    /// A scanning error; the lexeme is the message.
    Error,
    Eof,
}

/// A token: its kind, its text in the source (the message for errors) and
/// its line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'src> {
    pub(crate) kind: TokenKind,
    pub(crate) lexeme: &'src [u8],
    pub(crate) line: u32,
}

impl<'src> Token<'src> {
    /// A token that is not in the source (`this`, `super` made up by the compiler).
    pub(crate) fn synthetic(text: &'static str) -> Token<'src> {
        Token {
            kind: TokenKind::Identifier,
            lexeme: text.as_bytes(),
            line: 0,
        }
    }
}

/// Scans one source text.
pub(crate) struct Scanner<'src> {
    source: &'src [u8],
    start: usize,
    current: usize,
    line: u32,
}

impl<'src> Scanner<'src> {
    /// A scanner at the start of `source` (up to its first NUL byte, as in C).
    pub(crate) fn new(source: &'src [u8]) -> Scanner<'src> {
        let end = source.iter().position(|&b| b == 0).unwrap_or(source.len());
        Scanner {
            source: &source[..end],
            start: 0,
            current: 0,
            line: 1,
        }
    }

    /// The next token (`Eof` forever at the end).
    pub(crate) fn scan_token(&mut self) -> Token<'src> {
        self.skip_whitespace();
        self.start = self.current;
        let Some(c) = self.advance() else {
            return self.make(TokenKind::Eof);
        };
        if is_alpha(c) {
            return self.identifier();
        }
        if c.is_ascii_digit() {
            return self.number();
        }
        use TokenKind as T;
        let kind = match c {
            b'(' => T::LeftParen,
            b')' => T::RightParen,
            b'{' => T::LeftBrace,
            b'}' => T::RightBrace,
            b';' => T::Semicolon,
            b',' => T::Comma,
            b'.' => T::Dot,
            b'-' => T::Minus,
            b'+' => T::Plus,
            b'/' => T::Slash,
            b'*' => T::Star,
            b'!' => self.pick(b'=', T::BangEqual, T::Bang),
            b'=' => self.pick(b'=', T::EqualEqual, T::Equal),
            b'<' => self.pick(b'=', T::LessEqual, T::Less),
            b'>' => self.pick(b'=', T::GreaterEqual, T::Greater),
            b'"' => return self.string(),
            _ => return self.error("Unexpected character."),
        };
        self.make(kind)
    }

    fn peek(&self) -> Option<u8> {
        self.source.get(self.current).copied()
    }

    fn peek_next(&self) -> Option<u8> {
        self.source.get(self.current + 1).copied()
    }

    fn advance(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.current += 1;
        Some(c)
    }

    /// `yes` if the next byte is `expected` (consuming it), else `no`.
    fn pick(&mut self, expected: u8, yes: TokenKind, no: TokenKind) -> TokenKind {
        if self.peek() == Some(expected) {
            self.current += 1;
            yes
        } else {
            no
        }
    }

    fn make(&self, kind: TokenKind) -> Token<'src> {
        Token {
            kind,
            lexeme: &self.source[self.start..self.current],
            line: self.line,
        }
    }

    fn error(&self, message: &'static str) -> Token<'src> {
        Token {
            kind: TokenKind::Error,
            lexeme: message.as_bytes(),
            line: self.line,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\r' | b'\t' => self.current += 1,
                b'\n' => {
                    self.line += 1;
                    self.current += 1;
                }
                b'/' if self.peek_next() == Some(b'/') => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.current += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn string(&mut self) -> Token<'src> {
        while let Some(c) = self.peek() {
            if c == b'"' {
                self.current += 1;
                return self.make(TokenKind::String);
            }
            if c == b'\n' {
                self.line += 1;
            }
            self.current += 1;
        }
        self.error("Unterminated string.")
    }

    fn number(&mut self) -> Token<'src> {
        self.digits();
        if self.peek() == Some(b'.') && self.peek_next().is_some_and(|c| c.is_ascii_digit()) {
            self.current += 1;
            self.digits();
        }
        self.make(TokenKind::Number)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.current += 1;
        }
    }

    fn identifier(&mut self) -> Token<'src> {
        while self
            .peek()
            .is_some_and(|c| is_alpha(c) || c.is_ascii_digit())
        {
            self.current += 1;
        }
        use TokenKind as T;
        let kind = match &self.source[self.start..self.current] {
            b"and" => T::And,
            b"class" => T::Class,
            b"else" => T::Else,
            b"false" => T::False,
            b"for" => T::For,
            b"fun" => T::Fun,
            b"if" => T::If,
            b"nil" => T::Nil,
            b"or" => T::Or,
            b"print" => T::Print,
            b"return" => T::Return,
            b"super" => T::Super,
            b"this" => T::This,
            b"true" => T::True,
            b"var" => T::Var,
            b"while" => T::While,
            _ => T::Identifier,
        };
        self.make(kind)
    }
}

fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind as T;

    fn kinds(source: &str) -> Vec<(TokenKind, String, u32)> {
        let mut s = Scanner::new(source.as_bytes());
        let mut out = Vec::new();
        loop {
            let t = s.scan_token();
            out.push((
                t.kind,
                String::from_utf8_lossy(t.lexeme).into_owned(),
                t.line,
            ));
            if t.kind == T::Eof {
                return out;
            }
        }
    }

    #[test]
    fn scans_operators_keywords_and_literals() {
        let got = kinds("var x = 1.5 >= \"a\nb\"; // c\n!= orchid or 3.");
        let want = [
            (T::Var, "var", 1),
            (T::Identifier, "x", 1),
            (T::Equal, "=", 1),
            (T::Number, "1.5", 1),
            (T::GreaterEqual, ">=", 1),
            (T::String, "\"a\nb\"", 2),
            (T::Semicolon, ";", 2),
            (T::BangEqual, "!=", 3),
            (T::Identifier, "orchid", 3),
            (T::Or, "or", 3),
            (T::Number, "3", 3),
            (T::Dot, ".", 3),
            (T::Eof, "", 3),
        ];
        let want: Vec<_> = want.iter().map(|&(k, s, l)| (k, s.to_owned(), l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn errors_are_tokens() {
        let got = kinds("@ \"open\n");
        assert_eq!(got[0], (T::Error, "Unexpected character.".into(), 1));
        assert_eq!(got[1], (T::Error, "Unterminated string.".into(), 2));
        assert_eq!(kinds("a\0b").len(), 2, "NUL ends the source");
    }
}
