//! JSONata's evaluation: paths map over sequences (a step's arrays are
//! flattened into the sequence, a single array result kept as it is),
//! a sequence of one is its value and of none is undefined, predicates
//! filter or index, and functions (built in, or lambdas closing over
//! their scope) are values. Every evaluation is bounded in steps, time
//! and depth.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::functions;
use super::syntax::{Lambda, Node, Transform};

const MAX_DEPTH: usize = 160;
/// Stack left below which evaluation goes on in a new segment, and that
/// segment's size.
const RED_ZONE: usize = 256 * 1024;
const GROWTH: usize = 4 << 20;
/// The most items a range, or a sequence made by one step, may hold.
pub const MAX_ITEMS: usize = 100_000;

/// A value while an expression is evaluated.
#[derive(Clone, Debug)]
pub enum V {
    /// Nothing (JSONata's undefined).
    U,
    J(Value),
    /// A sequence made by a path (flattened into the next step's).
    S(Vec<Value>),
    /// An array made by an array constructor (kept whole in paths).
    C(Vec<Value>),
    /// A sequence that stays an array even of one (`a[]`).
    K(Vec<Value>),
    F(Func),
    R(Arc<regex::Regex>),
}

#[derive(Clone, Debug)]
pub enum Func {
    Lambda(Arc<Lambda>, Scope),
    Builtin(&'static str),
    /// A function with some arguments given (`None`: a placeholder).
    Partial(Box<V>, Vec<Option<V>>),
    Transform(Arc<Transform>, Scope),
}

impl Func {
    /// How many arguments a callback of `$map` and the like is given.
    pub fn arity(&self) -> usize {
        match self {
            Func::Lambda(l, _) => l.params.len(),
            Func::Partial(_, given) => given.iter().filter(|g| g.is_none()).count(),
            Func::Builtin(_) | Func::Transform(..) => 1,
        }
    }
}

/// Variables: a scope and the ones around it.
#[derive(Clone, Debug, Default)]
pub struct Scope(Rc<Frame>);

#[derive(Debug, Default)]
pub struct Frame {
    vars: RefCell<HashMap<String, V>>,
    parent: Option<Scope>,
}

impl Scope {
    fn child(&self) -> Scope {
        Scope(Rc::new(Frame {
            vars: RefCell::default(),
            parent: Some(self.clone()),
        }))
    }

    /// Forgets its variables: a lambda kept in a variable holds its
    /// scope, so scopes are emptied when the evaluation ends.
    fn clear(&self) {
        self.0.vars.borrow_mut().clear();
    }

    pub fn bind(&self, name: &str, v: V) {
        self.0.vars.borrow_mut().insert(name.to_string(), v);
    }

    fn get(&self, name: &str) -> Option<V> {
        let mut at = Some(self);
        while let Some(s) = at {
            if let Some(v) = s.0.vars.borrow().get(name) {
                return Some(v.clone());
            }
            at = s.0.parent.as_ref();
        }
        None
    }
}

/// Why an evaluation failed: JSONata's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

pub type R<T> = Result<T, EvalError>;

pub fn fail<T>(code: &str, message: impl std::fmt::Display) -> R<T> {
    Err(EvalError(format!("{code}: {message}")))
}

/// One evaluation's bounds and state.
pub struct Ev {
    started: Instant,
    limit: Duration,
    steps: Cell<u64>,
    depth: Cell<usize>,
    /// Every scope made, to empty when done (see `Scope::clear`).
    scopes: RefCell<Vec<Scope>>,
}

impl Drop for Ev {
    fn drop(&mut self) {
        for s in self.scopes.get_mut().drain(..) {
            s.clear();
        }
    }
}

impl V {
    /// The value an expression's result is: a sequence of one is that
    /// one, of none nothing.
    pub fn finish(self) -> Option<Value> {
        match self {
            V::U | V::F(_) | V::R(_) => None,
            V::J(v) => Some(v),
            V::C(items) | V::K(items) => Some(Value::Array(items)),
            V::S(mut items) => match items.len() {
                0 => None,
                1 => items.pop(),
                _ => Some(Value::Array(items)),
            },
        }
    }

