//! JSONata's syntax: text to tokens to a tree, by precedence climbing
//! (binding powers as the reference implementation gives them). Nesting
//! is bounded, so an untrusted expression cannot exhaust the stack.

use std::sync::Arc;

/// How deep expressions may nest (brackets, operands, prefixes), and
/// how many tokens one may have.
const MAX_DEPTH: usize = 64;
const MAX_TOKENS: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    Regex(Pattern),
    /// `$name`; `$` alone is the context (""), `$$` the root ("$").
    Var(String),
    /// A field name, as a path step.
    Name(String),
    /// `*`: every field's value; `**`: every value below.
    Wild,
    Descend,
    /// `a.b`: `b` for each item of `a`.
    Dot(Box<Node>, Box<Node>),
    /// `a[p]`: the items of `a` for which `p` holds (or the one at index
    /// `p`).
    Filter(Box<Node>, Box<Node>),
    /// `a[]`: always an array.
    KeepArray(Box<Node>),
    /// `a^(<x, >y)`: `a` sorted, each key ascending (true) or not.
    Sort(Box<Node>, Vec<(Node, bool)>),
    Neg(Box<Node>),
    Binary(&'static str, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Option<Box<Node>>),
    Block(Vec<Node>),
    Bind(String, Box<Node>),
    Array(Vec<Node>),
    Range(Box<Node>, Box<Node>),
    Object(Vec<(Node, Node)>),
    Call(Box<Node>, Vec<Node>),
    Lambda(Arc<Lambda>),
    /// `a ~> f`: `f` applied to `a`.
    Chain(Box<Node>, Box<Node>),
    /// `a{k: v}`: `a`'s items grouped by key, each group's value.
    Group(Box<Node>, Vec<(Node, Node)>),
    /// `?` as an argument: `$f(?, 2)` is a function of what `?` stands
    /// for.
    Placeholder,
    /// `| location | update, delete |`: a function that copies its
    /// argument with what `location` selects changed.
    Transform(Arc<Transform>),
}

#[derive(Debug, PartialEq)]
pub struct Transform {
    pub location: Node,
    pub update: Node,
    pub delete: Option<Node>,
}

