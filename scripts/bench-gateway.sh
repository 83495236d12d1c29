#!/usr/bin/env bash
# Gateway throughput, side by side in one run on the same hello component:
#   wisp, a fresh instance per request (the default isolation)
#   wisp, instance_reuse = 1000 (opt-in, weaker isolation)
#   `wasmtime serve` 48.0.8 (a fresh instance per request), installed into
#   the bench cache by this script
#   a bare hyper server (the ceiling)
# with wrk (1 thread, CONNS connections, DURATION each), in ROUNDS rounds
# that take the four in turn: a VM's speed drifts by tens of percent over a
# minute, and a ratio of runs far apart in time measures the drift. Each
# round gives its own ratios; the summary is their median. Targets
# (DESIGN.md): wisp fresh >= 1.5x wasmtime serve; wisp reuse >= 50 % of
# bare hyper.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-32}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}

need_wrk
WASMTIME="$CACHE/wasmtime-48.0.8/bin/wasmtime"
if [ ! -x "$WASMTIME" ]; then
    echo "== installing wasmtime-cli 48.0.8 into $CACHE (once; it takes a while)" >&2
    # Only what `serve` needs: a full build takes over an hour on 2 cores.
    # Features left out (gc, winch, wasi-nn, ...) cannot slow `serve` down.
    cargo install --locked --quiet --root "$CACHE/wasmtime-48.0.8" wasmtime-cli --version 48.0.8 \
        --no-default-features \
        --features run,serve,cranelift,pooling-allocator,parallel-compilation,component-model,component-model-async
fi
build_wisp
cargo build --release --quiet -p wisp-server --example bare-hyper --manifest-path "$ROOT/Cargo.toml"
build_hello

APP="$WORK/app"
mkdir -p "$APP"
cp "$HELLO" "$APP/hello.wasm"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "bench"

[function.fresh]
runtime = "wasm"
component = "hello.wasm"

[function.reuse]
runtime = "wasm"
component = "hello.wasm"
instance_reuse = 1000

[[route]]
method = "GET"
path = "/fresh"
function = "fresh"

[[route]]
method = "GET"
path = "/reuse"
function = "reuse"
TOML
DATA="$WORK/data"
start_wisp "$DATA"
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1

SERVE_PORT=$(free_port)
# The component imports wasi:cli (stdio, environment), which `serve` links only with -S cli.
"$WASMTIME" serve -S cli=y --addr "127.0.0.1:$SERVE_PORT" "$HELLO" >/dev/null 2>&1 &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
HYPER_PORT=$(free_port)
"$ROOT/target/release/examples/bare-hyper" "127.0.0.1:$HYPER_PORT" >/dev/null &
HYPER_PID=$!
PIDS+=("$HYPER_PID")
wait_http "http://127.0.0.1:$SERVE_PORT/"
wait_http "http://127.0.0.1:$HYPER_PORT/"
wait_http "$GATEWAY/fresh"

echo "== wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds of the four in turn, on $(nproc) cores" >&2
# Warm everything up once, then measure each in turn.
for url in "$GATEWAY/fresh" "$GATEWAY/reuse" "http://127.0.0.1:$SERVE_PORT/" "http://127.0.0.1:$HYPER_PORT/"; do
    wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
done
for _ in $(seq 1 "$ROUNDS"); do
    wrk_run wisp-fresh "$GATEWAY/fresh" "$CONNS" "$DURATION" "$WISP_PID"
    wrk_run wisp-reuse "$GATEWAY/reuse" "$CONNS" "$DURATION" "$WISP_PID"
    wrk_run wasmtime-serve "http://127.0.0.1:$SERVE_PORT/" "$CONNS" "$DURATION" "$SERVE_PID"
    wrk_run bare-hyper "http://127.0.0.1:$HYPER_PORT/" "$CONNS" "$DURATION" "$HYPER_PID"
done > "$WORK/results.txt"

python3 - "$WORK/results.txt" "$ROUNDS" <<'PY'
import statistics, sys
rounds = []
for i, line in enumerate(open(sys.argv[1])):
    if i % 4 == 0:
        rounds.append({})
    name, rps, p50, p99, *extra = line.split()
    cpu = next((float(e[4:]) for e in extra if e.startswith("cpu=")), None)
    rounds[-1][name] = (float(rps), float(p50), float(p99), cpu)
median = statistics.median
names = list(rounds[0])
print(f"medians of {len(rounds)} rounds:")
print(f"{'server':<16}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}{'CPU µs/req':>12}")
for name in names:
    col = lambda k: median(r[name][k] for r in rounds)
    cpu = [r[name][3] for r in rounds if r[name][3] is not None]
    print(f"{name:<16}{col(0):>10.0f}{col(1):>10.0f}{col(2):>10.0f}{median(cpu) if cpu else 0:>12.1f}")
def ratios(num, den, cpu=False):
    k = 3 if cpu else 0
    # By CPU, fewer µs per request is better: the ratio is inverted.
    return [r[den][k] / r[num][k] if cpu else r[num][k] / r[den][k] for r in rounds]
def show(label, values, scale, unit, target):
    values = [v * scale for v in values]
    digits = 2 if scale == 1 else 0
    print(f"{label} = {median(values):.{digits}f}{unit} "
          f"(rounds {min(values):.{digits}f}..{max(values):.{digits}f}; target >= {target})")
show("wisp fresh / wasmtime serve", ratios("wisp-fresh", "wasmtime-serve"), 1, "x", "1.5x")
show("wisp reuse / bare hyper    ", ratios("wisp-reuse", "bare-hyper"), 100, " %", "50 %")
if all(r[n][3] for r in rounds for n in names):
    # Server CPU per request: the same comparison without the share of
    # the machine that wrk takes from each server.
    show("by CPU: fresh vs serve     ", ratios("wisp-fresh", "wasmtime-serve", True), 1, "x", "1.5x")
    show("by CPU: reuse vs bare hyper", ratios("wisp-reuse", "bare-hyper", True), 100, " %", "50 %")
PY