    /// The items of a value, as a path step maps over them.
    pub fn items(self) -> Vec<Value> {
        match self {
            V::U | V::F(_) | V::R(_) => Vec::new(),
            V::J(Value::Array(a)) | V::S(a) | V::C(a) | V::K(a) => a,
            V::J(v) => vec![v],
        }
    }

    pub fn is_undefined(&self) -> bool {
        matches!(self, V::U) || matches!(self, V::S(s) if s.is_empty())
    }
}

/// JSONata's truth: false for nothing, null, false, 0, "", an empty
/// array or object, and arrays of only false things.
pub fn truthy(v: &V) -> bool {
    fn json(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => a.iter().any(json),
            Value::Object(m) => !m.is_empty(),
        }
    }
    match v {
        V::U | V::F(_) | V::R(_) => false,
        V::J(v) => json(v),
        V::S(a) | V::C(a) | V::K(a) => a.iter().any(json),
    }
}

/// A number as JSON: whole numbers as integers.
pub fn number(x: f64) -> R<Value> {
    if !x.is_finite() {
        return fail("D1001", "Number out of range");
    }
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(x as i64));
    }
    Ok(serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number))
}

fn num_of(v: &V) -> Option<f64> {
    match v {
        V::J(Value::Number(n)) => n.as_f64(),
        V::S(s) | V::K(s) if s.len() == 1 => s[0].as_f64(),
        _ => None,
    }
}

/// Deep equality as `=` sees it (numbers by value).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

impl Ev {
    pub fn new(limit: Duration) -> Ev {
        Ev {
            started: Instant::now(),
            limit,
            steps: Cell::new(0),
            depth: Cell::new(0),
            scopes: RefCell::default(),
        }
    }

    /// A scope inside `parent`, emptied when the evaluation ends.
    pub fn child(&self, parent: &Scope) -> Scope {
        let c = parent.child();
        self.scopes.borrow_mut().push(c.clone());
        c
    }

    /// Empties `scope` too when the evaluation ends.
    pub fn track(&self, scope: &Scope) {
        self.scopes.borrow_mut().push(scope.clone());
    }

    fn tick(&self) -> R<()> {
        let n = self.steps.get() + 1;
        self.steps.set(n);
        if n.is_multiple_of(1024) && self.started.elapsed() > self.limit {
            return fail("U1001", "The expression took longer than its time limit");
        }
        Ok(())
    }

