//! The States Language is untrusted: any definition, path, intrinsic
//! call or JSONata expression parses or is refused, and what parses runs
//! on any input without panicking or leaking; a task token given back is
//! read or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_core::clock::Rng;
use wisp_flows::asl::StateMachine;
use wisp_flows::intrinsics::Call;
use wisp_flows::jsonata::{self, States};
use wisp_flows::path::{Path, Scope};

struct Half;
impl Rng for Half {
    fn unit(&self) -> f64 {
        0.5
    }
}

fuzz_target!(|input: (&str, &str, &str)| {
    let (definition, expression, data) = input;
    let _ = StateMachine::parse(definition);
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
    if let Ok(p) = Path::parse(expression) {
        let _ = p.read(&value);
        let _ = p.write(value.clone(), serde_json::Value::Null);
    }
    let vars = serde_json::Map::new();
    let scope = Scope {
        context: &value,
        vars: &vars,
    };
    if let Ok(c) = Call::parse(expression) {
        let _ = c.eval(&value, scope, &Half);
    }
    let text = serde_json::Value::String(format!("{{%{expression}%}}"));
    if let Ok(form) = jsonata::compile(&text) {
        let states = States {
            input: &value,
            context: &value,
            result: Some(&value),
            error_output: None,
        };
        let _ = form.eval("Output", states, &vars);
    }
    // Task tokens come back from anyone.
    let _ = wisp_flows::tokens::token_of(expression);
    let _ = wisp_flows::tokens::callback_of(expression);
});
