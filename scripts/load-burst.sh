#!/usr/bin/env bash
# The gateway's rate limit under a burst 10x the route's rate: clients send
# RATE*10 requests per second for SECONDS to a route with
# `rate_limit = { rate = RATE, burst = BURST }`. Downstream (the function's
# invocation records) must never see more than rate*t + burst in any window
# of t seconds; everything else gets 429 with Retry-After.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RATE=${RATE:-50}
BURST=${BURST:-100}
SECONDS_=${SECONDS_:-10}

build_wisp
build_hello
APP="$WORK/app"
mkdir -p "$APP"
cp "$HELLO" "$APP/hello.wasm"
cat > "$APP/wisp.toml" <<TOML
[app]
name = "burst"

[function.db]
runtime = "wasm"
component = "hello.wasm"

[[route]]
method = "GET"
path = "/db"
function = "db"
rate_limit = { rate = $RATE, burst = $BURST }
TOML
DATA="$WORK/data"
start_wisp "$DATA"
"$WISP" deploy "$APP" --data-dir "$DATA" >/dev/null 2>&1

python3 - "$GATEWAY" "$RATE" "$BURST" "$SECONDS_" <<'PY'
import http.client, sys, threading, time, urllib.parse
gateway, rate, burst, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
offered = rate * 10
threads = 16
host = urllib.parse.urlparse(gateway).netloc
ok, refused, other, retry_after = [], [0], [0], set()
lock = threading.Lock()
start = time.monotonic() + 0.2

def worker(k):
    conn = http.client.HTTPConnection(host, timeout=10)
    i = k
    while True:
        at = start + i / offered
        if at - start >= seconds:
            return
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        conn.request("GET", "/db")
        r = conn.getresponse(); r.read()
        now = time.monotonic() - start
        with lock:
            if r.status == 200: ok.append(now)
            elif r.status == 429:
                refused[0] += 1; retry_after.add(r.getheader("retry-after"))
            else: other[0] += 1
        i += threads

ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
sent = len(ok) + refused[0] + other[0]
ok.sort()
# The most successes in any window of w seconds, against rate*w + burst.
worst = 0.0
for w in (0.5, 1, 2, 5):
    j, most = 0, 0
    for i, t in enumerate(ok):
        while ok[j] < t - w: j += 1
        most = max(most, i - j + 1)
    worst = max(worst, most / (rate * w + burst))
    print(f"  window {w:>3}s: at most {most:5d} passed (allowed {rate * w + burst:.0f})")
print(f"  offered {offered}/s for {seconds}s: sent {sent}, passed {len(ok)}, 429 {refused[0]}, other {other[0]}")
print(f"  passed overall {len(ok)} <= rate*t+burst = {rate * seconds + burst}: {len(ok) <= rate * seconds + burst}")
print(f"  Retry-After values seen: {sorted(v for v in retry_after if v)}")
if worst > 1.0 or other[0]:
    sys.exit("the limit let through more than rate*t+burst, or errors occurred")
PY
echo "  function invocations recorded: $(records db | wc -l)"
