#!/usr/bin/env bash
# Gateway throughput, side by side in one run on the same hello component:
#   wisp, a fresh instance per request (the default isolation)
#   wisp, instance_reuse = 1000 (opt-in, weaker isolation)
#   `wasmtime serve` 48.0.8 (a fresh instance per request), installed into
#   the bench cache by this script
#   a bare hyper server (the ceiling)
# with wrk (1 thread, CONNS connections, DURATION each). Targets (DESIGN.md):
# wisp fresh >= 1.5x wasmtime serve; wisp reuse >= 50 % of bare hyper.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}

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

echo "== wrk -t1 -c$CONNS -d$DURATION on $(nproc) cores" >&2
# Warm everything up once, then measure each in turn.
for url in "$GATEWAY/fresh" "$GATEWAY/reuse" "http://127.0.0.1:$SERVE_PORT/" "http://127.0.0.1:$HYPER_PORT/"; do
    wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
done
{
    wrk_run wisp-fresh "$GATEWAY/fresh" "$CONNS" "$DURATION" "$WISP_PID"
    wrk_run wisp-reuse "$GATEWAY/reuse" "$CONNS" "$DURATION" "$WISP_PID"
    wrk_run wasmtime-serve "http://127.0.0.1:$SERVE_PORT/" "$CONNS" "$DURATION" "$SERVE_PID"
    wrk_run bare-hyper "http://127.0.0.1:$HYPER_PORT/" "$CONNS" "$DURATION" "$HYPER_PID"
} > "$WORK/results.txt"

python3 - "$WORK/results.txt" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, *extra = line.split()
    rows[name] = (float(rps), float(p50), float(p99), " ".join(extra))
print(f"{'server':<16}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}")
for name, (rps, p50, p99, extra) in rows.items():
    print(f"{name:<16}{rps:>10.0f}{p50:>10.0f}{p99:>10.0f}  {extra}")
fresh, reuse = rows["wisp-fresh"][0], rows["wisp-reuse"][0]
serve, hyper = rows["wasmtime-serve"][0], rows["bare-hyper"][0]
print(f"wisp fresh / wasmtime serve = {fresh / serve:.2f}x (target >= 1.5x)")
print(f"wisp reuse / bare hyper     = {100 * reuse / hyper:.0f} % (target >= 50 %)")
cpu = {name: float(extra.split("cpu=")[1].split()[0]) for name, (_, _, _, extra) in rows.items() if "cpu=" in extra}
if len(cpu) == 4:
    # Server CPU per request, the same comparison without the share of the
    # machine that wrk takes from each server.
    print(f"by CPU per request: fresh {cpu['wasmtime-serve'] / cpu['wisp-fresh']:.2f}x serve's, "
          f"reuse {100 * cpu['bare-hyper'] / cpu['wisp-reuse']:.0f} % of bare hyper's throughput per core")
PY