    pub fn eval(&self, node: &Node, ctx: &Value, scope: &Scope) -> R<V> {
        self.tick()?;
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return fail(
                "U1001",
                "Stack overflow: the expression recursed too deeply",
            );
        }
        self.depth.set(depth);
        // Each level recurses (bounded by MAX_DEPTH, but frames are big
        // in a debug build): the stack grows on the heap when it runs
        // low, so evaluation runs on the caller's thread.
        let out = stacker::maybe_grow(RED_ZONE, GROWTH, || self.eval_inner(node, ctx, scope));
        self.depth.set(depth - 1);
        out
    }

    fn eval_inner(&self, node: &Node, ctx: &Value, scope: &Scope) -> R<V> {
        Ok(match node {
            Node::Num(n) => V::J(number(*n)?),
            Node::Str(s) => V::J(Value::String(s.clone())),
            Node::Bool(b) => V::J(Value::Bool(*b)),
            Node::Null => V::J(Value::Null),
            Node::Regex(r) => V::R(r.0.clone()),
            Node::Var(name) => match name.as_str() {
                "" => V::J(ctx.clone()),
                "$" => scope.get("$").unwrap_or(V::U),
                _ => match scope.get(name) {
                    Some(v) => v,
                    None => match functions::builtin(name) {
                        Some(f) => V::F(Func::Builtin(f)),
                        None => V::U,
                    },
                },
            },
            Node::Name(n) => lookup(ctx, n),
            Node::Wild => {
                let mut out = Vec::new();
                if let Value::Object(m) = ctx {
                    for v in m.values() {
                        match v {
                            Value::Array(a) => out.extend(a.iter().cloned()),
                            other => out.push(other.clone()),
                        }
                    }
                }
                V::S(out)
            }
            Node::Descend => {
                let mut out = Vec::new();
                descend(ctx, &mut out, 0);
                V::S(out)
            }
            Node::Dot(lhs, rhs) => {
                let items = self.eval(lhs, ctx, scope)?.items();
                let mut results = Vec::with_capacity(items.len());
                for item in &items {
                    let r = self.eval(rhs, item, scope)?;
                    if !r.is_undefined() {
                        results.push(r);
                    }
                }
                if results.len() == 1 && matches!(results[0], V::J(Value::Array(_))) {
                    return Ok(results.pop().unwrap_or(V::U));
                }
                let mut out = Vec::new();
                for r in results {
                    match r {
                        V::J(Value::Array(a)) | V::S(a) | V::K(a) => out.extend(a),
                        V::C(a) => out.push(Value::Array(a)),
                        V::J(v) => out.push(v),
                        V::U => {}
                        V::F(_) | V::R(_) => {
                            return fail("T1001", "A path step may not give a function")
                        }
                    }
                    if out.len() > MAX_ITEMS {
                        return fail(
                            "D1001",
                            format!("A sequence holds more than {MAX_ITEMS} items"),
                        );
                    }
                }
                // `a[].b`: the path's result is an array, even of one.
                if keeps_array(lhs) || keeps_array(rhs) {
                    return Ok(V::K(out));
                }
                V::S(out)
            }
            Node::Filter(lhs, pred) => {
                let items = self.eval(lhs, ctx, scope)?.items();
                self.filter(items, pred, scope)?
            }
            Node::KeepArray(lhs) => V::K(self.eval(lhs, ctx, scope)?.items()),
            Node::Sort(lhs, terms) => {
                let items = self.eval(lhs, ctx, scope)?.items();
                let mut keyed = Vec::with_capacity(items.len());
                for item in items {
                    let mut keys = Vec::with_capacity(terms.len());
                    for (t, _) in terms {
                        keys.push(self.eval(t, &item, scope)?.finish());
                    }
                    keyed.push((keys, item));
                }
                let mut bad = None;
                keyed.sort_by(|(a, _), (b, _)| {
                    for (i, (_, ascending)) in terms.iter().enumerate() {
                        let o = match (&a[i], &b[i]) {
                            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                                .as_f64()
                                .partial_cmp(&y.as_f64())
                                .unwrap_or(std::cmp::Ordering::Equal),
                            (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
                            (None, None) => std::cmp::Ordering::Equal,
                            (None, _) => std::cmp::Ordering::Greater,
                            (_, None) => std::cmp::Ordering::Less,
                            _ => {
                                bad = Some(());
                                std::cmp::Ordering::Equal
                            }
                        };
                        let o = if *ascending { o } else { o.reverse() };
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    std::cmp::Ordering::Equal
                });
                if bad.is_some() {
                    return fail("T2008", "The expressions within an order-by clause must evaluate to numeric or string values");
                }
                V::S(keyed.into_iter().map(|(_, v)| v).collect())
            }
            Node::Neg(e) => match self.eval(e, ctx, scope)? {
                v if v.is_undefined() => V::U,
                v => match num_of(&v) {
                    Some(x) => V::J(number(-x)?),
                    None => return fail("D1002", "Cannot negate a non-numeric value"),
                },
            },
            Node::Binary(op, l, r) => self.binary(op, l, r, ctx, scope)?,
            Node::Cond(c, then, otherwise) => {
                if truthy(&self.eval(c, ctx, scope)?) {
                    self.eval(then, ctx, scope)?
                } else {
                    match otherwise {
                        Some(e) => self.eval(e, ctx, scope)?,
                        None => V::U,
                    }
                }
            }
            Node::Block(items) => {
                let inner = self.child(scope);
                let mut last = V::U;
                for item in items {
                    last = self.eval(item, ctx, &inner)?;
                }
                last
            }
            Node::Bind(name, e) => {
                let v = self.eval(e, ctx, scope)?;
                scope.bind(name, v.clone());
                v
            }
            Node::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Node::Range(a, b) => {
                            let a = self.eval(a, ctx, scope)?;
                            let b = self.eval(b, ctx, scope)?;
                            if a.is_undefined() || b.is_undefined() {
                                continue;
                            }
                            let (Some(a), Some(b)) = (num_of(&a), num_of(&b)) else {
                                return fail("T2003", "The bounds of a range must be integers");
                            };
                            if a.fract() != 0.0 || b.fract() != 0.0 {
                                return fail("T2003", "The bounds of a range must be integers");
                            }
                            if b - a >= MAX_ITEMS as f64 {
                                return fail(
                                    "D2014",
                                    format!("A range holds at most {MAX_ITEMS} items"),
                                );
                            }
                            let (a, b) = (a as i64, b as i64);
                            out.extend((a..=b).map(Value::from));
                        }
                        Node::Array(_) => {
                            if let Some(v) = self.eval(item, ctx, scope)?.finish() {
                                out.push(v);
                            }
                        }
                        _ => match self.eval(item, ctx, scope)? {
                            V::U => {}
                            V::F(_) | V::R(_) => {
                                return fail("T1001", "An array may not hold a function")
                            }
                            v => out.extend(v.items()),
                        },
                    }
                    if out.len() > MAX_ITEMS {
                        return fail("D2014", format!("An array holds at most {MAX_ITEMS} items"));
                    }
                }
                V::C(out)
            }
            Node::Range(..) => return fail("S0201", "A range belongs in an array constructor"),
            Node::Object(pairs) => {
                let mut out = Map::new();
                for (k, v) in pairs {
                    let key = match self.eval(k, ctx, scope)?.finish() {
                        Some(Value::String(s)) => s,
                        other => {
                            return fail(
                                "T1003",
                                format!(
                                    "Key in object structure must evaluate to a string; got: {}",
                                    other.unwrap_or(Value::Null)
                                ),
                            )
                        }
                    };
                    match self.eval(v, ctx, scope)? {
                        V::F(_) | V::R(_) => {
                            return fail("T1001", "An object may not hold a function")
                        }
                        v => {
                            if let Some(v) = v.finish() {
                                out.insert(key, v);
                            }
                        }
                    }
                }
                V::J(Value::Object(out))
            }
            Node::Call(f, args) => {
                let callee = self.eval(f, ctx, scope)?;
                if args.contains(&Node::Placeholder) {
                    if !matches!(callee, V::F(_)) {
                        return fail("T1008", "Attempted to partially apply a non-function");
                    }
                    let mut given = Vec::with_capacity(args.len());
                    for a in args {
                        given.push(match a {
                            Node::Placeholder => None,
                            a => Some(self.eval(a, ctx, scope)?),
                        });
                    }
                    return Ok(V::F(Func::Partial(Box::new(callee), given)));
                }
                let mut given = Vec::with_capacity(args.len());
                for a in args {
                    given.push(self.eval(a, ctx, scope)?);
                }
                self.apply(&callee, given, ctx, name_of(f))?
            }
            Node::Placeholder => {
                return fail("S0201", "A placeholder (?) is only an argument of a call")
            }
            Node::Transform(t) => V::F(Func::Transform(t.clone(), scope.clone())),
            Node::Group(lhs, pairs) => {
                self.group(self.eval(lhs, ctx, scope)?.items(), pairs, scope)?
            }
            Node::Lambda(l) => V::F(Func::Lambda(l.clone(), scope.clone())),
            Node::Chain(lhs, rhs) => {
                let v = self.eval(lhs, ctx, scope)?;
                match &**rhs {
                    Node::Call(f, args) => {
                        let callee = self.eval(f, ctx, scope)?;
                        let mut given = vec![v];
                        for a in args {
                            given.push(self.eval(a, ctx, scope)?);
                        }
                        self.apply(&callee, given, ctx, name_of(f))?
                    }
                    other => {
                        let callee = self.eval(other, ctx, scope)?;
                        self.apply(&callee, vec![v], ctx, name_of(other))?
                    }
                }
            }
        })
    }

    fn filter(&self, items: Vec<Value>, pred: &Node, scope: &Scope) -> R<V> {
        if let Node::Num(n) = pred {
            let len = items.len() as i64;
            let mut i = n.floor() as i64;
            if i < 0 {
                i += len;
            }
            return Ok(V::S(
                items
                    .into_iter()
                    .nth(usize::try_from(i).unwrap_or(usize::MAX))
                    .into_iter()
                    .collect(),
            ));
        }
        let len = items.len();
        let mut out = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let r = self.eval(pred, &item, scope)?;
            let keep = match &r {
                V::J(Value::Number(n)) => {
                    let mut i = n.as_f64().unwrap_or(f64::NAN).floor() as i64;
                    if i < 0 {
                        i += len as i64;
                    }
                    i == index as i64
                }
                V::J(Value::Array(a)) | V::S(a) | V::C(a) | V::K(a)
                    if !a.is_empty() && a.iter().all(Value::is_number) =>
                {
                    a.iter().any(|n| {
                        let mut i = n.as_f64().unwrap_or(f64::NAN).floor() as i64;
                        if i < 0 {
                            i += len as i64;
                        }
                        i == index as i64
                    })
                }
                other => truthy(other),
            };
            if keep {
                out.push(item);
            }
        }
        Ok(V::S(out))
    }

    fn binary(&self, op: &str, l: &Node, r: &Node, ctx: &Value, scope: &Scope) -> R<V> {
        match op {
            "and" => {
                let a = truthy(&self.eval(l, ctx, scope)?);
                return Ok(V::J(Value::Bool(a && truthy(&self.eval(r, ctx, scope)?))));
            }
            "or" => {
                let a = truthy(&self.eval(l, ctx, scope)?);
                return Ok(V::J(Value::Bool(a || truthy(&self.eval(r, ctx, scope)?))));
            }
            _ => {}
        }
        let a = self.eval(l, ctx, scope)?;
        let b = self.eval(r, ctx, scope)?;
        Ok(match op {
            "+" | "-" | "*" | "/" | "%" => {
                if a.is_undefined() || b.is_undefined() {
                    return Ok(V::U);
                }
                let Some(x) = num_of(&a) else {
                    return fail(
                        "T2001",
                        format!("The left side of the \"{op}\" operator must evaluate to a number"),
                    );
                };
                let Some(y) = num_of(&b) else {
                    return fail(
                        "T2002",
                        format!(
                            "The right side of the \"{op}\" operator must evaluate to a number"
                        ),
                    );
                };
                V::J(number(match op {
                    "+" => x + y,
                    "-" => x - y,
                    "*" => x * y,
                    "/" => x / y,
                    _ => x % y,
                })?)
            }
            "&" => {
                let text = |v: V| -> R<String> {
                    match v.finish() {
                        None => Ok(String::new()),
                        Some(v) => functions::to_text(&v),
                    }
                };
                V::J(Value::String(text(a)? + &text(b)?))
            }
            "=" | "!=" => {
                let same = match (a.finish(), b.finish()) {
                    (Some(x), Some(y)) => equal(&x, &y),
                    _ => return Ok(V::J(Value::Bool(false))),
                };
                V::J(Value::Bool(if op == "=" { same } else { !same }))
            }
            "<" | "<=" | ">" | ">=" => {
                let (Some(x), Some(y)) = (a.finish(), b.finish()) else {
                    return Ok(V::J(Value::Bool(false)));
                };
                let ord = match (&x, &y) {
                    (Value::Number(p), Value::Number(q)) => p.as_f64().partial_cmp(&q.as_f64()),
                    (Value::String(p), Value::String(q)) => Some(p.cmp(q)),
                    _ => return fail("T2010", format!("The expressions either side of operator \"{op}\" must be of the same data type (numbers or strings)")),
                };
                let Some(ord) = ord else {
                    return Ok(V::J(Value::Bool(false)));
                };
                V::J(Value::Bool(match op {
                    "<" => ord.is_lt(),
                    "<=" => ord.is_le(),
                    ">" => ord.is_gt(),
                    _ => ord.is_ge(),
                }))
            }
            "in" => {
                let Some(x) = a.finish() else {
                    return Ok(V::J(Value::Bool(false)));
                };
                V::J(Value::Bool(b.items().iter().any(|y| equal(&x, y))))
            }
            _ => return fail("S0204", format!("Unknown operator: \"{op}\"")),
        })
    }

    /// Calls a function value with `args`; a built-in one given fewer
    /// arguments than it takes starts from the context.
    pub fn apply(&self, callee: &V, args: Vec<V>, ctx: &Value, name: &str) -> R<V> {
        match callee {
            V::F(Func::Builtin(f)) => functions::call(self, f, args, ctx),
            V::F(Func::Lambda(l, closure)) => {
                let inner = self.child(closure);
                let mut args = args.into_iter();
                for p in &l.params {
                    inner.bind(p, args.next().unwrap_or(V::U));
                }
                self.eval(&l.body, ctx, &inner)
            }
            V::F(Func::Partial(f, given)) => {
                let mut args = args.into_iter();
                let all = given
                    .iter()
                    .map(|g| g.clone().unwrap_or_else(|| args.next().unwrap_or(V::U)))
                    .collect();
                self.apply(f, all, ctx, name)
            }
            V::F(Func::Transform(t, closure)) => {
                let target = args.into_iter().next().unwrap_or(V::U);
                self.transform(t, target, closure)
            }
            _ => fail(
                "T1006",
                format!(
                    "Attempted to invoke a non-function{}",
                    if name.is_empty() {
                        String::new()
                    } else {
                        format!(" (${name})")
                    }
                ),
            ),
        }
    }
}

