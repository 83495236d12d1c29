//! The JSONata query language (`"QueryLanguage": "JSONata"`): a field such
//! as Arguments, Output or Assign is JSON in which a string written
//! `{% expression %}` is evaluated, with `$states` (input, result,
//! errorOutput, context) and the workflow's variables bound. A failing
//! expression, or one that yields nothing, is `States.QueryEvaluationError`.
//!
//! wisp's own JSONata (`syntax`, `eval`, `functions`): JSONata 2.0 as
//! Step Functions runs it, less what README.md lists. Expressions are
//! untrusted: each is at most 16 KiB and 4,096 tokens, parsed into a tree
//! of bounded depth when the definition is checked, and evaluated within
//! a time limit and a call depth, on a stack that grows as it recurses.

mod eval;
mod functions;
mod pictures;
mod syntax;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::errors::QUERY_EVALUATION_ERROR;
use crate::step::Failure;
use eval::{Ev, Scope, V};
use syntax::Node;

/// Bounds of one expression.
pub const MAX_EXPRESSION: usize = 16 * 1024;
const TIME_LIMIT: Duration = Duration::from_secs(1);

/// A parsed expression, with its text.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    node: Arc<Node>,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.text == other.text
    }
}

/// A JSONata field, compiled: JSON kept as written, with expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Fixed(Value),
    Expr(Expr),
    Object(Vec<(String, Form)>),
    Array(Vec<Form>),
}

/// The expression in `text`, if it is written `{% … %}`.
pub fn expression(text: &str) -> Option<&str> {
    text.strip_prefix("{%")?.strip_suffix("%}")
}

/// Compiles a field's value, parsing each expression in it.
pub fn compile(v: &Value) -> Result<Form, String> {
    compile_at(v, 0)
}

fn compile_at(v: &Value, depth: usize) -> Result<Form, String> {
    if depth > 64 {
        return Err("the value nests deeper than 64 levels".into());
    }
    let form = match v {
        Value::String(s) => match expression(s) {
            Some(e) => Form::Expr(parse(e)?),
            None => Form::Fixed(v.clone()),
        },
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                fields.push((k.clone(), compile_at(v, depth + 1)?));
            }
            Form::Object(fields)
        }
        Value::Array(items) => Form::Array(
            items
                .iter()
                .map(|v| compile_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        other => Form::Fixed(other.clone()),
    };
    // A value without expressions stays as written.
    Ok(match form {
        Form::Object(fields) if fields.iter().all(|(_, f)| matches!(f, Form::Fixed(_))) => {
            Form::Fixed(v.clone())
        }
        Form::Array(items) if items.iter().all(|f| matches!(f, Form::Fixed(_))) => {
            Form::Fixed(v.clone())
        }
        other => other,
    })
}

/// Parses an expression: its size, its syntax, and no `$eval`.
fn parse(text: &str) -> Result<Expr, String> {
    if text.len() > MAX_EXPRESSION {
        return Err(format!(
            "The JSONata expression is longer than {MAX_EXPRESSION} bytes"
        ));
    }
    if text.contains("$eval") {
        return Err("The JSONata function $eval is not supported; use $parse".into());
    }
    let node = syntax::parse(text).map_err(|e| {
        format!(
            "The JSONata expression '{}' is not valid: {}",
            shown(text),
            e.0
        )
    })?;
    Ok(Expr {
        text: text.to_string(),
        node: Arc::new(node),
    })
}

fn shown(expr: &str) -> String {
    match expr.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &expr[..i]),
        None => expr.to_string(),
    }
}

/// What `$states` holds where an expression is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct States<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub result: Option<&'a Value>,
    pub error_output: Option<&'a Value>,
}

