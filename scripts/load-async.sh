#!/usr/bin/env bash
# Durable async invocation under load, on one node:
#  1. Accepted events per second: wrk sends pre-signed Event invokes
#     (256 connections) to a function held at reserved concurrency 0, so
#     only acceptance is measured: each 202 means the event is in SQLite,
#     fsynced (synchronous=FULL), batched by group commit. Then the same
#     with a unique idempotency key per event. Target: >= 20,000/s.
#  2. kill -9 in the middle of a run: clients send EVENTS events (half
#     with idempotency keys) while a Node function appends each run's id
#     to a file; the server is SIGKILLed, restarted, clients resend what
#     they heard nothing about plus every keyed event, the queue drains,
#     and the script counts acknowledged, delivered, lost (must be 0) and
#     duplicated effects of keyed events (must be 0). A keyed event whose
#     run the kill cut off has an unknown outcome: it is given up as
#     Interrupted (kept in the failed list, never run twice), and counted
#     apart, with whether its effect had happened.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
EVENTS=${EVENTS:-20000}
KILL_AFTER=${KILL_AFTER:-3}
CONNECTIONS=${CONNECTIONS:-256}

need_wrk
build_wisp
client() { python3 "$ROOT/scripts/async_client.py" "$@"; }
APP="$WORK/app"
mkdir -p "$APP"
cp -r "$ROOT/scripts/bench-fns/effect" "$APP/effect"
EFFECTS="$WORK/effects.txt"
: > "$EFFECTS"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "asyncload"

[function.effect]
runtime = "nodejs20.x"
source = "effect"
handler = "index.handler"
environment = { EFFECT_FILE = "$EFFECTS" }
TOML

echo "== 1. accepted events per second (acceptance only, fsync-durable)"
DATA="$WORK/data"
start_wisp "$DATA"
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
client call "$DATA" "$API" PUT /2017-10-31/functions/effect/concurrency \
    '{"ReservedConcurrentExecutions": 0}' >/dev/null
client presign "$DATA" "$API" effect > "$WORK/event.lua"
for mode in plain keyed; do
    KEYED=$([ $mode = keyed ] && echo 1 || echo 0) \
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/event.lua" "$API" > "$WORK/wrk-$mode.txt"
    python3 - "$mode" "$WORK/wrk-$mode.txt" <<'PY'
import re, sys
mode, text = sys.argv[1], open(sys.argv[2]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)
p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)
print(f"  {mode:6} accepted/s {rps:8.0f}   requests {total}   non-202 {bad.group(1) if bad else 0}   latency p50 {p50} p99 {p99}")
PY
done
client call "$DATA" "$API" GET /wisp/v1/functions/effect/async > "$WORK/queue.json"
python3 -c '
import json, sys; q = json.load(open(sys.argv[1]))["queue"]
print("  queued now: %d (accepted %d, duplicates %d)" % (q["depth"], q["accepted"], q["duplicates"]))' "$WORK/queue.json"
stop_wisp

echo "== 2. kill -9 while $EVENTS events are sent (half keyed), restart, drain, count"
DATA="$WORK/data2"
start_wisp "$DATA" --async-backoff 100ms
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
: > "$WORK/acked1.txt"
client send "$DATA" "$API" effect 0 "$EVENTS" "$WORK/acked1.txt" &
SENDER=$!
sleep "$KILL_AFTER"
kill -9 "$WISP_PID"
wait "$SENDER" || true
echo "  killed after ${KILL_AFTER}s: $(wc -l < "$WORK/acked1.txt") events acknowledged, $(wc -l < "$EFFECTS") runs so far"
start_wisp "$DATA" --async-backoff 100ms
python3 - "$EVENTS" "$WORK/acked1.txt" > "$WORK/resend.txt" <<'PY'
import sys
n, acked = int(sys.argv[1]), {int(l.split()[0]) for l in open(sys.argv[2])}
print(" ".join(str(i) for i in range(n) if i not in acked or i % 2 == 0))
PY
: > "$WORK/acked2.txt"
client send "$DATA" "$API" effect 0 0 "$WORK/acked2.txt" "$WORK/resend.txt"
for _ in $(seq 1 600); do
    depth=$(client call "$DATA" "$API" GET /wisp/v1/async | python3 -c '
import json, sys; print(sum(q["depth"] for q in json.load(sys.stdin)["queues"]))')
    [ "$depth" = 0 ] && break
    sleep 0.5
done
# Keyed events whose run the kill cut off are given up as Interrupted (their
# outcome is unknown; running them again could apply them twice).
client call "$DATA" "$API" GET "/wisp/v1/functions/effect/async?limit=1000" > "$WORK/failed.json"
python3 - "$EVENTS" "$WORK/acked1.txt" "$WORK/acked2.txt" "$EFFECTS" "$WORK/failed.json" <<'PY'
import collections, json, sys
n = int(sys.argv[1])
before = {int(l.split()[0]) for l in open(sys.argv[2])}
after = [l.split() for l in open(sys.argv[3])]
runs = collections.Counter(int(l) for l in open(sys.argv[4]) if l.strip())
failed = json.load(open(sys.argv[5]))["failed_events"]
interrupted = {f["record"]["requestPayload"]["id"] for f in failed
               if f["record"]["requestContext"]["condition"] == "Interrupted"}
other_failed = len(failed) - len(interrupted)
acked = before | {int(i) for i, _ in after}
replayed_ok = all(r == "1" for i, r in after if int(i) in before and int(i) % 2 == 0)
lost = [i for i in acked if runs[i] == 0 and i not in interrupted]
keyed_dup = [i for i in acked if i % 2 == 0 and runs[i] > 1]
plain_dup = [i for i in acked if i % 2 == 1 and runs[i] > 1]
print(f"  acknowledged before the kill: {len(before)}; after the restart: {len(acked)} of {n}")
print(f"  delivered: {sum(1 for i in acked if runs[i] > 0)}   lost: {len(lost)}   other failures: {other_failed}")
print(f"  keyed events run more than once: {len(keyed_dup)}   (resent keyed events answered as duplicates: {replayed_ok})")
print(f"  keyed runs cut off by the kill, given up as Interrupted: {len(interrupted)}"
      f" (their effect happened: {sum(1 for i in interrupted if runs[i] > 0)})")
print(f"  unkeyed events run more than once (at-least-once, resent by clients): {len(plain_dup)}")
if lost: sys.exit(f"LOST: {lost[:20]}")
if keyed_dup: sys.exit(f"KEYED DUPLICATES: {keyed_dup[:20]}")
PY
