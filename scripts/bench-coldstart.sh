#!/usr/bin/env bash
# Cold start of precompiled wasm components, server side: N functions are
# deployed (compiled once, cached on disk), the server restarts so nothing
# is in memory, then each gets its first request. From each record:
#   init     = load the compiled artifact + link (the cold part)
#   duration = instantiate + run the request
# Target (DESIGN.md): first request p99 (init + duration) < 1 ms.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${N:-200}

build_wisp
build_hello
APP="$WORK/app"
mkdir -p "$APP"
cp "$HELLO" "$APP/hello.wasm"
{
    printf '[app]\nname = "cold"\n'
    for i in $(seq 1 "$N"); do
        printf '\n[function.f%d]\nruntime = "wasm"\ncomponent = "hello.wasm"\n' "$i"
        printf '\n[[route]]\nmethod = "GET"\npath = "/f%d"\nfunction = "f%d"\n' "$i" "$i"
    done
} > "$APP/wisp.toml"
DATA="$WORK/data"
start_wisp "$DATA"
echo "== deploying $N functions" >&2
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1
stop_wisp

echo "== restarting; first request to each" >&2
start_wisp "$DATA"
wait_http "$GATEWAY/f1"   # f1 is now warm; it is left out below
for i in $(seq 2 "$N"); do
    curl -s -o /dev/null "$GATEWAY/f$i"
done
names=$(seq 2 "$N" | sed 's/^/f/')
records $names > "$WORK/records.jsonl"
python3 - "$WORK/records.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cold = [r for r in recs if r["cold"]]
def p(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]
for label, vals in [
    ("init (load + link)", [r["init_duration_us"] or 0 for r in cold]),
    ("instantiate + run", [r["duration_us"] for r in cold]),
    ("first request total", [(r["init_duration_us"] or 0) + r["duration_us"] for r in cold]),
]:
    print(f"{label:<22} p50 {p(vals, .5):>6} µs   p99 {p(vals, .99):>6} µs   (n={len(vals)})")
total = [(r["init_duration_us"] or 0) + r["duration_us"] for r in cold]
print(f"target: p99 < 1000 µs -> {'met' if p(total, .99) < 1000 else 'NOT met'}")
PY
