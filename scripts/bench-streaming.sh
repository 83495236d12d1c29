#!/usr/bin/env bash
# Response streaming: time to first byte, side by side with Node's own http
# server doing the same work, in one run. Each handler writes a first
# chunk, works for WORK_MS, then writes the rest:
# 1. Node's http server (res.write, then res.end after WORK_MS): the floor.
# 2. A streaming Lambda handler (awslambda.streamifyResponse) behind a
#    function URL with InvokeMode RESPONSE_STREAM.
# 3. The same through InvokeWithResponseStream (boto3), first event.
# 4. A buffered handler (returns after WORK_MS) behind a BUFFERED URL: its
#    first byte comes only at the end.
# Reports p50 / p90 of time to first byte and of the whole response over
# CALLS sequential calls each (warm).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CALLS=${CALLS:-50}
WORK_MS=${WORK_MS:-200}
build_wisp

mkdir -p "$WORK/stream" "$WORK/buffered" "$WORK/node"
cat > "$WORK/stream/index.mjs" <<JS
export const handler = awslambda.streamifyResponse(async (event, stream) => {
  stream = awslambda.HttpResponseStream.from(stream, { statusCode: 200, headers: { 'content-type': 'text/plain' } });
  stream.write('first\n');
  await new Promise((r) => setTimeout(r, ${WORK_MS}));
  stream.end('rest\n');
});
JS
cat > "$WORK/buffered/index.mjs" <<JS
export const handler = async () => {
  await new Promise((r) => setTimeout(r, ${WORK_MS}));
  return { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'first\nrest\n' };
};
JS
NODE_PORT=$(free_port)
cat > "$WORK/node/server.js" <<JS
require('http').createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.write('first\n');
  setTimeout(() => res.end('rest\n'), ${WORK_MS});
}).listen(${NODE_PORT}, '127.0.0.1');
JS
node "$WORK/node/server.js" &
PIDS+=("$!")
start_wisp "$WORK/data"
read -r KEY SECRET < <(creds "$WORK/data")
wait_http "http://127.0.0.1:$NODE_PORT/"

# ttfb URL [HOST]: "ttfb total" in ms for CALLS calls, after 3 warm-ups.
ttfb() {
    local url=$1 host=${2:-}
    local args=(-s -o /dev/null -w '%{time_starttransfer} %{time_total}\n')
    [ -n "$host" ] && args+=(-H "host: $host")
    for _ in 1 2 3; do curl "${args[@]}" "$url" >/dev/null; done
    for _ in $(seq 1 "$CALLS"); do curl "${args[@]}" "$url"; done
}

report() { # NAME: reads "ttfb total" lines (seconds)
    python3 -c '
import sys
rows = [tuple(float(x) * 1000 for x in l.split()) for l in sys.stdin if l.strip()]
def at(v, p):
    v = sorted(v); return v[int((len(v) - 1) * p)]
first, whole = [r[0] for r in rows], [r[1] for r in rows]
print(f"  {sys.argv[1]:<40} first byte p50 {at(first,.5):7.2f} ms p90 {at(first,.9):7.2f} ms | whole p50 {at(whole,.5):7.2f} ms")' "$1"
}

URLS=$(AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 \
    python3 - "$API" "$WORK" <<'PY'
import io, os, sys, zipfile, boto3
lam = boto3.client("lambda", endpoint_url=sys.argv[1])
def zipped(d):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.write(os.path.join(sys.argv[2], d, "index.mjs"), "index.mjs")
    return b.getvalue()
for name, mode in (("stream", "RESPONSE_STREAM"), ("buffered", "BUFFERED")):
    lam.create_function(FunctionName=name, Runtime="nodejs20.x", Handler="index.handler",
                        Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": zipped(name)})
    print(lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)["FunctionUrl"])
PY
)
STREAM_URL=$(echo "$URLS" | sed -n 1p)
BUFFERED_URL=$(echo "$URLS" | sed -n 2p)
host_of() { echo "$1" | sed -E 's#^http://([^/]+)/.*#\1#'; }

echo "== time to first byte, ${WORK_MS} ms of work between the first chunk and the rest, $CALLS calls each"
ttfb "http://127.0.0.1:$NODE_PORT/" | report "node http server (res.write)"
ttfb "$GATEWAY/" "$(host_of "$STREAM_URL")" | report "wisp function URL, RESPONSE_STREAM"
ttfb "$GATEWAY/" "$(host_of "$BUFFERED_URL")" | report "wisp function URL, BUFFERED handler"
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 \
    python3 - "$API" "$CALLS" <<'PY' | report "wisp InvokeWithResponseStream (boto3)"
import sys, time, boto3
lam = boto3.client("lambda", endpoint_url=sys.argv[1])
for i in range(3 + int(sys.argv[2])):
    t = time.perf_counter()
    events = lam.invoke_with_response_stream(FunctionName="stream", Payload=b"{}")["EventStream"]
    first = None
    for e in events:
        if first is None and "PayloadChunk" in e:
            first = time.perf_counter() - t
    if i >= 3:
        print(first, time.perf_counter() - t)
PY
