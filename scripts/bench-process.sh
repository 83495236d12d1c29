#!/usr/bin/env bash
# The process runtime, measured in one run:
#  - warm overhead: gateway -> Lambda event -> Node handler that returns at
#    once -> response, one connection, sequential (wrk -c1): p50/p99 RTT,
#    beside the same handler called directly in Node, the same handler
#    behind Node's own http server (the function served without wisp) and
#    a bare hyper RTT (the loopback floor). Target: p50 < 200 µs over the
#    direct call.
#  - cold start of Node and Python (process start to first response, from
#    the records: init + duration), beside `node -e ''` / `python3 -c ''`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
COLD=${COLD:-30}

need_wrk
build_wisp
cargo build --release --quiet -p wisp-server --example bare-hyper --manifest-path "$ROOT/Cargo.toml"
APP="$WORK/app"
mkdir -p "$APP"
cp -r "$ROOT/scripts/bench-fns/node" "$APP/node"
cp -r "$ROOT/scripts/bench-fns/python" "$APP/python"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "procbench"

[function.node]
runtime = "nodejs20.x"
source = "node"
handler = "index.handler"

[function.python]
runtime = "python3.11"
source = "python"
handler = "app.handler"

[[route]]
method = "GET"
path = "/node"
function = "node"

[[route]]
method = "GET"
path = "/python"
function = "python"
TOML
DATA="$WORK/data"
# Workers idle for 200 ms are stopped, so the cold runs below start fresh.
start_wisp "$DATA" --keep-warm 200ms
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
HYPER_PORT=$(free_port)
"$ROOT/target/release/examples/bare-hyper" "127.0.0.1:$HYPER_PORT" >/dev/null &
PIDS+=($!)
# The same handler behind Node's own http server: what the function costs
# served without wisp, client round trip included.
NODE_PORT=$(free_port)
(cd "$APP/node" && exec node -e '
const h = require("./index.js").handler;
require("http").createServer(async (req, res) => {
  const r = await h({ rawPath: req.url, headers: req.headers }, {});
  res.writeHead(r.statusCode, { "content-type": "text/plain" }); res.end(r.body);
}).listen(Number(process.argv[1]), "127.0.0.1");' "$NODE_PORT") &
NODE_HTTP_PID=$!
PIDS+=("$NODE_HTTP_PID")
wait_http "http://127.0.0.1:$HYPER_PORT/"
wait_http "http://127.0.0.1:$NODE_PORT/"

echo "== cold starts ($COLD each)" >&2
for _ in $(seq 1 "$COLD"); do
    curl -s -o /dev/null "$GATEWAY/node"
    curl -s -o /dev/null "$GATEWAY/python"
    sleep 0.6
done
bare() { # COMMAND...: p50 µs of starting it COLD times
    python3 - "$COLD" "$@" <<'PY'
import subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
t = []
for _ in range(n):
    s = time.perf_counter(); subprocess.run(cmd, check=True); t.append((time.perf_counter() - s) * 1e6)
t.sort(); print(f"{t[len(t)//2]:.0f} {t[min(len(t)-1, int(.99*len(t)))]:.0f}")
PY
}
read -r node_p50 node_p99 <<< "$(bare node -e '')"
read -r py_p50 py_p99 <<< "$(bare python3 -c '')"
records node > "$WORK/node.jsonl"
records python > "$WORK/python.jsonl"

echo "== warm: wrk -t1 -c1 -d$DURATION" >&2
wrk -t1 -c1 -d2s "$GATEWAY/node" >/dev/null
NODE_PID=$(pgrep -P "$WISP_PID" -f bootstrap.js | head -1)
# Context switches of a process, all threads (its CPU ticks: cpu_ticks).
switches() { cat /proc/"$1"/task/*/status | awk '/voluntary_ctxt/ {s += $2} END {print s}'; }
before="$(switches "$WISP_PID") $(cpu_ticks "$WISP_PID") $(switches "$NODE_PID") $(cpu_ticks "$NODE_PID")"
wrk_run gateway-node "$GATEWAY/node" 1 "$DURATION" > "$WORK/warm.txt"
after="$(switches "$WISP_PID") $(cpu_ticks "$WISP_PID") $(switches "$NODE_PID") $(cpu_ticks "$NODE_PID")"
echo "$before $after $(getconf CLK_TCK)" > "$WORK/costs.txt"
# The same run with wisp, the worker and wrk on one CPU: what the path
# costs without a wake-up crossing CPUs (on a VM, the IPI that wakes an
# idle vCPU can cost tens of µs per hop, four hops per call).
ALL_CPUS="0-$(($(nproc) - 1))"
for pid in "$WISP_PID" "$NODE_PID" $$; do taskset -a -p -c 0 "$pid" >/dev/null; done
wrk -t1 -c1 -d2s "$GATEWAY/node" >/dev/null
wrk_run one-cpu-node "$GATEWAY/node" 1 "$DURATION" >> "$WORK/warm.txt"
taskset -a -p -c 0 "$NODE_HTTP_PID" >/dev/null
wrk -t1 -c1 -d2s "http://127.0.0.1:$NODE_PORT/" >/dev/null
wrk_run one-cpu-node-http "http://127.0.0.1:$NODE_PORT/" 1 "$DURATION" >> "$WORK/warm.txt"
for pid in "$WISP_PID" "$NODE_PID" "$NODE_HTTP_PID" $$; do taskset -a -p -c "$ALL_CPUS" "$pid" >/dev/null; done
wrk_run bare-hyper "http://127.0.0.1:$HYPER_PORT/" 1 "$DURATION" >> "$WORK/warm.txt"
wrk -t1 -c1 -d2s "http://127.0.0.1:$NODE_PORT/" >/dev/null
wrk_run node-http "http://127.0.0.1:$NODE_PORT/" 1 "$DURATION" >> "$WORK/warm.txt"
direct=$(cd "$APP/node" && node -e '
const h = require("./index.js").handler;
(async () => {
  for (let i = 0; i < 20000; i++) await h({}, {});
  const t = []; for (let i = 0; i < 20000; i++) { const s = process.hrtime.bigint(); await h({}, {}); t.push(Number(process.hrtime.bigint() - s) / 1000); }
  t.sort((a, b) => a - b); console.log(t[t.length >> 1].toFixed(1));
})();')

python3 - "$WORK" "$direct" "$node_p50" "$node_p99" "$py_p50" "$py_p99" <<'PY'
import json, re, sys
work, direct = sys.argv[1], float(sys.argv[2])
bare = {"node": (sys.argv[3], sys.argv[4]), "python": (sys.argv[5], sys.argv[6])}
def p(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))]
print("cold start, process start to first response (server side):")
for fn in ("node", "python"):
    recs = [json.loads(l) for l in open(f"{work}/{fn}.jsonl") if l.strip()]
    cold = [(r["init_duration_us"] or 0) + r["duration_us"] for r in recs if r["cold"]]
    print(f"  {fn:<7} p50 {p(cold,.5)/1000:6.1f} ms  p99 {p(cold,.99)/1000:6.1f} ms  (n={len(cold)})"
          f"   bare start p50 {float(bare[fn][0])/1000:6.1f} ms  p99 {float(bare[fn][1])/1000:6.1f} ms")
rows = {}
for line in open(f"{work}/warm.txt"):
    name, rps, p50, p99, *_ = line.split(); rows[name] = (float(rps), float(p50), float(p99))
g, h, n = rows["gateway-node"], rows["bare-hyper"], rows["node-http"]
one, one_http = rows["one-cpu-node"], rows["one-cpu-node-http"]
ws0, wt0, ns0, nt0, ws1, wt1, ns1, nt1, hz = map(float, open(f"{work}/costs.txt").read().split())
calls = float(re.search(r"(\d+) requests in", open(f"{work}/wrk-gateway-node.txt").read()).group(1))
print("warm, one connection, sequential:")
print(f"  gateway -> node handler  p50 {g[1]:.0f} µs  p99 {g[2]:.0f} µs  ({g[0]:.0f} req/s)")
print(f"    per call: wisp {(ws1-ws0)/calls:.1f} context switches, {(wt1-wt0)/hz/calls*1e6:.0f} µs CPU;"
      f" node {(ns1-ns0)/calls:.1f} switches, {(nt1-nt0)/hz/calls*1e6:.0f} µs CPU")
print(f"  the same on one CPU      p50 {one[1]:.0f} µs  p99 {one[2]:.0f} µs  (no cross-CPU wake-ups;"
      f" node's http server there: p50 {one_http[1]:.0f} µs)")
print(f"  node http server         p50 {n[1]:.0f} µs  p99 {n[2]:.0f} µs  (the handler without wisp)")
print(f"  bare hyper (loopback)    p50 {h[1]:.0f} µs  p99 {h[2]:.0f} µs")
print(f"  direct handler call      p50 {direct:.1f} µs")
print(f"  overhead over the direct call: p50 {g[1]-direct:.0f} µs (target < 200 µs)")
print(f"  overhead over node's own http server: p50 {g[1]-n[1]:.0f} µs")
PY
