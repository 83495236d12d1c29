#!/usr/bin/env bash
# Event pattern matching alone, side by side with moto's matcher:
# 1,000 rules on one bus (70% filed by source, 20% by detail-type, 10%
# prefix-only), 20,000 events, one thread. wisp's index tries only the
# rules filed under an event's source and detail-type (plus the unfiled
# ones); moto tries every rule. Both get the same rules and events (the
# Rust example writes them out). Target: >= 200,000 events/s per core.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MOTO_EVENTS=${MOTO_EVENTS:-200}
command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]'
echo "== building the matcher benchmark (release)" >&2
cargo build --release --quiet -p wisp-events --example match_bench --manifest-path "$ROOT/Cargo.toml"
"$ROOT/target/release/examples/match_bench" --dump "$WORK/cases.json" | tee "$WORK/wisp.txt"
python3 - "$WORK/cases.json" "$MOTO_EVENTS" <<'PY' | tee "$WORK/moto.txt"
import json, sys, time
from moto.events.models import EventPattern
cases = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
patterns = [EventPattern.load(json.dumps(p)) for p in cases["patterns"]]
events = cases["events"][:n]
started = time.perf_counter()
matches = sum(1 for e in events for p in patterns if p.matches_event(e))
secs = time.perf_counter() - started
print(f"moto: {len(patterns)} rules, {len(events)} events in {secs:.3f} s: {len(events) / secs:.0f} events/s, {matches} matches")
print(f"RESULT {len(events) / secs:.0f}")
PY
wisp=$(awk '/^RESULT/ {print $2}' "$WORK/wisp.txt")
moto=$(awk '/^RESULT/ {print $2}' "$WORK/moto.txt")
echo "wisp/moto: $(python3 -c "print(round($wisp / $moto))")x (target: wisp >= 200000 events/s)"
