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


def url_request(url, method="GET", path="/", headers=None, body=None, sign=False, sent=None):
    """A request to a function URL: to the gateway's address with the URL's
    host (*.localhost resolves to loopback in browsers and curl, not in
    Python). Returns (status, headers, body)."""
    u = urllib.parse.urlparse(url)
    g = urllib.parse.urlparse(GATEWAY)
    headers = dict(headers or {})
    headers["host"] = u.netloc
    if sign:
        creds = botocore.session.get_session().get_credentials()
        req = botocore.awsrequest.AWSRequest(method=method, url=url.rstrip("/") + path,
                                             data=body or b"", headers=headers)
        botocore.auth.SigV4Auth(creds, "lambda", REGION).add_auth(req)
        headers = dict(req.prepare().headers)
    conn = http.client.HTTPConnection(g.hostname, g.port, timeout=40)
    conn.request(method, path, body=body if sent is None else sent, headers=headers)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def group_urls():
    state = {}
    with check("create_function_url_config: AuthType NONE, Lambda's shape", critical=True):
        r = lam.create_function_url_config(FunctionName=NODE, AuthType="NONE")
        eq(r["ResponseMetadata"]["HTTPStatusCode"], 201, "status")
        expect(re_match(r"^http://[a-z0-9]{32}\.lambda-url\.us-east-1\.localhost:\d+/$",
                        r["FunctionUrl"]), "a URL of its own", r["FunctionUrl"])
        eq((r["AuthType"], r["InvokeMode"]), ("NONE", "BUFFERED"), "defaults")
        expect(r["FunctionArn"].endswith(f":function:{NODE}"), "the function's ARN", r)
        state["url"] = r["FunctionUrl"]
        checks.raises("ResourceConflictException", 409, lam.create_function_url_config,
                      exceptions=lam.exceptions, FunctionName=NODE, AuthType="NONE")

    with check("the gateway serves the URL with payload format 2.0"):
        status, _, body = url_request(state["url"], path="/orders/7?action=echo&x=1",
                                      headers={"cookie": "a=1"})
        eq(status, 200, "status")
        event = json.loads(body)["event"]
        url_id = urllib.parse.urlparse(state["url"]).hostname.split(".")[0]
        eq((event["version"], event["routeKey"], event["rawPath"], event["rawQueryString"]),
           ("2.0", "$default", "/orders/7", "action=echo&x=1"), "the event")
        cx = event["requestContext"]
        eq((cx["apiId"], cx["domainPrefix"], cx["stage"], cx["http"]["method"]),
           (url_id, url_id, "$default", "GET"), "its request context")
        eq(event["cookies"], ["a=1"], "cookies")

    with check("get, list and the AWS CLI show the URL"):
        got = lam.get_function_url_config(FunctionName=NODE)
        eq((got["FunctionUrl"], got["AuthType"]), (state["url"], "NONE"), "get")
        expect(got["LastModifiedTime"], "a modification time", got)
        eq([c["FunctionUrl"] for c in lam.list_function_url_configs(FunctionName=NODE)
            ["FunctionUrlConfigs"]], [state["url"]], "list")
        out = checks.aws(API, "lambda", "list-function-url-configs", "--function-name", NODE)
        eq([c["FunctionUrl"] for c in out["FunctionUrlConfigs"]], [state["url"]], "aws cli")

    with check("AWS_IAM: unsigned requests are refused, SigV4-signed ones run"):
        lam.update_function_url_config(FunctionName=NODE, AuthType="AWS_IAM")
        status, _, body = url_request(state["url"], path="/?action=echo")
        eq((status, json.loads(body)), (403, {"Message": "Forbidden"}), "unsigned")
        status, _, body = url_request(state["url"], method="POST", path="/?action=echo",
                                      body=b'{"n": 1}', sign=True)
        eq(status, 200, f"signed ({body[:200]!r})")
        event = json.loads(body)["event"]
        expect(event["requestContext"]["authorizer"]["iam"]["accessKey"]
               == os.environ["AWS_ACCESS_KEY_ID"], "the signer in the event", event)
        eq(event["body"], '{"n": 1}', "the body")
        status, _, _ = url_request(state["url"], method="POST", path="/?action=echo",
                                   body=b'{"n": 1}', sign=True, sent=b'{"n": 2}')
        eq(status, 403, "a body changed after signing")

    with check("Cors: preflight answered by the URL, headers on responses"):
        lam.update_function_url_config(FunctionName=NODE, AuthType="NONE", Cors={
            "AllowOrigins": ["https://shop.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-basket"], "ExposeHeaders": ["x-wisp-request-id"],
            "MaxAge": 300})
        status, h, _ = url_request(state["url"], method="OPTIONS", headers={
            "origin": "https://shop.example", "access-control-request-method": "POST"})
        eq((status, h.get("access-control-allow-origin"), h.get("access-control-allow-methods"),
            h.get("access-control-allow-headers"), h.get("access-control-max-age")),
           (200, "https://shop.example", "GET,POST", "x-basket", "300"), "preflight")
        status, h, _ = url_request(state["url"], path="/?action=echo",
                                   headers={"origin": "https://shop.example"})
        eq((status, h.get("access-control-allow-origin"), h.get("access-control-expose-headers")),
           (200, "https://shop.example", "x-wisp-request-id"), "a response")
        _, h, _ = url_request(state["url"], path="/?action=echo",
                              headers={"origin": "https://evil.example"})
        eq(h.get("access-control-allow-origin"), None, "another origin")
        checks.raises("InvalidParameterValueException", 400, lam.update_function_url_config,
                      exceptions=lam.exceptions, FunctionName=NODE, Cors={"MaxAge": 90000})

    with check("a URL for an alias, none for a version"):
        v = lam.publish_version(FunctionName=NODE)["Version"]
        lam.create_alias(FunctionName=NODE, Name="live", FunctionVersion=v)
        r = lam.create_function_url_config(FunctionName=NODE, Qualifier="live", AuthType="NONE")
        expect(r["FunctionArn"].endswith(":live"), "the alias's ARN", r)
        status, _, body = url_request(r["FunctionUrl"], path="/?action=echo")
        eq((status, json.loads(body)["functionVersion"]), (200, v), "runs the alias's version")
        eq(len(lam.list_function_url_configs(FunctionName=NODE)["FunctionUrlConfigs"]), 2,
           "two URLs")
        checks.raises("InvalidParameterValueException", 400, lam.create_function_url_config,
                      exceptions=lam.exceptions, FunctionName=NODE, Qualifier=v, AuthType="NONE")

    with check("InvokeMode RESPONSE_STREAM streams, BUFFERED waits for the end"):
        r = lam.create_function_url_config(FunctionName=STREAM, AuthType="NONE",
                                           InvokeMode="RESPONSE_STREAM")
        gate = Gate()
        try:
            u = urllib.parse.urlparse(r["FunctionUrl"])
            g = urllib.parse.urlparse(GATEWAY)
            conn = http.client.HTTPConnection(g.hostname, g.port, timeout=40)
            conn.request("GET", f"/?gate={urllib.parse.quote(gate.url)}",
                         headers={"host": u.netloc})
            resp = conn.getresponse()
            eq((resp.status, resp.getheader("x-streamed")), (201, "yes"), "the prelude")
            eq(resp.read1(6), b"first;", "the first chunk, while the function waits")
            gate.opened.set()
            rest = resp.read()
        finally:
            gate.close()
        expect(rest.startswith(b"gate:open;"), "the rest", rest)
        lam.update_function_url_config(FunctionName=STREAM, InvokeMode="BUFFERED")
        status, h, body = url_request(r["FunctionUrl"])
        eq((status, h.get("content-length") is not None), (201, True), "whole, with a length")
        expect(body.startswith(b"first;request:"), "the body", body)

    with check("delete_function_url_config: the URL is gone"):
        status = lam.delete_function_url_config(FunctionName=NODE)
        eq(status["ResponseMetadata"]["HTTPStatusCode"], 204, "status")
        eq(url_request(state["url"], path="/?action=echo")[0], 403, "the gateway")
        checks.raises("ResourceNotFoundException", 404, lam.get_function_url_config,
                      exceptions=lam.exceptions, FunctionName=NODE)
        checks.raises("ResourceNotFoundException", 404, lam.delete_function_url_config,
                      exceptions=lam.exceptions, FunctionName=NODE)


