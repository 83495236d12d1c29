# Shared by the benchmark scripts: builds, a wisp server in a temp dir,
# signed calls to its API, and wrk runs. Source it; it needs `set -euo pipefail`.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WISP="$ROOT/target/release/wisp"
CACHE=${WISP_BENCH_CACHE:-$HOME/.cache/wisp-bench}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

build_wisp() {
    echo "== building wisp (release)" >&2
    cargo build --release --quiet -p wisp-cli --manifest-path "$ROOT/Cargo.toml"
}

build_hello() {
    rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
    echo "== building the hello component" >&2
    cargo build --release --quiet --target wasm32-wasip2 \
        --manifest-path "$ROOT/guests/Cargo.toml" -p hello
    HELLO="$ROOT/guests/target/wasm32-wasip2/release/hello.wasm"
}

need_wrk() {
    command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "nothing answers at $1" >&2
    return 1
}

# start_wisp DATA_DIR [serve flags...]: sets GATEWAY and API.
start_wisp() {
    local data=$1; shift
    rm -f "$data/endpoints.json"
    "$WISP" serve --http 127.0.0.1:0 --api 127.0.0.1:0 --data-dir "$data" "$@" >/dev/null 2>"$data.log" &
    WISP_PID=$!
    PIDS+=("$WISP_PID")
    for _ in $(seq 1 300); do [ -s "$data/endpoints.json" ] && break; sleep 0.05; done
    GATEWAY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateway"])' "$data/endpoints.json")
    API=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$data/endpoints.json")
}

stop_wisp() {
    kill "$WISP_PID" 2>/dev/null || true
    wait "$WISP_PID" 2>/dev/null || true
}

# cpu_ticks PID: the CPU time a process has used so far, user + system, in
# clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# wrk_run NAME URL CONNECTIONS DURATION [SERVER_PID]: prints "NAME rps p50
# p99" (latencies in µs) and, given the server's pid, "cpu=" the server's
# CPU time per request in µs: unlike req/s, it does not depend on how much
# of the machine the load generator leaves the server.
wrk_run() {
    local name=$1 url=$2 conns=$3 duration=$4 pid=${5:-}
    local before=0 after=0
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    wrk -t1 -c"$conns" -d"$duration" --latency "$url" > "$WORK/wrk-$name.txt"
    [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    python3 - "$name" "$WORK/wrk-$name.txt" "$((after - before))" "$(getconf CLK_TCK)" "$pid" <<'PY'
import re, sys
name, path, ticks, hz, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
text = open(path).read()
def us(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.search(r"[a-z]+", v).group()
    return n * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
# Anchored: a "+/- Stdev" column such as 72.99% must not match.
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
requests = int(re.search(r"(\d+) requests in", text).group(1))
extra = f" non2xx={errors.group(1)}" if errors else ""
if pid and requests:
    extra += f" cpu={ticks * 1e6 / hz / requests:.1f}"
print(f"{name} {rps:.0f} {p50:.0f} {p99:.0f}" + extra)
PY
}

# records FUNCTION...: prints each function's invocation records as JSON
# lines, read through the signed /wisp/v1 API (credentials from DATA_DIR).
records() {
    python3 - "$API" "$DATA" "$@" <<'PY'
import configparser, json, sys, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
api, data, names = sys.argv[1], sys.argv[2], sys.argv[3:]
c = configparser.ConfigParser(); c.read(f"{data}/credentials")
creds = Credentials(c["wisp"]["aws_access_key_id"], c["wisp"]["aws_secret_access_key"])
for name in names:
    url = f"{api}/wisp/v1/functions/{name}/invocations?limit=1000"
    req = AWSRequest(method="GET", url=url)
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(url, headers=dict(req.headers))) as r:
        for rec in json.load(r)["invocations"]:
            print(json.dumps(rec))
PY
}

# percentiles FIELD < json lines: "p50 p99 n" of a record field, in µs.
percentiles() {
    python3 -c '
import json, sys
field = sys.argv[1]
vals = sorted(sum((json.loads(l).get(f) or 0) for f in field.split("+")) for l in sys.stdin if l.strip())
if not vals: print("- - 0"); sys.exit()
pick = lambda q: vals[min(len(vals) - 1, int(q * len(vals)))]
print(pick(0.5), pick(0.99), len(vals))
' "$1"
}

creds() { # DATA -> "KEY SECRET", the server's API credentials
    python3 - "$1" <<'PY'
import configparser, sys
c = configparser.ConfigParser(); c.read(f"{sys.argv[1]}/credentials")
print(c["wisp"]["aws_access_key_id"], c["wisp"]["aws_secret_access_key"])
PY
}

# latency_report DATA FUNCTION WHAT: percentiles of the `LAT <ms> <i>`
# lines FUNCTION logged (i < 0: warm-up, left out).
latency_report() {
    "$WISP" logs "$2" --data-dir "$1" 2>/dev/null | python3 -c '
import re, sys
v = sorted(float(m.group(1)) for m in re.finditer(r"LAT ([\d.]+) (-?\d+)", sys.stdin.read()) if int(m.group(2)) >= 0)
if not v: sys.exit("no latencies logged")
at = lambda p: v[int((len(v) - 1) * p)]
print(f"  {len(v)} '"$3"': p50 {at(0.5):.2f} ms  p90 {at(0.9):.2f} ms  p99 {at(0.99):.2f} ms  max {v[-1]:.2f} ms")'
}
