#!/usr/bin/env bash
# 1. Event pattern matching alone, side by side with moto's matcher:
# 1,000 rules on one bus (70% filed by source, 20% by detail-type, 10%
# prefix-only), 20,000 events, one thread. wisp's index tries only the
# rules filed under an event's source and detail-type (plus the unfiled
# ones); moto tries every rule. Both get the same rules and events (the
# Rust example writes them out). Target: >= 200,000 events/s per core.
# 2. PutEvents accepted durably on one node: SENDERS connections put
#    batches of 10 for SECONDS to the default bus, where a rule sends each
#    to an SQS queue, so every acknowledged event is a delivery stored
#    (fsynced, group commit) before the answer. Target: >= 20,000/s.
# 3. Latency, PutEvents -> a matched Node function starts: LATENCY_EVENTS
#    events one at a time (after a warm-up), each carrying its send time;
#    the function logs the difference. Two durable hops on the way: the
#    delivery, then the function's async invocation. Target: p50 < 5 ms,
#    p99 < 50 ms.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MOTO_EVENTS=${MOTO_EVENTS:-200}
SECONDS_RUN=${SECONDS_RUN:-10}
SENDERS=${SENDERS:-16}
LATENCY_EVENTS=${LATENCY_EVENTS:-300}
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

echo "== 2. PutEvents, batches of 10, ${SECONDS_RUN}s, $SENDERS connections, each event matched to an SQS target"
build_wisp
cargo build --release --quiet -p wisp-cli --example sqs_load --manifest-path "$ROOT/Cargo.toml"
LOAD="$ROOT/target/release/examples/sqs_load"
DATA="$WORK/data"
start_wisp "$DATA"
read -r KEY SECRET < <(creds "$DATA")
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 python3 - "$API" <<'PY'
import sys, boto3
api = sys.argv[1]
sqs = boto3.client("sqs", endpoint_url=api)
events = boto3.client("events", endpoint_url=api)
sqs.create_queue(QueueName="sink")
events.put_rule(Name="load", EventPattern='{"source": ["bench"]}')
events.put_targets(Rule="load", Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:sink"}])
PY
"$LOAD" put-events "$API" "$KEY" "$SECRET" bench "$SECONDS_RUN" "$SENDERS"
stop_wisp

echo "== 3. latency: PutEvents -> function start, $LATENCY_EVENTS events one at a time (after a warm-up)"
DATA="$WORK/data3"
start_wisp "$DATA"
read -r KEY SECRET < <(creds "$DATA")
APP="$WORK/app"
mkdir -p "$APP"
cp -r "$ROOT/scripts/bench-fns/latency" "$APP/latency"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "eventbench"

[function.latency]
runtime = "nodejs20.x"
source = "latency"
handler = "index.handler"
TOML
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 python3 - "$API" "$LATENCY_EVENTS" <<'PY'
import json, sys, time, boto3
api, n = sys.argv[1], int(sys.argv[2])
events = boto3.client("events", endpoint_url=api)
events.put_rule(Name="lat", EventPattern='{"source": ["lat"]}')
events.put_targets(Rule="lat", Targets=[
    {"Id": "f", "Arn": "arn:aws:lambda:us-east-1:000000000000:function:latency"}])
def put(i):
    detail = json.dumps({"t": time.time() * 1000, "i": i})
    events.put_events(Entries=[{"Source": "lat", "DetailType": "t", "Detail": detail}])
# Warm-up (i < 0): the first start is a cold start (bench-coldstart.sh).
for i in range(-20, 0):
    put(i)
time.sleep(1)
for i in range(n):
    put(i)
    time.sleep(0.01)
PY
sleep 2
latency_report "$DATA" latency events
stop_wisp