impl Form {
    /// Evaluates the form in `field` (named in errors) against `states`
    /// and the variables.
    pub fn eval(
        &self,
        field: &str,
        states: States<'_>,
        vars: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        Ok(match self {
            Form::Fixed(v) => v.clone(),
            Form::Expr(e) => run(e, field, states, vars)?,
            Form::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, f) in fields {
                    out.insert(k.clone(), f.eval(&format!("{field}/{k}"), states, vars)?);
                }
                Value::Object(out)
            }
            Form::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, f)| f.eval(&format!("{field}[{i}]"), states, vars))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// Evaluates one expression, binding `$states` and the variables it
/// names.
fn run(
    e: &Expr,
    field: &str,
    states: States<'_>,
    vars: &Map<String, Value>,
) -> Result<Value, Failure> {
    let fail = |why: String| {
        Failure::new(
            QUERY_EVALUATION_ERROR,
            format!(
                "The JSONata expression '{}' specified for the field '{field}' {why}",
                shown(e.text.trim())
            ),
        )
    };
    let scope = Scope::default();
    for name in names(&e.text) {
        if name == "states" {
            let mut m = Map::new();
            m.insert("input".into(), states.input.clone());
            m.insert("context".into(), states.context.clone());
            if let Some(r) = states.result {
                m.insert("result".into(), r.clone());
            }
            if let Some(x) = states.error_output {
                m.insert("errorOutput".into(), x.clone());
            }
            scope.bind("states", V::J(Value::Object(m)));
        } else if let Some(v) = vars.get(name) {
            scope.bind(name, V::J(v.clone()));
        }
    }
    let ev = Ev::new(TIME_LIMIT);
    ev.track(&scope);
    let out = ev
        .eval(&e.node, &Value::Null, &scope)
        .map_err(|err| fail(format!("threw an error: {}", err.0)))?;
    if let V::F(_) | V::R(_) = out {
        return Err(fail("returned a function".into()));
    }
    let mut out = out
        .finish()
        .ok_or_else(|| fail("returned nothing (undefined)".into()))?;
    whole_numbers(&mut out);
    Ok(out)
}