/// A regular expression literal (`/ab+c/i`).
#[derive(Debug, Clone)]
pub struct Pattern(pub Arc<regex::Regex>);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, PartialEq)]
pub struct Lambda {
    pub params: Vec<String>,
    pub body: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Var(String),
    Regex(String, String),
    Op(&'static str),
}

/// Why an expression does not parse: JSONata's code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

fn err<T>(code: &str, message: impl std::fmt::Display) -> Result<T, SyntaxError> {
    Err(SyntaxError(format!("{code}: {message}")))
}

const OPERATORS: [&str; 31] = [
    "..", ":=", "!=", "<=", ">=", "~>", "**", "?:", "??", ".", "[", "]", "{", "}", "(", ")", ",",
    ";", ":", "?", "+", "-", "*", "/", "%", "&", "=", "<", ">", "^", "|",
];

fn lex(text: &str) -> Result<Vec<Tok>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/');
            match close {
                Some(j) => i = j + 2,
                None => return err("S0106", "Comment has no closing tag"),
            }
            continue;
        }
        // A `/` where an operand is expected starts a regular expression.
        let operand_expected = match out.last() {
            None => true,
            Some(Tok::Op(op)) => !matches!(*op, ")" | "]" | "}"),
            Some(_) => false,
        };
        if c == '/' && operand_expected {
            let mut j = i + 1;
            let mut pattern = String::new();
            loop {
                match chars.get(j) {
                    None => return err("S0302", "No terminating / in regular expression"),
                    Some('\\') => {
                        pattern.push('\\');
                        if let Some(n) = chars.get(j + 1) {
                            pattern.push(*n);
                        }
                        j += 2;
                    }
                    Some('/') => break,
                    Some(ch) => {
                        pattern.push(*ch);
                        j += 1;
                    }
                }
            }
            j += 1;
            let mut flags = String::new();
            while let Some(f) = chars.get(j).filter(|f| f.is_ascii_alphabetic()) {
                flags.push(*f);
                j += 1;
            }
            if pattern.is_empty() {
                return err("S0301", "Empty regular expressions are not allowed");
            }
            out.push(Tok::Regex(pattern, flags));
            i = j;
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return err("S0101", "String literal must be terminated"),
                    Some(ch) if *ch == c => break,
                    Some('\\') => {
                        let escaped = chars.get(j + 1).copied();
                        match escaped {
                            Some('"') => s.push('"'),
                            Some('\'') => s.push('\''),
                            Some('\\') => s.push('\\'),
                            Some('/') => s.push('/'),
                            Some('b') => s.push('\u{8}'),
                            Some('f') => s.push('\u{c}'),
                            Some('n') => s.push('\n'),
                            Some('r') => s.push('\r'),
                            Some('t') => s.push('\t'),
                            Some('u') => {
                                let hex: String = chars.iter().skip(j + 2).take(4).collect();
                                let code = u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .filter(|_| hex.len() == 4);
                                let Some(code) = code else {
                                    return err(
                                        "S0104",
                                        "The escape sequence \\u must be followed by 4 hex digits",
                                    );
                                };
                                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                j += 4;
                            }
                            other => {
                                return err(
                                    "S0103",
                                    format!(
                                        "Unsupported escape sequence: \\{}",
                                        other.unwrap_or(' ')
                                    ),
                                )
                            }
                        }
                        j += 2;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        j += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
            i = j + 1;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if matches!(chars.get(j), Some('e' | 'E')) {
                let mut k = j + 1;
                if matches!(chars.get(k), Some('+' | '-')) {
                    k += 1;
                }
                if chars.get(k).is_some_and(|d| d.is_ascii_digit()) {
                    j = k;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            let text: String = chars[i..j].iter().collect();
            match text.parse::<f64>() {
                Ok(n) if n.is_finite() => out.push(Tok::Num(n)),
                _ => return err("S0102", format!("Number out of range: {text}")),
            }
            i = j;
            continue;
        }
        if c == '`' {
            let close = (i + 1..chars.len()).find(|&j| chars[j] == '`');
            let Some(close) = close else {
                return err(
                    "S0105",
                    "Quoted property name must be terminated with a backquote (`)",
                );
            };
            out.push(Tok::Name(chars[i + 1..close].iter().collect()));
            i = close + 1;
            continue;
        }
        if c == '$' {
            let mut j = i + 1;
            if chars.get(j) == Some(&'$') {
                out.push(Tok::Var("$".into()));
                i = j + 1;
                continue;
            }
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            out.push(Tok::Var(chars[i + 1..j].iter().collect()));
            i = j;
            continue;
        }
        if c == 'λ' {
            out.push(Tok::Name("function".into()));
            i += 1;
            continue;
        }
        if let Some(op) = OPERATORS.iter().find(|op| {
            op.chars()
                .enumerate()
                .all(|(k, oc)| chars.get(i + k) == Some(&oc))
        }) {
            out.push(Tok::Op(op));
            i += op.chars().count();
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            out.push(Tok::Name(chars[i..j].iter().collect()));
            i = j;
            continue;
        }
        return err(
            "S0204",
            format!("Unknown operator: \"{c}\" at column {}", i + 1),
        );
    }
    if out.len() > MAX_TOKENS {
        return err(
            "S0208",
            format!("The expression has more than {MAX_TOKENS} tokens"),
        );
    }
    Ok(out)
}

impl Node {
    /// The nodes right below this one.
    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Dot(a, b)
            | Node::Filter(a, b)
            | Node::Binary(_, a, b)
            | Node::Range(a, b)
            | Node::Chain(a, b) => vec![a, b],
            Node::KeepArray(a) | Node::Neg(a) | Node::Bind(_, a) => vec![a],
            Node::Sort(a, terms) => std::iter::once(&**a)
                .chain(terms.iter().map(|(t, _)| t))
                .collect(),
            Node::Cond(c, t, e) => [Some(&**c), Some(&**t), e.as_deref()]
                .into_iter()
                .flatten()
                .collect(),
            Node::Block(items) | Node::Array(items) => items.iter().collect(),
            Node::Object(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            Node::Call(f, args) => std::iter::once(&**f).chain(args).collect(),
            Node::Lambda(l) => vec![&l.body],
            Node::Group(a, pairs) => std::iter::once(&**a)
                .chain(pairs.iter().flat_map(|(k, v)| [k, v]))
                .collect(),
            Node::Transform(t) => [Some(&t.location), Some(&t.update), t.delete.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// How deep the tree is (counted without recursing: a long chain of
    /// operators makes a deep tree from a flat text).
    fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut todo = vec![(self, 1)];
        while let Some((n, d)) = todo.pop() {
            deepest = deepest.max(d);
            todo.extend(n.children().into_iter().map(|c| (c, d + 1)));
        }
        deepest
    }
}

/// Binding power of a token in infix position.
fn lbp(t: &Tok) -> u8 {
    match t {
        Tok::Op(op) => match *op {
            "." => 75,
            "[" | "(" => 80,
            "{" => 70,
            "^" => 40,
            "*" | "/" | "%" => 60,
            "+" | "-" | "&" => 50,
            "=" | "!=" | "<" | "<=" | ">" | ">=" | "~>" => 40,
            "?" => 20,
            ":=" => 10,
            _ => 0,
        },
        Tok::Name(n) => match n.as_str() {
            "and" => 30,
            "or" => 25,
            "in" => 40,
            _ => 0,
        },
        _ => 0,
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
        depth: 0,
    };
    if p.toks.is_empty() {
        return err("S0207", "Unexpected end of expression");
    }
    let node = p.expr(0)?;
    if let Some(t) = p.toks.get(p.at) {
        return err("S0201", format!("Syntax error: unexpected {t:?}"));
    }
    if node.depth() > MAX_DEPTH * 2 {
        return err(
            "S0208",
            format!("The expression nests deeper than {} levels", MAX_DEPTH * 2),
        );
    }
    Ok(node)
}

impl Parser {
    fn next(&mut self) -> Result<Tok, SyntaxError> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t.map_or_else(|| err("S0207", "Unexpected end of expression"), Ok)
    }

    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Op(o)) if *o == op)
    }

    fn expect(&mut self, op: &str) -> Result<(), SyntaxError> {
        match self.next()? {
            Tok::Op(o) if o == op => Ok(()),
            t => err("S0202", format!("Expected \"{op}\", got {t:?}")),
        }
    }

    /// Items up to `close`, separated by `sep`.
    fn list(&mut self, sep: &str, close: &str) -> Result<Vec<Node>, SyntaxError> {
        let mut items = Vec::new();
        if self.peek_op(close) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.expr(0)?);
            match self.next()? {
                Tok::Op(o) if o == sep => continue,
                Tok::Op(o) if o == close => return Ok(items),
                t => {
                    return err(
                        "S0202",
                        format!("Expected \"{sep}\" or \"{close}\", got {t:?}"),
                    )
                }
            }
        }
    }

    /// An object constructor's pairs, after its `{`.
    fn pairs(&mut self) -> Result<Vec<(Node, Node)>, SyntaxError> {
        let mut pairs = Vec::new();
        if self.peek_op("}") {
            self.at += 1;
            return Ok(pairs);
        }
        loop {
            let key = self.expr(0)?;
            self.expect(":")?;
            let value = self.expr(0)?;
            pairs.push((key, value));
            match self.next()? {
                Tok::Op(",") => continue,
                Tok::Op("}") => return Ok(pairs),
                t => return err("S0202", format!("Expected \",\" or \"}}\", got {t:?}")),
            }
        }
    }

    /// A call's arguments, after its `(`: a `?` alone is a placeholder.
    fn arguments(&mut self) -> Result<Vec<Node>, SyntaxError> {
        let mut items = Vec::new();
        if self.peek_op(")") {
            self.at += 1;
            return Ok(items);
        }
        loop {
            let alone = matches!(self.toks.get(self.at + 1), Some(Tok::Op("," | ")")));
            if self.peek_op("?") && alone {
                self.at += 1;
                items.push(Node::Placeholder);
            } else {
                items.push(self.expr(0)?);
            }
            match self.next()? {
                Tok::Op(",") => continue,
                Tok::Op(")") => return Ok(items),
                t => return err("S0202", format!("Expected \",\" or \")\", got {t:?}")),
            }
        }
    }

    /// A function's signature (`<n-n:n>`), read past: wisp does not check
    /// arguments against it.
    fn signature(&mut self) -> Result<(), SyntaxError> {
        if !self.peek_op("<") {
            return Ok(());
        }
        let mut open = 0usize;
        loop {
            match self.next()? {
                Tok::Op("<") => open += 1,
                Tok::Op(">") => open -= 1,
                Tok::Op("{" | "}") => return err("S0401", "A function signature is not closed"),
                _ => {}
            }
            if open == 0 {
                return Ok(());
            }
        }
    }

    fn expr(&mut self, rbp: u8) -> Result<Node, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                "S0208",
                format!("The expression nests deeper than {MAX_DEPTH} levels"),
            );
        }
        let t = self.next()?;
        let mut left = self.nud(t)?;
        while let Some(t) = self.toks.get(self.at) {
            if rbp >= lbp(t) {
                break;
            }
            let t = self.next()?;
            left = self.led(t, left)?;
        }
        self.depth -= 1;
        Ok(left)
    }

    fn nud(&mut self, t: Tok) -> Result<Node, SyntaxError> {
        Ok(match t {
            Tok::Num(n) => Node::Num(n),
            Tok::Str(s) => Node::Str(s),
            Tok::Var(v) => Node::Var(v),
            Tok::Regex(pattern, flags) => {
                let mut builder = regex::RegexBuilder::new(&pattern);
                builder
                    .case_insensitive(flags.contains('i'))
                    .multi_line(flags.contains('m'))
                    .size_limit(1 << 20);
                match builder.build() {
                    Ok(r) => Node::Regex(Pattern(Arc::new(r))),
                    Err(e) => return err("S0303", format!("Invalid regular expression: {e}")),
                }
            }
            Tok::Name(n) => match n.as_str() {
                "true" => Node::Bool(true),
                "false" => Node::Bool(false),
                "null" => Node::Null,
                "function" if self.peek_op("(") => {
                    self.at += 1;
                    let mut params = Vec::new();
                    if !self.peek_op(")") {
                        loop {
                            match self.next()? {
                                Tok::Var(v) if !v.is_empty() => params.push(v),
                                t => return err("S0208", format!("Parameter {t:?} of function definition must be a variable name (start with $)")),
                            }
                            match self.next()? {
                                Tok::Op(",") => continue,
                                Tok::Op(")") => break,
                                t => {
                                    return err(
                                        "S0202",
                                        format!("Expected \",\" or \")\", got {t:?}"),
                                    )
                                }
                            }
                        }
                    } else {
                        self.at += 1;
                    }
                    self.signature()?;
                    self.expect("{")?;
                    let body = self.expr(0)?;
                    self.expect("}")?;
                    Node::Lambda(Arc::new(Lambda { params, body }))
                }
                _ => Node::Name(n),
            },
            Tok::Op("-") => Node::Neg(Box::new(self.expr(70)?)),
            Tok::Op("*") => Node::Wild,
            Tok::Op("**") => Node::Descend,
            Tok::Op("(") => Node::Block(self.list(";", ")")?),
            Tok::Op("[") => {
                let mut items = Vec::new();
                if self.peek_op("]") {
                    self.at += 1;
                } else {
                    loop {
                        let item = self.expr(0)?;
                        let item = if self.peek_op("..") {
                            self.at += 1;
                            Node::Range(Box::new(item), Box::new(self.expr(0)?))
                        } else {
                            item
                        };
                        items.push(item);
                        match self.next()? {
                            Tok::Op(",") => continue,
                            Tok::Op("]") => break,
                            t => {
                                return err("S0202", format!("Expected \",\" or \"]\", got {t:?}"))
                            }
                        }
                    }
                }
                Node::Array(items)
            }
            Tok::Op("{") => Node::Object(self.pairs()?),
            Tok::Op("|") => {
                let location = self.expr(0)?;
                self.expect("|")?;
                let update = self.expr(0)?;
                let delete = match self.peek_op(",") {
                    true => {
                        self.at += 1;
                        Some(self.expr(0)?)
                    }
                    false => None,
                };
                self.expect("|")?;
                Node::Transform(Arc::new(Transform {
                    location,
                    update,
                    delete,
                }))
            }
            t => {
                return err(
                    "S0211",
                    format!("The symbol {t:?} cannot be used as a unary operator"),
                )
            }
        })
    }

    fn led(&mut self, t: Tok, left: Node) -> Result<Node, SyntaxError> {
        let b = Box::new;
        Ok(match t {
            Tok::Op(".") => Node::Dot(b(left), b(self.expr(75)?)),
            Tok::Op("[") => {
                if self.peek_op("]") {
                    self.at += 1;
                    Node::KeepArray(b(left))
                } else {
                    let p = self.expr(0)?;
                    self.expect("]")?;
                    Node::Filter(b(left), b(p))
                }
            }
            Tok::Op("(") => Node::Call(b(left), self.arguments()?),
            Tok::Op("{") => Node::Group(b(left), self.pairs()?),
            Tok::Op("^") => {
                self.expect("(")?;
                let mut terms = Vec::new();
                loop {
                    let ascending = if self.peek_op("<") {
                        self.at += 1;
                        true
                    } else if self.peek_op(">") {
                        self.at += 1;
                        false
                    } else {
                        true
                    };
                    terms.push((self.expr(0)?, ascending));
                    match self.next()? {
                        Tok::Op(",") => continue,
                        Tok::Op(")") => break,
                        t => return err("S0202", format!("Expected \",\" or \")\", got {t:?}")),
                    }
                }
                Node::Sort(b(left), terms)
            }
            Tok::Op(":=") => match left {
                Node::Var(v) if !v.is_empty() && v != "$" => Node::Bind(v, b(self.expr(9)?)),
                _ => {
                    return err(
                        "S0212",
                        "The left side of := must be a variable name (start with $)",
                    )
                }
            },
            Tok::Op("?") => {
                let then = self.expr(0)?;
                let otherwise = if self.peek_op(":") {
                    self.at += 1;
                    Some(b(self.expr(0)?))
                } else {
                    None
                };
                Node::Cond(b(left), b(then), otherwise)
            }
            Tok::Op("~>") => Node::Chain(b(left), b(self.expr(40)?)),
            Tok::Op(op) => Node::Binary(op, b(left), b(self.expr(lbp(&Tok::Op(op)))?)),
            Tok::Name(n) if matches!(n.as_str(), "and" | "or" | "in") => {
                let op: &'static str = match n.as_str() {
                    "and" => "and",
                    "or" => "or",
                    _ => "in",
                };
                let power = lbp(&Tok::Name(n));
                Node::Binary(op, b(left), b(self.expr(power)?))
            }
            t => return err("S0201", format!("Syntax error: unexpected {t:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_paths() {
        let n = parse("$states.input.a + 2 * 3").unwrap();
        let Node::Binary("+", l, r) = n else { panic!() };
        assert!(matches!(*l, Node::Dot(..)));
        assert!(matches!(*r, Node::Binary("*", ..)));
        assert!(matches!(parse("a[0].b").unwrap(), Node::Dot(..)));
        assert!(matches!(parse("x ? 1 : 2").unwrap(), Node::Cond(..)));
        assert!(matches!(
            parse("($a := 1; $a + 1)").unwrap(),
            Node::Block(_)
        ));
        assert!(matches!(
            parse("function($x){ $x * 2 }").unwrap(),
            Node::Lambda(_)
        ));
        assert!(matches!(parse("[1..5]").unwrap(), Node::Array(_)));
        assert!(matches!(
            parse("$match(s, /a+b/i)").unwrap(),
            Node::Call(..)
        ));
        assert!(matches!(parse("a / 2").unwrap(), Node::Binary("/", ..)));
    }

    #[test]
    fn bad_text_is_an_error_not_a_crash() {
        for text in [
            "",
            "1 +",
            "(",
            "[1,",
            "{'a' 1}",
            "'open",
            "$x := ",
            "/ab",
            "1 @ 2",
            "a[",
            "function(x){1}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let deep = "(".repeat(100) + "1" + &")".repeat(100);
        assert!(parse(&deep).unwrap_err().0.contains("nests deeper"));
        let long = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(parse(&long).unwrap_err().0.contains("tokens"));
        let minus = "-".repeat(10_000) + "1";
        assert!(parse(&minus).is_err());
    }
}
