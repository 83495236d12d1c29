#!/usr/bin/env python3
"""Drives a running wisp through boto3 and the AWS CLI and checks what
Lambda users moving functions over rely on beyond invoking them: response
streaming (InvokeWithResponseStream, and the gateway streaming to HTTP
clients), function URLs and layers.

Environment: WISP_API, WISP_GATEWAY, WISP_FIXTURES, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION. Prints `ok - <name>` /
`not ok - <name>` per check, then `N passed, M failed`; exits 0 only if
nothing failed.
"""
import base64
import http.client
import http.server
import json
import os
import threading
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.session
from botocore.config import Config

import checks
from checks import check, eq, expect, zipped

API = os.environ["WISP_API"]
GATEWAY = os.environ["WISP_GATEWAY"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ROLE = "arn:aws:iam::000000000000:role/x"
P = "par-" + uuid.uuid4().hex[:8]
STREAM, NODE = P + "-stream", P + "-node"

_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))


def signed(method, path, body=b""):
    """A request to wisp's own API, signed as the SDKs sign."""
    creds = botocore.session.get_session().get_credentials()
    req = botocore.awsrequest.AWSRequest(method=method, url=API + path, data=body,
                                         headers={"content-type": "application/json"})
    botocore.auth.SigV4Auth(creds, "lambda", REGION).add_auth(req)
    p = req.prepare()
    r = urllib.request.urlopen(urllib.request.Request(p.url, data=body, headers=dict(p.headers),
                                                      method=method))
    return json.loads(r.read() or b"{}")


class Gate:
    """An HTTP endpoint a function fetches between its first chunk and the
    rest: it answers `open` once the test lets it (after reading that
    chunk), or `shut` if it waited 30 s in vain. A function that says
    `gate:open` streamed its first chunk before it finished."""

    def __init__(self):
        self.opened = threading.Event()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                word = b"open" if gate.opened.wait(30) else b"shut"
                self.send_response(200)
                self.send_header("content-length", str(len(word)))
                self.end_headers()
                self.wfile.write(word)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gate"

    def close(self):
        self.server.shutdown()


def events(resp):
    """The events of an InvokeWithResponseStream answer, as (kind, value)."""
    for e in resp["EventStream"]:
        for kind, value in e.items():
            yield kind, value