/// The key every object of a transform's copy is marked with while its
/// location is found (no JSON text can hold it: it is not a character).
const MARK: &str = "\u{0}wisp-transform";

impl Ev {
    /// `a{k: v}`: each item's key, then each key's value over the items
    /// that have it (one item: that item; more: them as an array).
    fn group(&self, items: Vec<Value>, pairs: &[(Node, Node)], scope: &Scope) -> R<V> {
        let mut groups: Vec<(String, usize, Vec<Value>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for item in items {
            self.tick()?;
            for (p, (k, _)) in pairs.iter().enumerate() {
                let key = match self.eval(k, &item, scope)?.finish() {
                    None => continue,
                    Some(Value::String(s)) => s,
                    Some(other) => {
                        return fail(
                            "T1003",
                            format!(
                                "Key in object structure must evaluate to a string; got: {other}"
                            ),
                        )
                    }
                };
                match at.get(&key).map(|g| &mut groups[*g]) {
                    Some((_, pair, members)) if *pair == p => members.push(item.clone()),
                    Some(_) => {
                        return fail(
                            "D1009",
                            format!("Multiple key definitions evaluate to same key: \"{key}\""),
                        )
                    }
                    None => {
                        at.insert(key.clone(), groups.len());
                        groups.push((key, p, vec![item.clone()]));
                    }
                }
            }
        }
        let mut out = Map::new();
        for (key, p, mut members) in groups {
            let ctx = match members.len() {
                1 => members.remove(0),
                _ => Value::Array(members),
            };
            match self.eval(&pairs[p].1, &ctx, scope)? {
                V::F(_) | V::R(_) => return fail("T1001", "An object may not hold a function"),
                v => {
                    if let Some(v) = v.finish() {
                        out.insert(key, v);
                    }
                }
            }
        }
        Ok(V::J(Value::Object(out)))
    }

    /// Applies a transform to `target`: a copy of it in which each object
    /// the location selects has the update's fields merged in and the
    /// delete's fields removed.
    fn transform(&self, t: &Transform, target: V, scope: &Scope) -> R<V> {
        let Some(mut copy) = target.finish() else {
            return Ok(V::U);
        };
        let mut next = 0u64;
        mark(&mut copy, &mut next, 0);
        let selected: Vec<u64> = self
            .eval(&t.location, &copy, scope)?
            .items()
            .iter()
            .filter_map(|v| v.get(MARK)?.as_u64())
            .collect();
        let mut failure = None;
        self.update(&mut copy, &selected, t, scope, &mut failure, 0);
        if let Some(e) = failure {
            return Err(e);
        }
        unmark(&mut copy, 0);
        Ok(V::J(copy))
    }

    fn update(
        &self,
        v: &mut Value,
        selected: &[u64],
        t: &Transform,
        scope: &Scope,
        failure: &mut Option<EvalError>,
        depth: usize,
    ) {
        if failure.is_some() || depth > 128 {
            return;
        }
        if let Value::Object(m) = v {
            let chosen = m
                .get(MARK)
                .and_then(Value::as_u64)
                .is_some_and(|id| selected.contains(&id));
            if chosen {
                let mut plain = Value::Object(m.clone());
                unmark(&mut plain, 0);
                match self.changes(t, &plain, scope) {
                    Ok((set, drop)) => {
                        m.extend(set);
                        for k in drop {
                            m.remove(&k);
                        }
                    }
                    Err(e) => {
                        *failure = Some(e);
                        return;
                    }
                }
            }
        }
        match v {
            Value::Object(m) => m
                .values_mut()
                .for_each(|c| self.update(c, selected, t, scope, failure, depth + 1)),
            Value::Array(a) => a
                .iter_mut()
                .for_each(|c| self.update(c, selected, t, scope, failure, depth + 1)),
            _ => {}
        }
    }

    /// What a transform sets and removes on one selected object.
    fn changes(
        &self,
        t: &Transform,
        obj: &Value,
        scope: &Scope,
    ) -> R<(Map<String, Value>, Vec<String>)> {
        let set = match self.eval(&t.update, obj, scope)?.finish() {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return fail(
                    "T2011",
                    format!("The insert/update clause of the transform expression must evaluate to an object: {other}"),
                )
            }
        };
        let drop = match &t.delete {
            None => Vec::new(),
            Some(d) => match self.eval(d, obj, scope)?.finish() {
                None => Vec::new(),
                Some(Value::String(s)) => vec![s],
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                    .into_iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Some(other) => {
                    return fail(
                        "T2012",
                        format!("The delete clause of the transform expression must evaluate to a string or array of strings: {other}"),
                    )
                }
            },
        };
        Ok((set, drop))
    }
}