/// Numbers as JSONata writes them: a whole one without a fraction.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9e15) {
                *v = Value::from(x as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(m) => m.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// The `$name`s an expression mentions.
fn names(expr: &str) -> impl Iterator<Item = &str> {
    expr.match_indices('$').filter_map(move |(i, _)| {
        let rest = &expr[i + 1..];
        match crate::path::variable_name(rest) {
            0 => None,
            n => Some(&rest[..n]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, input: Value) -> Result<Value, Failure> {
        let form =
            compile(&json!(format!("{{%{expr}%}}"))).map_err(|e| Failure::new("compile", e))?;
        let vars: Map<String, Value> =
            serde_json::from_value(json!({"customerName": "María", "n": 3})).unwrap();
        form.eval(
            "Output",
            States {
                input: &input,
                context: &json!({"Execution": {"Id": "arn:x"}}),
                result: None,
                error_output: None,
            },
            &vars,
        )
    }

    #[test]
    fn expressions_read_states_and_variables() {
        let input = json!({"title": "Doctor", "items": [{"price": 5}, {"price": 20}]});
        for (expr, want) in [
            (
                " $states.input.title & ' ' & $customerName ",
                json!("Doctor María"),
            ),
            ("$sum($states.input.items.price)", json!(25)),
            ("$states.input.items[price > 10]", json!({"price": 20})),
            ("$states.context.Execution.Id", json!("arn:x")),
            ("$n * 2", json!(6)),
            ("$partition([1,2,3,4,5], 2)", json!([[1, 2], [3, 4], [5]])),
            ("$range(0, 10, 5)", json!([0, 5, 10])),
            ("$range(3, 1, -1)", json!([3, 2, 1])),
            (
                "$hash('abc', 'SHA-256')",
                json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ),
            ("$parse('{\"a\": [1]}').a", json!([1])),
            ("$type($states.input.items)", json!("array")),
            ("$average([1, 2, 3, 4])", json!(2.5)),
            ("$encodeUrlComponent('a b&c')", json!("a%20b%26c")),
            ("$decodeUrlComponent('a%20b')", json!("a b")),
            ("$count($uuid())", json!(1)),
        ] {
            assert_eq!(eval(expr, input.clone()).unwrap(), want, "{expr}");
        }
    }

    /// JSONata's semantics, each as its documentation shows it.
    #[test]
    fn the_language_as_jsonata_documents_it() {
        let input = json!({"n": 3, "name": "ann", "Account": {"Name": "Firefly", "Order": [
            {"OrderID": "o1", "Product": [{"Price": 1, "Quantity": 2}, {"Price": 3, "Quantity": 1}]},
            {"OrderID": "o2", "Product": [{"Price": 5, "Quantity": 1}]}]}});
        for (expr, want) in [
            ("$states.input.Account.Order.OrderID", json!(["o1", "o2"])),
            ("$states.input.Account.Order[0].OrderID", json!("o1")),
            ("$states.input.Account.Order[-1].OrderID", json!("o2")),
            (
                "$states.input.Account.Order.Product.Price",
                json!([1, 3, 5]),
            ),
            (
                "$states.input.Account.Order.Product[0].Price",
                json!([1, 5]),
            ),
            (
                "$sum($states.input.Account.Order.Product.(Price * Quantity))",
                json!(10),
            ),
            (
                "$states.input.Account.Order[OrderID = 'o2'].Product[0].Price",
                json!(5),
            ),
            (
                "$states.input.Account.Order.Product[Price > 2].Price",
                json!([3, 5]),
            ),
            ("$count($states.input.Account.Order)", json!(2)),
            (
                "$states.input.Account.Order^(>OrderID).OrderID",
                json!(["o2", "o1"]),
            ),
            ("$states.input.**.Price", json!([1, 3, 5])),
            (
                "$states.input.Account.Order[0].Product[]",
                json!([{"Price": 1, "Quantity": 2}, {"Price": 3, "Quantity": 1}]),
            ),
            ("$states.input.Account.Order[1].Product[].Price", json!([5])),
            ("$states.input.name.$uppercase()", json!("ANN")),
            ("[1, 2, 3][$ > 1]", json!([2, 3])),
            ("[1..3].($ * 2)", json!([2, 4, 6])),
            ("[[1, 2], 3]", json!([[1, 2], 3])),
            (
                "{'a': 1, 'b': [1, 2], 'c': $states.input.nope}",
                json!({"a": 1, "b": [1, 2]}),
            ),
            ("'x' & 1 & true", json!("x1true")),
            (
                "0.1 + 0.2 = 0.3 ? 'exact' : $string(0.1 + 0.2)",
                json!("0.3"),
            ),
            ("1 = 1.0 and 'a' in ['a', 'b'] and $not(2 < 1)", json!(true)),
            ("$states.input.nope ? 'y' : 'n'", json!("n")),
            ("($x := 2; $y := 3; $x * $y)", json!(6)),
            ("$string({'a': 1})", json!("{\"a\":1}")),
            ("$join(['a', 'b'], '-')", json!("a-b")),
            ("$split('a,b,c', ',', 2)", json!(["a", "b"])),
            ("$replace('hello', 'l', 'L')", json!("heLLo")),
            ("$replace('abc', /b/, '[$0]')", json!("a[b]c")),
            ("$match('ab12', /[0-9]+/).match", json!("12")),
            ("$contains('abc', /B/i)", json!(true)),
            ("$substring('hello', -3, 2)", json!("ll")),
            ("$pad('5', -3, '0')", json!("005")),
            ("$trim('  a   b ')", json!("a b")),
            ("$number('12.5') + 1", json!(13.5)),
            (
                "[$round(2.5), $round(3.5), $round(-2.5)]",
                json!([2, 4, -2]),
            ),
            ("$formatNumber(1234.5, '#,##0.00')", json!("1,234.50")),
            ("$formatBase(255, 16)", json!("ff")),
            ("$reduce([1, 2, 3], function($a, $b){ $a + $b })", json!(6)),
            (
                "$filter([1, 2, 3, 4], function($v){ $v % 2 = 0 })",
                json!([2, 4]),
            ),
            ("$map([1, 2], function($v, $i){ $v + $i })", json!([1, 3])),
            ("$map(['a', 'b'], $uppercase)", json!(["A", "B"])),
            ("$keys({'a': 1, 'b': 2})", json!(["a", "b"])),
            ("$merge([{'a': 1}, {'b': 2}])", json!({"a": 1, "b": 2})),
            ("$exists($states.input.nope)", json!(false)),
            ("$sort([3, 1, 2])", json!([1, 2, 3])),
            (
                "$sort([3, 1, 2], function($a, $b){ $a < $b })",
                json!([3, 2, 1]),
            ),
            ("$distinct([1, 1, 2])", json!([1, 2])),
            ("$lookup({'a': 1}, 'a')", json!(1)),
            (
                "[$boolean([]), $not(0), $boolean('x')]",
                json!([false, true, true]),
            ),
            ("$type(null)", json!("null")),
            (
                "$toMillis('2026-01-01T00:00:00Z')",
                json!(1_767_225_600_000_i64),
            ),
            ("$append([1], [2])", json!([1, 2])),
            ("$zip([1, 2], [3, 4])", json!([[1, 3], [2, 4]])),
            ("$single([1, 2, 3], function($v){ $v = 2 })", json!(2)),
            ("$spread({'a': 1, 'b': 2})", json!([{"a": 1}, {"b": 2}])),
            (
                "$each({'a': 1}, function($v, $k){ $k & '=' & $v })",
                json!("a=1"),
            ),
            (
                "$sift({'a': 1, 'b': 2}, function($v){ $v > 1 })",
                json!({"b": 2}),
            ),
            ("$random(7) = $random(7)", json!(true)),
            ("$states.input.n ~> $string()", json!("3")),
            ("-$states.input.n", json!(-3)),
            (
                "$states.input.Account.*",
                json!(["Firefly", {"OrderID": "o1", "Product": [{"Price": 1, "Quantity": 2}, {"Price": 3, "Quantity": 1}]}, {"OrderID": "o2", "Product": [{"Price": 5, "Quantity": 1}]}]),
            ),
            ("$base64decode($base64encode('wisp'))", json!("wisp")),
            ("/* a comment */ $abs(-2)", json!(2)),
        ] {
            assert_eq!(eval(expr, input.clone()).ok(), Some(want.clone()), "{expr}");
        }
    }

    /// Grouping, transforms, partial application and signatures, as
    /// JSONata's documentation shows them.
    #[test]
    fn grouping_transforms_and_partial_application() {
        let input = json!({"Account": {"Order": [
            {"OrderID": "o1", "Product": [
                {"Name": "Hat", "Price": 10, "Quantity": 2},
                {"Name": "Cap", "Price": 3, "Quantity": 1}]},
            {"OrderID": "o2", "Product": [{"Name": "Hat", "Price": 10, "Quantity": 1}]}]}});
        for (expr, want) in [
            (
                "$states.input.Account.Order.Product{Name: Price}",
                json!({"Hat": [10, 10], "Cap": 3}),
            ),
            (
                "$states.input.Account.Order.Product{Name: $sum(Quantity)}",
                json!({"Hat": 3, "Cap": 1}),
            ),
            (
                "$states.input.Account.Order{OrderID: $count(Product)}",
                json!({"o1": 2, "o2": 1}),
            ),
            (
                "($first := $substring(?, 0, 1); $first('Hello'))",
                json!("H"),
            ),
            ("$map(['ab', 'cd'], $substring(?, 1))", json!(["b", "d"])),
            ("(function($x, $y)<n-n:n>{ $x * $y })(3, 4)", json!(12)),
            (
                "$states.input.Account ~> |Order.Product|{'Price': Price * 2}, 'Quantity'|",
                json!({"Order": [
                    {"OrderID": "o1", "Product": [
                        {"Name": "Hat", "Price": 20}, {"Name": "Cap", "Price": 6}]},
                    {"OrderID": "o2", "Product": [{"Name": "Hat", "Price": 20}]}]}),
            ),
            (
                "($raise := |$|{'n': n + 1}|; [{'n': 1}, {'n': 5}] ~> $map($raise))",
                json!([{"n": 2}, {"n": 6}]),
            ),
            ("$formatInteger(2789, '#,##0')", json!("2,789")),
            ("$formatInteger(3, 'w;o')", json!("third")),
            (
                "$fromMillis(1531585845678, '[FNn], [D1o] [MNn] [Y] [h]:[m01][P]', '-0500')",
                json!("Saturday, 14th July 2018 11:30am"),
            ),
            (
                "$toMillis('14/07/2018', '[D01]/[M01]/[Y0001]')",
                json!(1_531_526_400_000_i64),
            ),
            (
                "$states.input.Account.Order[0] ~> |Product[Price > 5]|{}, ['Price']|",
                json!({"OrderID": "o1", "Product": [
                    {"Name": "Hat", "Quantity": 2},
                    {"Name": "Cap", "Price": 3, "Quantity": 1}]}),
            ),
        ] {
            assert_eq!(eval(expr, input.clone()).unwrap(), want, "{expr}");
        }
        for bad in [
            "{'a': 1}{'x': 2}.y ~> |a|1|",
            "$states.input.Account.Order{OrderID: 1, OrderID: 2}",
        ] {
            assert!(eval(bad, input.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_are_query_evaluation_errors() {
        for (expr, says) in [
            ("$states.input.missing", "returned nothing (undefined)"),
            ("$undefinedFunction()", "threw an error"),
            ("function($x){$x}", "returned a function"),
            ("($f := function($x){$f($x)}; $f(1))", "threw an error"),
            ("$range(0, 1000000000, 1)", "more than"),
            ("$hash('a', 'CRC')", "the algorithm is one of"),
        ] {
            let f = eval(expr, json!({})).unwrap_err();
            assert_eq!(f.error, QUERY_EVALUATION_ERROR, "{expr}");
            assert!(f.cause.contains(says), "{expr}: {}", f.cause);
        }
    }

    #[test]
    fn hostile_expressions_are_refused_when_the_definition_is_checked() {
        for expr in [
            "(".repeat(500) + "1" + &")".repeat(500),
            "-".repeat(1000) + "1",
            "true ? ".repeat(300) + "1" + &" : 2".repeat(300),
            "1 +".repeat(10_000) + "1",
            "1 + ".repeat(2000) + "1",
            "$eval('1')".to_string(),
            "1 +".to_string(),
        ] {
            assert!(
                compile(&json!(format!("{{%{expr}%}}"))).is_err(),
                "{:.40}",
                expr
            );
        }
        // Recursion meets the depth bound, a long loop the time limit.
        for expr in [
            "($f := function($x){ $f($x + 1) }; $f(0))",
            "$map([1..99999], function($v){ $map([1..99999], function($w){ $w }) })",
        ] {
            let f = eval(expr, json!({})).unwrap_err();
            assert_eq!(f.error, QUERY_EVALUATION_ERROR, "{expr}");
        }
    }

    #[test]
    fn values_without_expressions_stay_as_written() {
        let v = json!({"static": "Hello", "not-evaluated": "$customerName", "list": [1, "{%"]});
        assert_eq!(compile(&v).unwrap(), Form::Fixed(v.clone()));
        let f = compile(&json!({"a": {"b": "{% $n %}"}, "c": 1})).unwrap();
        assert!(matches!(f, Form::Object(_)));
    }
}