def zip_files(files):
    """A zip of {path: text}; files under bin/ are executable."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in files.items():
            info = zipfile.ZipInfo(path)
            info.external_attr = (0o755 if path.startswith("bin/") else 0o644) << 16
            z.writestr(info, text)
    return buf.getvalue()


def group_layers():
    state = {}
    shared = P + "-shared"
    with check("publish_layer_version: versions count up, Lambda's shape", critical=True):
        v1 = lam.publish_layer_version(
            LayerName=shared, Description="first", CompatibleRuntimes=["nodejs20.x"],
            LicenseInfo="MIT", Content={"ZipFile": zip_files({
                "nodejs/node_modules/greeter/index.js":
                    "exports.greet = (n) => `hello ${n} from v1`;",
                "python/greeter.py": "def greet(n):\n    return f'hello {n} from v1'\n",
                "bin/layer-tool": "#!/bin/sh\necho tool v1\n"})})
        eq((v1["Version"], v1["Description"], v1["LicenseInfo"]), (1, "first", "MIT"), "v1")
        expect(v1["LayerVersionArn"] == v1["LayerArn"] + ":1", "its ARN", v1)
        expect(v1["Content"]["CodeSize"] > 0 and v1["Content"]["CodeSha256"], "its content", v1)
        v2 = lam.publish_layer_version(
            LayerName=shared, Description="second", CompatibleRuntimes=["python3.11"],
            Content={"ZipFile": zip_files({
                "nodejs/node_modules/greeter/index.js":
                    "exports.greet = (n) => `hello ${n} from v2`;"})})
        eq(v2["Version"], 2, "v2")
        extra = lam.publish_layer_version(LayerName=P + "-extra", Content={"ZipFile": zip_files({
            "nodejs/node_modules/extra/index.js": "exports.extra = true;"})})
        state.update(v1=v1, v2=v2, extra=extra)

    with check("get, get by ARN, list versions and layers, the AWS CLI"):
        got = lam.get_layer_version(LayerName=shared, VersionNumber=1)
        eq(got["Description"], "first", "get")
        eq(lam.get_layer_version_by_arn(Arn=state["v2"]["LayerVersionArn"])["Version"], 2,
           "by ARN")
        eq([v["Version"] for v in lam.list_layer_versions(LayerName=shared)["LayerVersions"]],
           [2, 1], "versions, newest first")
        eq([v["Version"] for v in lam.list_layer_versions(
            LayerName=shared, CompatibleRuntime="nodejs20.x")["LayerVersions"]], [1],
           "by runtime")
        mine = {l["LayerName"]: l["LatestMatchingVersion"]["Version"]
                for l in lam.list_layers()["Layers"] if l["LayerName"].startswith(P)}
        eq(mine, {shared: 2, P + "-extra": 1}, "layers and their latest versions")
        out = checks.aws(API, "lambda", "list-layer-versions", "--layer-name", shared)
        eq(len(out["LayerVersions"]), 2, "aws cli")

    with check("Layers on a Node function: its modules resolve, in order, later wins"):
        name = P + "-layered"
        code = zip_files({"index.js": """