/// Numbers every object below `v` under `MARK`.
fn mark(v: &mut Value, next: &mut u64, depth: usize) {
    if depth > 128 {
        return;
    }
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(|c| mark(c, next, depth + 1));
            *next += 1;
            m.insert(MARK.to_string(), Value::from(*next));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| mark(c, next, depth + 1)),
        _ => {}
    }
}

fn unmark(v: &mut Value, depth: usize) {
    if depth > 130 {
        return;
    }
    match v {
        Value::Object(m) => {
            m.remove(MARK);
            m.values_mut().for_each(|c| unmark(c, depth + 1));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| unmark(c, depth + 1)),
        _ => {}
    }
}

fn keeps_array(n: &Node) -> bool {
    match n {
        Node::KeepArray(_) => true,
        Node::Dot(a, b) => keeps_array(a) || keeps_array(b),
        Node::Filter(a, _) | Node::Sort(a, _) => keeps_array(a),
        _ => false,
    }
}

fn name_of(n: &Node) -> &str {
    match n {
        Node::Var(v) => v,
        _ => "",
    }
}

fn lookup(ctx: &Value, name: &str) -> V {
    match ctx {
        Value::Object(m) => m.get(name).cloned().map_or(V::U, V::J),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match lookup(item, name) {
                    V::J(Value::Array(a)) | V::S(a) => out.extend(a),
                    V::J(v) => out.push(v),
                    _ => {}
                }
            }
            V::S(out)
        }
        _ => V::U,
    }
}

fn descend(v: &Value, out: &mut Vec<Value>, depth: usize) {
    if depth > 128 || out.len() > MAX_ITEMS {
        return;
    }
    match v {
        Value::Object(m) => {
            for child in m.values() {
                if !child.is_array() {
                    out.push(child.clone());
                }
                descend(child, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for child in a {
                if !child.is_array() {
                    out.push(child.clone());
                }
                descend(child, out, depth + 1);
            }
        }
        _ => {}
    }
}
