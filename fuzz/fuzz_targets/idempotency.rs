//! Idempotency keys: any JSONPath text parses or is refused, and a parsed
//! path finds a key in any payload within the key limit, or refuses it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wisp_core::idempotency::{IdempotencyConfig, JsonPath};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    path: &'a str,
    header: Option<&'a str>,
    payload: &'a [u8],
}

fuzz_target!(|input: Input| {
    let Ok(path) = JsonPath::parse(input.path) else {
        return;
    };
    // A parsed path shows as what it was parsed from.
    assert_eq!(JsonPath::parse(path.as_str()).as_ref(), Ok(&path));
    let config = IdempotencyConfig {
        key_path: Some(path),
        ..IdempotencyConfig::default()
    };
    if let Ok(Some(key)) = config.key(input.header, input.payload) {
        assert!(key.len() <= wisp_core::limits::MAX_IDEMPOTENCY_KEY_BYTES);
    }
});
