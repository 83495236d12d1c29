//! Event patterns (rules, filter criteria): any text compiles or is
//! refused with EventBridge's reason, and a compiled pattern matches any
//! event without panicking.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wisp_core::pattern::Pattern;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    pattern: &'a str,
    event: &'a str,
}

fuzz_target!(|input: Input| {
    let compiled = match Pattern::parse(input.pattern) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().starts_with("Event pattern is not valid. Reason: "));
            return;
        }
    };
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(input.event) {
        let _ = compiled.matches(&event);
    }
});
