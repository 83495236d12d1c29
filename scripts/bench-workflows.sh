#!/usr/bin/env bash
# Workflows on one node, side by side with moto's Step Functions (with
# execute_state_machine on), in one run:
# 1. EXPRESS: StartSyncExecution of a three-state Pass machine from SENDERS
#    connections for SECONDS. Target: >= 10,000 executions/s on 2 cores.
#    Then a 13-state one: the difference in time per execution over 10
#    states is the cost of one state transition. Then 3 JSONata Pass
#    states (an Output and an Assign expression each): the cost of
#    JSONata's expressions per state (wisp only: moto has no JSONata).
# 2. STANDARD: COUNT executions of an 11-state Pass machine, every
#    transition committed (fsynced, group commit) before the next, started
#    from SENDERS connections; transitions/s from wisp's own count
#    (wisp_state_transitions_total). Target: >= 2,000 transitions/s.
# 3. A Lambda task's added latency: StartSyncExecution of a one-Task
#    machine calling a Node function, against invoking the function
#    directly, one call at a time, p50 of each. Target: < 2 ms added.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SECONDS_RUN=${SECONDS_RUN:-10}
SENDERS=${SENDERS:-32}
COUNT=${COUNT:-2000}
CALLS=${CALLS:-300}
command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]'
build_wisp
cargo build --release --quiet -p wisp-cli --example sqs_load --manifest-path "$ROOT/Cargo.toml"
LOAD="$ROOT/target/release/examples/sqs_load"

# machines ENDPOINT KEY SECRET: creates the benchmark's machines; prints
# each one's name and ARN (moto has an account of its own).
machines() {
    AWS_ACCESS_KEY_ID=$2 AWS_SECRET_ACCESS_KEY=$3 AWS_DEFAULT_REGION=us-east-1 python3 - "$1" "${4:-}" <<'PY'
import json, sys, boto3
sfn = boto3.client("stepfunctions", endpoint_url=sys.argv[1])
role = "arn:aws:iam::000000000000:role/bench"
def passes(n):
    states = {f"S{i}": {"Type": "Pass", "Result": {"i": i}, "ResultPath": f"$.s{i}",
                        **({"Next": f"S{i+1}"} if i + 1 < n else {"End": True})} for i in range(n)}
    return json.dumps({"StartAt": "S0", "States": states})
task = {"StartAt": "Call", "States": {"Call": {"Type": "Task", "End": True,
        "Resource": "arn:aws:lambda:us-east-1:000000000000:function:echo"}}}
def jsonata(n):
    states = {f"S{i}": {"Type": "Pass", "Output": {"i": i, "n": "{% $states.input.n %}"},
                        "Assign": {f"v{i}": "{% $states.input.n + 1 %}"},
                        **({"Next": f"S{i+1}"} if i + 1 < n else {"End": True})} for i in range(n)}
    return json.dumps({"QueryLanguage": "JSONata", "StartAt": "S0", "States": states})
made = [("pass3", passes(3), "EXPRESS"), ("pass13", passes(13), "EXPRESS"),
        ("durable11", passes(11), "STANDARD"), ("task", json.dumps(task), "EXPRESS")]
if "moto" not in sys.argv[2:]:
    made.append(("jsonata3", jsonata(3), "EXPRESS"))
for name, definition, kind in made:
    r = sfn.create_state_machine(name=name, definition=definition, roleArn=role, type=kind)
    print(name, r["stateMachineArn"])
PY
}

arn() { awk -v n="$1" '$1 == n {print $2}' "$WORK/arns"; }

echo "== wisp"
DATA="$WORK/data"
start_wisp "$DATA"
read -r KEY SECRET < <(creds "$DATA")
APP="$WORK/app"
mkdir -p "$APP/echo"
echo 'exports.handler = async (event) => event;' > "$APP/echo/index.js"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "flowbench"

