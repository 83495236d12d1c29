//! Schedule expressions are untrusted: any text parses or is refused, and
//! a parsed one finds its next time (in any zone, from any instant)
//! without panicking, in bounded work.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_events::expression::{time_zone, Expression};

fuzz_target!(|input: (&str, i64, u8)| {
    let (text, after_ms, zone) = input;
    let Ok(e) = Expression::parse(text, true) else {
        return;
    };
    let zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"];
    let tz = time_zone(Some(zones[zone as usize % zones.len()])).unwrap();
    let after_ms = after_ms.clamp(-62_000_000_000_000, 7_000_000_000_000);
    let _ = e.next_after(after_ms, 0, &tz);
});
