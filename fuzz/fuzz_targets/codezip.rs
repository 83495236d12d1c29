//! Code zips from CreateFunction / UpdateFunctionCode: any bytes are
//! inspected within the limits, and every listed entry can be read back
//! or refused with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_core::codezip;

fuzz_target!(|bytes: &[u8]| {
    let Ok(summary) = codezip::inspect(bytes) else {
        return;
    };
    assert!(summary.entries.len() <= wisp_core::limits::MAX_ZIP_ENTRIES);
    assert!(summary.unpacked_bytes <= wisp_core::limits::MAX_UNZIPPED_BYTES);
    for runtime in ["nodejs20.x", "python3.12", "provided.al2023", "wasm"] {
        let _ = codezip::check_handler(&summary.entries, runtime, "index.handler");
    }
    for name in summary.entries.iter().take(8) {
        if let Ok(entry) = codezip::read_entry(bytes, name) {
            let _ = codezip::require_component(&entry, name);
        }
    }
});