[function.echo]
runtime = "nodejs20.x"
source = "echo"
handler = "index.handler"
TOML
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
machines "$API" "$KEY" "$SECRET" > "$WORK/arns"
echo "-- 1. EXPRESS, 3 Pass states, StartSyncExecution, $SENDERS connections, ${SECONDS_RUN}s"
"$LOAD" states-sync "$API" "$KEY" "$SECRET" "$(arn pass3)" "$SECONDS_RUN" "$SENDERS" | tee "$WORK/w3.txt"
echo "-- 13 Pass states"
"$LOAD" states-sync "$API" "$KEY" "$SECRET" "$(arn pass13)" "$SECONDS_RUN" "$SENDERS" | tee "$WORK/w13.txt"
echo "-- 3 JSONata Pass states (Output and Assign expressions)"
"$LOAD" states-sync "$API" "$KEY" "$SECRET" "$(arn jsonata3)" "$SECONDS_RUN" "$SENDERS" | tee "$WORK/wj.txt"
echo "-- 2. STANDARD, 11 Pass states, $COUNT executions from $SENDERS connections"
before=$(curl -s "$API/metrics" | awk '/^wisp_state_transitions_total\{state_machine="durable11"\}/ {print $2}')
"$LOAD" states-start "$API" "$KEY" "$SECRET" "$(arn durable11)" "$COUNT" "$SENDERS" | tee "$WORK/wstd.txt"
after=$(curl -s "$API/metrics" | awk '/^wisp_state_transitions_total\{state_machine="durable11"\}/ {print $2}')
secs=$(awk '/^SECONDS/ {print $2}' "$WORK/wstd.txt")
python3 -c "print(f'durable transitions: {${after:-0} - ${before:-0}:.0f} in {$secs} s = {(${after:-0} - ${before:-0}) / $secs:.0f}/s (target >= 2,000/s)')"
echo "-- 3. a Lambda task vs a direct invoke, $CALLS calls each, one at a time"
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 python3 - "$API" "$CALLS" <<'PY'
import json, statistics, sys, time, boto3
from botocore.config import Config
api, n = sys.argv[1], int(sys.argv[2])
cfg = Config(inject_host_prefix=False, retries={"total_max_attempts": 1})
sfn = boto3.client("stepfunctions", endpoint_url=api, config=cfg)
lam = boto3.client("lambda", endpoint_url=api, config=cfg)
arn = "arn:aws:states:us-east-1:000000000000:stateMachine:task"
def p50(f):
    for _ in range(20):
        f()
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
direct = p50(lambda: lam.invoke(FunctionName="echo", Payload=b'{"n": 1}'))
def run():
    r = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 1}')
    assert r["status"] == "SUCCEEDED", r
task = p50(run)
print(f"direct invoke p50 {direct:.2f} ms, through a Task p50 {task:.2f} ms: added {task - direct:.2f} ms (target < 2 ms)")
PY
stop_wisp

echo "== moto_server (in memory, execute_state_machine on)"
# moto runs one execution per server: every later StartExecution fails
# (500, "TypeError: cannot pickle '_thread.RLock' object" in moto 5), and
# it has no StartSyncExecution. So each machine gets a fresh moto_server
# and one execution, timed from StartExecution to SUCCEEDED; its rate is
# one over that.
for machine in pass3 durable11; do
    MOTO_PORT=$(free_port)
    moto_server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
    MOTO_PID=$!
    PIDS+=("$MOTO_PID")
    MOTO="http://127.0.0.1:$MOTO_PORT"
    wait_http "$MOTO/moto-api/"
    curl -s -X POST "$MOTO/moto-api/config" -H 'content-type: application/json' \
        -d '{"stepfunctions": {"execute_state_machine": true}}' >/dev/null
    machines "$MOTO" test test moto > "$WORK/arns"
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
        python3 - "$MOTO" "$(arn "$machine")" <<'PY' | tee "$WORK/moto-$machine.txt"
import sys, time, boto3
sfn = boto3.client("stepfunctions", endpoint_url=sys.argv[1])
t = time.perf_counter()
run = sfn.start_execution(stateMachineArn=sys.argv[2], name="one", input='{"n": 1}')
while sfn.describe_execution(executionArn=run["executionArn"])["status"] == "RUNNING":
    time.sleep(0.001)
secs = time.perf_counter() - t
print(f"one execution in {secs * 1000:.1f} ms")
print(f"SECONDS {secs:.4f}")
PY
    kill "$MOTO_PID" 2>/dev/null || true
done
python3 - "$WORK" "$COUNT" <<'PY'
import re, sys
work, count = sys.argv[1], int(sys.argv[2])
def find(name, pattern):
    m = re.search(pattern, open(f"{work}/{name}").read(), re.M)
    return float(m.group(1)) if m else 0.0
w3, w13 = find("w3.txt", r"^RESULT (\d+)"), find("w13.txt", r"^RESULT (\d+)")
m3 = 1 / max(find("moto-pass3.txt", r"^SECONDS ([\d.]+)"), 1e-9)
print(f"== EXPRESS: wisp {w3:.0f} executions/s, moto {m3:.0f}/s: {w3 / max(m3, 1):.0f}x (target >= 10,000/s)")
# Both cores busy in both runs: 10 more transitions cost this much time.
per = (1 / max(w13, 1) - 1 / max(w3, 1)) / 10 * 2 * 1e6
print(f"== per state transition: {per:.1f} µs of CPU (3 vs 13 Pass states at full load, 2 cores)")
wj = find("wj.txt", r"^RESULT (\d+)")
if wj:
    extra = (1 / wj - 1 / max(w3, 1)) / 3 * 2 * 1e6
    print(f"== JSONata: {wj:.0f} executions/s of 3 JSONata states; {extra:.0f} µs of CPU more per state (2 expressions)")
ws = find("wstd.txt", r"^SECONDS ([\d.]+)")
ms = find("moto-durable11.txt", r"^SECONDS ([\d.]+)")
if ws and ms:
    wr, mr = count * 12 / ws, 12 / ms
    print(f"== STANDARD: wisp {wr:.0f} transitions/s (durable), moto {mr:.0f}/s (in memory): {wr / max(mr, 1):.0f}x")
PY
