"""Signed Lambda API calls for the async load script (botocore's SigV4).

    async_client.py presign DATA API FUNCTION      -> a wrk Lua script on stdout
    async_client.py send DATA API FUNCTION FROM TO ACKED [--resend-keyed ACKED_BEFORE]
    async_client.py call DATA API METHOD PATH [BODY]
"""
import configparser
import http.client
import json
import sys
import threading
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def credentials(data):
    c = configparser.ConfigParser()
    c.read(f"{data}/credentials")
    return Credentials(c["wisp"]["aws_access_key_id"], c["wisp"]["aws_secret_access_key"])


def signed(creds, method, url, body=b"", headers=None):
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
    return dict(req.headers)


def presign(data, api, function):
    url = f"{api}/2015-03-31/functions/{function}/invocations"
    body = json.dumps({"id": "load"})
    headers = signed(credentials(data), "POST", url, body.encode(), {"X-Amz-Invocation-Type": "Event"})
    path = urllib.parse.urlparse(url).path
    lua = ["wrk.method = 'POST'", f"wrk.path = '{path}'", f"wrk.body = '{body}'"]
    for k, v in headers.items():
        lua.append(f"wrk.headers['{k}'] = '{v}'")
    # Only keyed runs generate each request (a Lua call per request costs
    # wrk a lot of CPU); plain runs replay one prepared request.
    lua.append("""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set('prefix', os.time() .. '-' .. threads .. '-')
end
if os.getenv('KEYED') == '1' then
  local n = 0
  request = function()
    n = n + 1
    local h = {}
    for k, v in pairs(wrk.headers) do h[k] = v end
    h['x-wisp-idempotency-key'] = prefix .. n
    return wrk.format(nil, nil, h)
  end
end
""")
    print("\n".join(lua))


def send(data, api, function, start, end, acked_path, only=None, threads=16):
    """Sends events start..end (or the ids in `only`) from `threads`
    threads; each 202 is appended to acked_path as "id replayed"."""
    creds = credentials(data)
    host = urllib.parse.urlparse(api).netloc
    path = f"/2015-03-31/functions/{function}/invocations"
    ids = list(only) if only is not None else list(range(start, end))
    lock = threading.Lock()
    out = open(acked_path, "a", buffering=1)

    def worker(chunk):
        conn = http.client.HTTPConnection(host, timeout=30)
        for i in chunk:
            body = json.dumps({"id": i}).encode()
            headers = {"X-Amz-Invocation-Type": "Event"}
            if i % 2 == 0:
                headers["x-wisp-idempotency-key"] = f"event-{i}"
            h = signed(creds, "POST", f"{api}{path}", body, headers)
            try:
                conn.request("POST", path, body=body, headers=h)
                r = conn.getresponse()
                r.read()
            except Exception:
                return  # the server is gone
            if r.status == 202:
                with lock:
                    out.write(f"{i} {1 if r.getheader('x-wisp-idempotent-replay') else 0}\n")

    chunks = [ids[k::threads] for k in range(threads)]
    ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def call(data, api, method, path, body=None):
    url = f"{api}{path}"
    payload = (body or "").encode()
    h = signed(credentials(data), method, url, payload)
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.netloc, timeout=30)
    conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=payload, headers=h)
    r = conn.getresponse()
    print(r.read().decode())
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status}")


if __name__ == "__main__":
    cmd, data, api = sys.argv[1], sys.argv[2], sys.argv[3]
    if cmd == "presign":
        presign(data, api, sys.argv[4])
    elif cmd == "send":
        start, end, acked = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
        only = None
        if len(sys.argv) > 8:
            only = [int(x) for x in open(sys.argv[8]).read().split()]
        send(data, api, sys.argv[4], start, end, acked, only)
    elif cmd == "call":
        call(data, api, sys.argv[4], sys.argv[5], sys.argv[6] if len(sys.argv) > 6 else None)