def group_streaming():
    with check("a Node handler in awslambda.streamifyResponse is created", critical=True):
        lam.create_function(FunctionName=STREAM, Runtime="nodejs20.x", Handler="index.handler",
                            Role=ROLE, Code={"ZipFile": zipped("node-stream")}, Timeout=40)
        lam.create_function(FunctionName=NODE, Runtime="nodejs20.x", Handler="index.handler",
                            Role=ROLE, Code={"ZipFile": zipped("node-kit")})

    with check("InvokeWithResponseStream: the first chunk arrives while the function runs"):
        gate = Gate()
        try:
            resp = lam.invoke_with_response_stream(FunctionName=STREAM,
                                                   Payload=json.dumps({"gate": gate.url}))
            eq(resp["StatusCode"], 200, "status")
            eq(resp["ExecutedVersion"], "$LATEST", "executed version")
            eq(resp["ResponseStreamContentType"], "application/octet-stream", "content type")
            stream = events(resp)
            eq(next(stream), ("PayloadChunk", {"Payload": b"first;"}), "the first chunk")
            gate.opened.set()  # the function goes on only now
            rest = list(stream)
        finally:
            gate.close()
        chunks = b"".join(v["Payload"] for k, v in rest if k == "PayloadChunk")
        expect(chunks.startswith(b"gate:open;request:") and chunks.endswith(b";last"),
               "the rest after the gate opened", chunks)
        eq(rest[-1], ("InvokeComplete", {}), "the stream's end")

    with check("InvokeWithResponseStream: an error midway ends the stream with its type"):
        resp = lam.invoke_with_response_stream(FunctionName=STREAM, LogType="Tail",
                                               Payload=json.dumps({"fail": True}))
        got = list(events(resp))
        eq(got[0], ("PayloadChunk", {"Payload": b"first;"}), "what was written before")
        kind, done = got[-1]
        eq((kind, done.get("ErrorCode"), done.get("ErrorDetails")),
           ("InvokeComplete", "TypeError", "broke midway"), "the error")
        expect("broke midway" in base64.b64decode(done["LogResult"]).decode(),
               "the log tail with the error", done)

    with check("InvokeWithResponseStream: pipeline() into the stream, a content type set"):
        resp = lam.invoke_with_response_stream(
            FunctionName=STREAM, Payload=json.dumps({"pipe": True, "contentType": "text/csv"}))
        eq(resp["ResponseStreamContentType"], "text/csv", "content type")
        eq([v for k, v in events(resp)],
           [{"Payload": b"first;"}, {"Payload": b"piped;"}, {"Payload": b"more;"}, {}],
           "the chunks as written")

    with check("InvokeWithResponseStream of a function that does not stream: one chunk"):
        got = list(events(lam.invoke_with_response_stream(
            FunctionName=NODE, Payload=json.dumps({"action": "echo", "n": 1}))))
        eq(len(got), 2, "a chunk and the end")
        eq(json.loads(got[0][1]["Payload"])["event"], {"action": "echo", "n": 1}, "its result")
        got = list(events(lam.invoke_with_response_stream(
            FunctionName=NODE, Payload=json.dumps({"action": "throw"}))))
        expect(got[-1][1].get("ErrorCode"), "an error code on InvokeComplete", got)

    with check("Invoke of a streaming function buffers its stream"):
        resp = lam.invoke(FunctionName=STREAM, Payload=b"{}")
        body = resp["Payload"].read()
        expect(body.startswith(b"first;request:") and body.endswith(b";last"), "the whole", body)

    with check("InvokeWithResponseStream: DryRun, a bad invocation type"):
        eq(lam.invoke_with_response_stream(FunctionName=STREAM, InvocationType="DryRun")
           ["StatusCode"], 204, "DryRun")
        checks.raises("InvalidParameterValueException", 400, lam.invoke_with_response_stream,
                      exceptions=lam.exceptions, FunctionName=STREAM, InvocationType="Event")
        checks.raises("ResourceNotFoundException", 404, lam.invoke_with_response_stream,
                      exceptions=lam.exceptions, FunctionName=P + "-none")

    with check("the gateway streams a response to its HTTP client as it is written"):
        signed("PUT", f"/wisp/v1/apps/{P}/routes", json.dumps({"routes": [
            {"method": "GET", "path": f"/{P}/stream", "function": STREAM}]}).encode())
        gate = Gate()
        try:
            u = urllib.parse.urlparse(GATEWAY)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=40)
            conn.request("GET", f"/{P}/stream?gate={urllib.parse.quote(gate.url)}")
            r = conn.getresponse()
            eq(r.status, 201, "the prelude's status")
            eq((r.getheader("x-streamed"), r.getheader("set-cookie")), ("yes", "flavour=oat"),
               "the prelude's headers and cookies")
            eq(r.read1(6), b"first;", "the first chunk")
            gate.opened.set()
            rest = r.read()
        finally:
            gate.close()
        expect(rest.startswith(b"gate:open;") and rest.endswith(b";last"), "the rest", rest)


def cleanup():
    try:
        signed("PUT", f"/wisp/v1/apps/{P}/routes", json.dumps({"routes": []}).encode())
        for f in lam.list_functions()["Functions"]:
            if f["FunctionName"].startswith(P):
                lam.delete_function(FunctionName=f["FunctionName"])
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp at {API}, gateway {GATEWAY}, names {P}-*", flush=True)
    checks.run([group_streaming], cleanup)


if __name__ == "__main__":
    main()