const { execSync } = require('child_process');
exports.handler = async () => ({
  greeting: require('greeter').greet('ann'),
  extra: require('extra').extra,
  tool: (() => { try { return execSync('layer-tool').toString().trim(); } catch (e) { return null; } })(),
});"""})
        r = lam.create_function(FunctionName=name, Runtime="nodejs20.x", Handler="index.handler",
                                Role=ROLE, Code={"ZipFile": code},
                                Layers=[state["v1"]["LayerVersionArn"],
                                        state["extra"]["LayerVersionArn"]])
        eq([l["Arn"] for l in r["Layers"]],
           [state["v1"]["LayerVersionArn"], state["extra"]["LayerVersionArn"]], "shown in order")
        out = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
        eq(out, {"greeting": "hello ann from v1", "extra": True, "tool": "tool v1"},
           "modules and tools of the layers")
        lam.update_function_configuration(FunctionName=name, Layers=[
            state["extra"]["LayerVersionArn"], state["v2"]["LayerVersionArn"]])
        out = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
        eq((out.get("greeting"), out.get("tool")), ("hello ann from v2", None),
           "the new layers' modules, the old one's tool gone")

    with check("Layers on a Python function: /opt/python is on its path"):
        name = P + "-pylayered"
        code = zip_files({"app.py": "import greeter\n\ndef handler(e, c):\n"
                                    "    return greeter.greet('bo')\n"})
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                            Role=ROLE, Code={"ZipFile": code},
                            Layers=[state["v1"]["LayerVersionArn"]])
        eq(json.loads(lam.invoke(FunctionName=name)["Payload"].read()), "hello bo from v1",
           "the layer's module")

    with check("bad layers are refused: missing, six of them, two versions of one"):
        missing = state["v1"]["LayerArn"] + ":99"
        checks.raises("InvalidParameterValueException", 400, lam.update_function_configuration,
                      exceptions=lam.exceptions, FunctionName=P + "-layered", Layers=[missing])
        checks.raises("InvalidParameterValueException", 400, lam.update_function_configuration,
                      exceptions=lam.exceptions, FunctionName=P + "-layered",
                      Layers=[state["extra"]["LayerVersionArn"]] * 6)
        checks.raises("InvalidParameterValueException", 400, lam.update_function_configuration,
                      exceptions=lam.exceptions, FunctionName=P + "-layered",
                      Layers=[state["v1"]["LayerVersionArn"], state["v2"]["LayerVersionArn"]])
        checks.raises("InvalidParameterValueException", 400, lam.publish_layer_version,
                      exceptions=lam.exceptions, LayerName=P + "-bad",
                      Content={"ZipFile": b"not a zip"})

    with check("delete_layer_version: gone, its number never given again"):
        lam.delete_layer_version(LayerName=shared, VersionNumber=2)
        checks.raises("ResourceNotFoundException", 404, lam.get_layer_version,
                      exceptions=lam.exceptions, LayerName=shared, VersionNumber=2)
        again = lam.publish_layer_version(LayerName=shared, Content={"ZipFile": zip_files({
            "python/x.py": ""})})
        eq(again["Version"], 3, "the next number")
        # A function that used the deleted version keeps running it.
        out = json.loads(lam.invoke(FunctionName=P + "-layered")["Payload"].read())
        eq(out.get("greeting"), "hello ann from v2", "still served")
        for v in (1, 3):
            lam.delete_layer_version(LayerName=shared, VersionNumber=v)
        lam.delete_layer_version(LayerName=P + "-extra", VersionNumber=1)


def re_match(pattern, text):
    import re
    return re.match(pattern, text) is not None


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
    checks.run([group_streaming, group_urls, group_layers], cleanup)


if __name__ == "__main__":
    main()
