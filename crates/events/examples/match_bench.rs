//! The matcher alone: 1,000 rules on one bus (most filed by source or
//! detail-type, a tenth not indexable), events matched on one thread.
//! Prints events/s and matches; with `--dump FILE` also writes the rules
//! and events as JSON, so scripts/bench-events.sh can time moto's
//! matcher on the same ones.
//!
//! cargo run --release -p wisp-events --example match_bench [-- --dump F]

use std::time::Instant;

use serde_json::{json, Value};
use wisp_events::index::RuleSet;
use wisp_events::model::Rule;

const RULES: usize = 1000;
const EVENTS: usize = 20_000;

/// A small deterministic generator (xorshift), so every run matches the same.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn patterns(g: &mut Gen) -> Vec<Value> {
    (0..RULES)
        .map(|i| match i % 10 {
            // Not indexable: prefixes only.
            0 => json!({"source": [{"prefix": format!("svc-{}", g.next(10))}],
                        "detail": {"region": [{"prefix": "eu-"}]}}),
            1 | 2 => json!({"detail-type": [format!("T-{}", g.next(50))],
                            "detail": {"status": [format!("s-{}", g.next(5))]}}),
            _ => json!({"source": [format!("svc-{}", g.next(1000))],
                        "detail-type": [format!("T-{}", g.next(50))],
                        "detail": {"amount": [{"numeric": [">", g.next(1000)]}]}}),
        })
        .collect()
}

fn events(g: &mut Gen) -> Vec<Value> {
    let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
    (0..EVENTS)
        .map(|i| {
            json!({
                "version": "0", "id": format!("e{i}"), "account": "000000000000",
                "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
                "source": format!("svc-{}", g.next(1000)),
                "detail-type": format!("T-{}", g.next(50)),
                "detail": {"amount": g.next(2000), "status": format!("s-{}", g.next(5)),
                           "region": regions[g.next(3) as usize]},
            })
        })
        .collect()
}

fn main() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let patterns = patterns(&mut g);
    let events = events(&mut g);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--dump") {
        let dump = json!({"patterns": patterns, "events": events});
        std::fs::write(&args[i + 1], dump.to_string()).expect("cannot write the dump");
    }
    let rules = patterns.iter().enumerate().map(|(i, p)| Rule {
        name: format!("r{i}"),
        event_bus_name: "default".into(),
        event_pattern: Some(p.to_string()),
        state: "ENABLED".into(),
        ..Default::default()
    });
    let set = RuleSet::new(rules);
    // A warm-up pass, then the timed ones.
    let warm: usize = events.iter().map(|e| set.matching(e).len()).sum();
    let rounds = 5;
    let mut matches = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        for e in &events {
            matches += set.matching(e).len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let per_second = (rounds * EVENTS) as f64 / secs;
    println!(
        "wisp: {RULES} rules, {} events matched in {secs:.3} s on one thread: {per_second:.0} events/s, {} matches per pass",
        rounds * EVENTS,
        matches / rounds
    );
    assert_eq!(matches / rounds, warm, "every pass matches the same");
    println!("RESULT {per_second:.0}");
}
