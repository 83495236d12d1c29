//! `wisp.toml`: any text parses to a manifest or to an error that points
//! at a line and column inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = wisp_core::manifest::parse("wisp.toml", text) {
        let lines = text.split('\n').count();
        assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        assert!(e.column >= 1, "column {}", e.column);
        assert_eq!(e.file, "wisp.toml");
        let _ = e.to_string();
    }
});
