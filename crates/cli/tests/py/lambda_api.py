#!/usr/bin/env python3
"""Drives a running wisp through boto3 and the AWS CLI and checks that the
Lambda API (`/2015-03-31/...`) parses and behaves the way AWS Lambda does.

Environment: WISP_API, WISP_FIXTURES, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION. Prints `ok - <name>` / `not ok - <name>` per check, then
`N passed, M failed`; exits 0 only if nothing failed.
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import checks
from checks import Abort, check, eq, expect, status  # noqa: F401

API = os.environ["WISP_API"]
FIXTURES = os.environ["WISP_FIXTURES"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ROLE = "arn:aws:iam::000000000000:role/x"
PREFIX = "py-" + uuid.uuid4().hex[:8]
NODE, PY, DEST = PREFIX + "-node", PREFIX + "-py", PREFIX + "-dest"

# No retries: a throttle or a 5xx must reach the check, not be retried away.
_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=120)
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))
# botocore enforces model minimums (MemorySize >= 128) client-side; this
# client lets out-of-range values reach the server so its answer is checked.
raw = boto3.client("lambda", endpoint_url=API, region_name=REGION,
                   config=Config(parameter_validation=False, **_config))

state = {}  # what earlier groups learned (ARNs, versions)


def raises(code, http_status, fn, /, **kwargs):
    return checks.raises(code, http_status, fn, exceptions=lam.exceptions, **kwargs)


def zip_dir(path, replace=None):
    """Zips a fixture directory; `replace` maps file names to new contents."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(path):
            for f in sorted(files):
                full = os.path.join(root, f)
                rel = os.path.relpath(full, path)
                data = open(full, "rb").read()
                if replace and rel in replace:
                    data = replace[rel]
                z.writestr(rel, data)
    return buf.getvalue()


def sha_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def invoke(fn=NODE, payload=None, **kwargs):
    """Invokes and returns (response, decoded JSON payload or None)."""
    resp = lam.invoke(FunctionName=fn, Payload=json.dumps(payload or {"action": "echo"}), **kwargs)
    body = resp["Payload"].read()
    return resp, (json.loads(body) if body else None)


NODE_V1 = zip_dir(os.path.join(FIXTURES, "node-kit"))
_src = open(os.path.join(FIXTURES, "node-kit", "index.js"), "rb").read()
# Same behaviour, plus `codeRevision: 2` on object results, to see new code run.
NODE_V2 = zip_dir(os.path.join(FIXTURES, "node-kit"), {"index.js": _src + b"""
const __v1 = exports.handler;
exports.handler = async (event, context) => {
  const r = await __v1(event, context);
  if (r && typeof r === 'object') r.codeRevision = 2;
  return r;
};
"""})
PY_ZIP = zip_dir(os.path.join(FIXTURES, "python-kit"))
ARN_RE = r"^arn:aws:lambda:%s:\d{12}:function:%s$"


def create(name, runtime, handler, code, **kwargs):
    return lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                               Role=ROLE, Code={"ZipFile": code}, **kwargs)


def group_create():
    with check("create_function nodejs20.x returns 201 and the configuration", critical=True):
        r = create(NODE, "nodejs20.x", "index.handler", NODE_V1)
        eq(status(r), 201, "HTTP status")
        for k, v in {"FunctionName": NODE, "Runtime": "nodejs20.x", "Handler": "index.handler",
                     "Role": ROLE, "Version": "$LATEST", "CodeSha256": sha_b64(NODE_V1),
                     "CodeSize": len(NODE_V1), "MemorySize": 128, "Timeout": 3}.items():
            eq(r.get(k), v, k)
        expect(re.match(ARN_RE % (REGION, NODE), r["FunctionArn"]), "a function ARN", r["FunctionArn"])
        state["node_arn"] = r["FunctionArn"]
    with check("create_function python3.11 with Publish=True returns version 1", critical=True):
        r = create(PY, "python3.11", "app.handler", PY_ZIP, Publish=True)
        eq(r["Version"], "1", "Version")
        eq(r["FunctionArn"], state["node_arn"].replace(NODE, PY) + ":1", "FunctionArn")
    with check("create_function of a destination function", critical=True):
        state["dest_arn"] = create(DEST, "nodejs20.x", "index.handler", NODE_V1)["FunctionArn"]
    with check("create_function with a 3 MB zip"):
        buf = io.BytesIO(NODE_V1)
        with zipfile.ZipFile(buf, "a") as z:  # node-kit plus 3 MB of incompressible data
            z.writestr("blob.bin", os.urandom(3 * 1024 * 1024))
        big = buf.getvalue()
        r = create(PREFIX + "-big", "nodejs20.x", "index.handler", big)
        eq((r["CodeSize"], r["CodeSha256"]), (len(big), sha_b64(big)), "(CodeSize, CodeSha256)")
    with check("create_function twice raises ResourceConflictException (409)"):
        raises("ResourceConflictException", 409, create, name=NODE, runtime="nodejs20.x",
               handler="index.handler", code=NODE_V1)
    with check("create_function MemorySize=5 raises InvalidParameterValueException (400)"):
        raises("InvalidParameterValueException", 400, raw.create_function,
               FunctionName=PREFIX + "-tiny", Runtime="nodejs20.x", Handler="index.handler",
               Role=ROLE, Code={"ZipFile": NODE_V1}, MemorySize=5)


def group_get():
    with check("get_function returns Configuration and Code", critical=True):
        r = lam.get_function(FunctionName=NODE)
        c = r["Configuration"]
        for k, v in {"FunctionName": NODE, "FunctionArn": state["node_arn"], "Runtime": "nodejs20.x",
                     "Handler": "index.handler", "MemorySize": 128, "Timeout": 3,
                     "CodeSha256": sha_b64(NODE_V1), "Version": "$LATEST", "State": "Active"}.items():
            eq(c.get(k), v, "Configuration." + k)
        datetime.strptime(c["LastModified"], "%Y-%m-%dT%H:%M:%S.%f%z")
        expect(r.get("Code", {}).get("Location"), "Code.Location", r.get("Code"))
    with check("responses carry x-amzn-RequestId (ResponseMetadata.RequestId)"):
        expect(r["ResponseMetadata"].get("RequestId"), "a RequestId on GetFunction",
               r["ResponseMetadata"])
        e = raises("ResourceNotFoundException", 404, lam.get_function, FunctionName=PREFIX + "-x")
        expect(e.response["ResponseMetadata"].get("RequestId"), "a RequestId on an error",
               e.response["ResponseMetadata"])
    with check("get_function_configuration matches get_function"):
        c2 = lam.get_function_configuration(FunctionName=NODE)
        for k in ("FunctionName", "FunctionArn", "CodeSha256", "MemorySize", "RevisionId"):
            eq(c2.get(k), c[k], k)
    with check("get_function of a missing function raises ResourceNotFoundException (404)"):
        raises("ResourceNotFoundException", 404, lam.get_function, FunctionName=PREFIX + "-missing")
    with check("list_functions (paginated) lists the new functions"):
        names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate()
                 for f in page["Functions"]]
        expect({NODE, PY, DEST} <= set(names), f"{NODE}, {PY}, {DEST} listed", names)


def group_invoke():
    with check("invoke RequestResponse round-trips the payload and context"):
        event = {"action": "echo", "n": [1, 2.5, "três", None, {"k": True}]}
        r, p = invoke(payload=event)
        eq(r["StatusCode"], 200, "StatusCode")
        eq(r.get("ExecutedVersion"), "$LATEST", "ExecutedVersion")
        expect("FunctionError" not in r, "no FunctionError", r.get("FunctionError"))
        eq(p["event"], event, "event")
        eq(p["functionName"], NODE, "functionName")
        eq(p["functionVersion"], "$LATEST", "functionVersion")
        eq(str(p["memoryLimitInMB"]), "128", "memoryLimitInMB")
        eq(p["invokedFunctionArn"], state["node_arn"], "invokedFunctionArn")
        eq(p["region"], REGION, "region (AWS_REGION)")
        eq(p["handler"], "index.handler", "handler (_HANDLER)")
        eq(p["requestId"], r["ResponseMetadata"]["RequestId"], "requestId (x-amzn-RequestId)")
        expect(0 < p["remaining"] <= 3000, "0 < remaining <= 3000", p["remaining"])
    with check("invoke python3.11 round-trips the payload"):
        r, p = invoke(PY, {"action": "echo", "x": 1})
        eq(p["event"], {"action": "echo", "x": 1}, "event")
        eq(p["functionName"], PY, "functionName")
        eq(p["requestId"], r["ResponseMetadata"]["RequestId"], "requestId")
    with check("python results as awslambdaric marshals them: bytes, Decimal digits, non-ASCII"):
        body = lam.invoke(FunctionName=PY, Payload=json.dumps({"action": "bytes"}))["Payload"].read()
        eq(body, b"\x00raw\xff", "the bytes, not Runtime.MarshalError")
        body = lam.invoke(FunctionName=PY, Payload=json.dumps({"action": "unicode"}))["Payload"].read()
        eq(body, b'{"greeting": "h\\u00e9llo w\\u00f6rld \\u2713"}', "escaped on python3.11")
        body = lam.invoke(FunctionName=PY, Payload=json.dumps({"action": "decimal"}))["Payload"].read()
        eq(body, b'{"price": 1.10, "n": 3}', "a Decimal as its digits")
        for runtime in ("python3.12", "python3.11"):
            lam.update_function_configuration(FunctionName=PY, Runtime=runtime)
            lam.get_waiter("function_updated_v2").wait(
                FunctionName=PY, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            if runtime == "python3.12":
                body = lam.invoke(FunctionName=PY, Payload=json.dumps({"action": "unicode"}))["Payload"].read()
                eq(body, '{"greeting": "héllo wörld ✓"}'.encode(), "as they are on python3.12")
    with check("invoke InvocationType=Event returns 202"):
        r, p = invoke(InvocationType="Event")
        eq(r["StatusCode"], 202, "StatusCode")
        eq(p, None, "empty payload")
    with check("invoke InvocationType=DryRun returns 204"):
        r, _ = invoke(InvocationType="DryRun")
        eq(r["StatusCode"], 204, "StatusCode")
    with check("invoke LogType=Tail returns START, the function's output and REPORT"):
        r, p = invoke(payload={"action": "log", "n": 1}, LogType="Tail")
        eq(p, "logged", "payload")
        log = base64.b64decode(r.get("LogResult", "")).decode()
        for s in ("START RequestId", "hello from node 1", "REPORT RequestId"):
            expect(s in log, f"{s!r} in the log tail", log)
    with check("invoke of a throwing handler reports FunctionError=Unhandled"):
        r, p = invoke(payload={"action": "throw", "what": "x"})
        eq(r["StatusCode"], 200, "StatusCode")
        eq(r.get("FunctionError"), "Unhandled", "FunctionError")
        eq(p.get("errorType"), "TypeError", "errorType")
        eq(p.get("errorMessage"), "bad input: x", "errorMessage")
    with check("invoke of a raising python handler reports ValueError"):
        r, p = invoke(PY, {"action": "throw", "what": "y"})
        eq(r.get("FunctionError"), "Unhandled", "FunctionError")
        eq(p.get("errorType"), "ValueError", "errorType")
    with check("invoke with a 5 MB payload succeeds (the limit is 6 MB)"):
        r, p = invoke(payload={"action": "echo", "pad": "x" * (5 * 1024 * 1024)})
        eq(r["StatusCode"], 200, "StatusCode")
        eq(len(p["event"]["pad"]), 5 * 1024 * 1024, "length of the echoed pad")
    with check("invoke with a 7 MB payload raises RequestEntityTooLargeException (413)"):
        # Not in botocore's model (it has RequestTooLargeException), but it
        # is what Lambda answers: "Request must be smaller than 6291456 bytes".
        raises("RequestEntityTooLargeException", 413, invoke,
               payload={"action": "echo", "pad": "x" * (7 * 1024 * 1024)})
    with check("invoke with a payload that is not JSON raises InvalidRequestContentException (400)"):
        # The caller's fault, as on Lambda: the function is never run, or blamed.
        raises("InvalidRequestContentException", 400, lam.invoke,
               FunctionName=NODE, Payload=b"\xff not json")
    with check("invoke with no payload gives a Lambda function {}"):
        r = lam.invoke(FunctionName=NODE)
        eq(r.get("FunctionError"), None, "FunctionError")
        eq(json.loads(r["Payload"].read())["event"], {}, "event")
    with check("invoke of a missing function raises ResourceNotFoundException (404)"):
        raises("ResourceNotFoundException", 404, invoke, fn=PREFIX + "-missing")


def group_update_config():
    with check("update_function_configuration sets MemorySize, Timeout, Environment", critical=True):
        r = lam.update_function_configuration(FunctionName=NODE, MemorySize=256, Timeout=10,
                                              Environment={"Variables": {"STAGE": "beta"}})
        eq(r["MemorySize"], 256, "MemorySize")
        eq(r["Timeout"], 10, "Timeout")
        eq(r.get("Environment", {}).get("Variables"), {"STAGE": "beta"}, "Environment.Variables")
    with check("waiter function_updated_v2 completes"):
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=NODE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    with check("the new configuration reaches the function (STAGE, memory)"):
        _, p = invoke()
        eq(p["stage"], "beta", "stage")
        eq(str(p["memoryLimitInMB"]), "256", "memoryLimitInMB")
        expect(3000 < p["remaining"] <= 10000, "3000 < remaining <= 10000", p["remaining"])
    with check("the environment Lambda sets; TZ is the function's, reserved keys are refused"):
        e = raises("InvalidParameterValueException", 400, lam.update_function_configuration,
                   FunctionName=NODE, Environment={"Variables": {"AWS_REGION": "x", "STAGE": "beta"}})
        expect("Reserved keys used in this request: AWS_REGION" in str(e), "AWS's message", str(e))
        lam.update_function_configuration(FunctionName=NODE,
                                          Environment={"Variables": {"STAGE": "beta", "TZ": "Europe/Berlin"}})
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=NODE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        _, env = invoke(payload={"action": "env"})
        eq((env["TZ"], env["STAGE"], env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            env["AWS_LAMBDA_LOG_GROUP_NAME"], env["AWS_EXECUTION_ENV"], env["AWS_LAMBDA_INITIALIZATION_TYPE"],
            env["_HANDLER"], env["LANG"]),
           ("Europe/Berlin", "beta", NODE, "256", f"/aws/lambda/{NODE}", "AWS_Lambda_nodejs20.x",
            "on-demand", "index.handler", "en_US.UTF-8"), "the variables")
        expect(re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"] or ""),
               "AWS_LAMBDA_LOG_STREAM_NAME as Lambda names streams", env["AWS_LAMBDA_LOG_STREAM_NAME"])
        expect((env["_X_AMZN_TRACE_ID"] or "").startswith("Root=1-"), "_X_AMZN_TRACE_ID per invocation",
               env["_X_AMZN_TRACE_ID"])
        lam.update_function_configuration(FunctionName=NODE, Environment={"Variables": {"STAGE": "beta"}})
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=NODE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    with check("LoggingConfig JSON: console and logging write JSON records, below the level dropped"):
        e = raises("InvalidParameterValueException", 400, lam.update_function_configuration,
                   FunctionName=NODE, LoggingConfig={"LogFormat": "Text", "ApplicationLogLevel": "WARN"})
        expect("only allowed when LogFormat is JSON" in str(e), "AWS's rule", str(e))
        r = lam.update_function_configuration(
            FunctionName=NODE, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
        eq((r["LoggingConfig"]["LogFormat"], r["LoggingConfig"]["ApplicationLogLevel"],
            r["LoggingConfig"]["LogGroup"]), ("JSON", "WARN", f"/aws/lambda/{NODE}"), "LoggingConfig")
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=NODE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        r, _ = invoke(payload={"action": "log", "n": 7}, LogType="Tail")
        log = base64.b64decode(r.get("LogResult", "")).decode()
        lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
        eq([x["type"] for x in lines if "type" in x], ["platform.start", "platform.report"],
           "START and REPORT as Lambda's JSON platform records")
        records = [x for x in lines if "type" not in x]
        eq([(x["level"], x["message"]) for x in records], [("ERROR", "to stderr")],
           "console.error as a JSON record; console.log (INFO) below WARN dropped")
        expect(records and records[0]["requestId"] == r["ResponseMetadata"]["RequestId"], "its request id", records)
        r = lam.update_function_configuration(FunctionName=PY, LoggingConfig={"LogFormat": "JSON"})
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=PY, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        r, _ = invoke(PY, {"action": "log", "n": 2}, LogType="Tail")
        log = base64.b64decode(r.get("LogResult", "")).decode()
        records = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
        records = [x for x in records if "type" not in x]
        eq([(x["level"], x["message"], x["logger"]) for x in records], [("INFO", "logged via logging", "root")],
           "python logging as JSON records")
        for fn in (NODE, PY):
            lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogFormat": "Text"})
            lam.get_waiter("function_updated_v2").wait(
                FunctionName=fn, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def group_versions():
    with check("publish_version returns 201 and version 1", critical=True):
        r = lam.publish_version(FunctionName=NODE, Description="first")
        eq(status(r), 201, "HTTP status")
        eq(r["Version"], "1", "Version")
        eq(r["FunctionArn"], state["node_arn"] + ":1", "FunctionArn")
    with check("update_function_code stores the new zip", critical=True):
        r = lam.update_function_code(FunctionName=NODE, ZipFile=NODE_V2)
        eq(r["CodeSha256"], sha_b64(NODE_V2), "CodeSha256")
        eq(r["CodeSize"], len(NODE_V2), "CodeSize")
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=NODE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    with check("the new code runs on $LATEST"):
        _, p = invoke()
        eq(p.get("codeRevision"), 2, "codeRevision")
    with check("publish_version returns version 2; again without changes returns 2", critical=True):
        eq(lam.publish_version(FunctionName=NODE)["Version"], "2", "Version")
        eq(lam.publish_version(FunctionName=NODE)["Version"], "2", "Version (unchanged)")
    with check("list_versions_by_function lists $LATEST, 1 and 2"):
        vs = lam.list_versions_by_function(FunctionName=NODE)["Versions"]
        eq([v["Version"] for v in vs], ["$LATEST", "1", "2"], "versions")
        eq(vs[1]["CodeSha256"], sha_b64(NODE_V1), "version 1 CodeSha256")
        eq(vs[1].get("Description"), "first", "version 1 Description")
    with check("list_functions FunctionVersion=ALL includes published versions"):
        fs = lam.list_functions(FunctionVersion="ALL")["Functions"]
        got = sorted(f["Version"] for f in fs if f["FunctionName"] == NODE)
        eq(got, ["$LATEST", "1", "2"], f"versions of {NODE} listed")
    with check("invoke Qualifier=1 runs version 1's code and configuration"):
        r, p = invoke(Qualifier="1")
        eq(r.get("ExecutedVersion"), "1", "ExecutedVersion")
        eq(p["functionVersion"], "1", "functionVersion")
        eq(p["invokedFunctionArn"], state["node_arn"] + ":1", "invokedFunctionArn")
        eq(p.get("codeRevision"), None, "codeRevision")
        eq(p["stage"], "beta", "stage")
    with check("invoke FunctionName=<arn>:2 runs version 2"):
        r, p = invoke(state["node_arn"] + ":2")
        eq(r.get("ExecutedVersion"), "2", "ExecutedVersion")
        eq(p.get("codeRevision"), 2, "codeRevision")


def group_aliases():
    with check("create_alias returns 201 and the alias", critical=True):
        r = lam.create_alias(FunctionName=NODE, Name="live", FunctionVersion="1", Description="d")
        eq(status(r), 201, "HTTP status")
        eq(r["AliasArn"], state["node_arn"] + ":live", "AliasArn")
        eq((r["Name"], r["FunctionVersion"]), ("live", "1"), "(Name, FunctionVersion)")
    with check("get_alias and list_aliases show it"):
        eq(lam.get_alias(FunctionName=NODE, Name="live")["FunctionVersion"], "1", "FunctionVersion")
        eq([a["Name"] for a in lam.list_aliases(FunctionName=NODE)["Aliases"]], ["live"], "aliases")
    with check("invoke Qualifier=live runs version 1"):
        r, p = invoke(Qualifier="live")
        eq(r.get("ExecutedVersion"), "1", "ExecutedVersion")
        eq(p["functionVersion"], "1", "functionVersion")
    with check("context.invokedFunctionArn is the alias ARN when invoked through the alias"):
        _, p = invoke(Qualifier="live")
        eq(p["invokedFunctionArn"], state["node_arn"] + ":live", "invokedFunctionArn")
    with check("update_alias sets RoutingConfig weights", critical=True):
        r = lam.update_alias(FunctionName=NODE, Name="live",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
        eq(r.get("RoutingConfig"), {"AdditionalVersionWeights": {"2": 0.5}}, "RoutingConfig")
        eq(lam.get_alias(FunctionName=NODE, Name="live").get("RoutingConfig"),
           {"AdditionalVersionWeights": {"2": 0.5}}, "get_alias RoutingConfig")
    with check("invoking the weighted alias 40 times runs both versions"):
        seen = {}
        for _ in range(40):
            r, p = invoke(Qualifier="live")
            v = r.get("ExecutedVersion")
            seen[v] = seen.get(v, 0) + 1
            eq(p.get("codeRevision"), 2 if v == "2" else None, f"codeRevision of version {v}")
        eq(set(seen), {"1", "2"}, f"ExecutedVersion values (counts {seen})")
    with check("delete_alias removes it"):
        eq(status(lam.delete_alias(FunctionName=NODE, Name="live")), 204, "HTTP status")
        raises("ResourceNotFoundException", 404, lam.get_alias, FunctionName=NODE, Name="live")


def group_concurrency():
    with check("put_function_concurrency / get_function_concurrency (0)", critical=True):
        r = lam.put_function_concurrency(FunctionName=NODE, ReservedConcurrentExecutions=0)
        eq(r.get("ReservedConcurrentExecutions"), 0, "put ReservedConcurrentExecutions")
        r = lam.get_function_concurrency(FunctionName=NODE)
        eq(r.get("ReservedConcurrentExecutions"), 0, "get ReservedConcurrentExecutions")
        eq(lam.get_function(FunctionName=NODE).get("Concurrency"),
           {"ReservedConcurrentExecutions": 0}, "get_function Concurrency")
    with check("invoke with ReservedConcurrentExecutions=0 raises TooManyRequestsException (429)"):
        e = raises("TooManyRequestsException", 429, invoke)
        eq(e.response.get("Reason"), "ReservedFunctionConcurrentInvocationLimitExceeded", "Reason")
    with check("delete_function_concurrency lifts the limit"):
        eq(status(lam.delete_function_concurrency(FunctionName=NODE)), 204, "HTTP status")
        r = lam.get_function_concurrency(FunctionName=NODE)
        expect("ReservedConcurrentExecutions" not in r, "no ReservedConcurrentExecutions", r)
        eq(invoke()[0]["StatusCode"], 200, "invoke StatusCode")


def group_provisioned():
    with check("put_provisioned_concurrency_config on version 1 is accepted", critical=True):
        r = lam.put_provisioned_concurrency_config(FunctionName=NODE, Qualifier="1",
                                                   ProvisionedConcurrentExecutions=1)
        eq(status(r), 202, "HTTP status")
        expect(r.get("Status") in ("IN_PROGRESS", "READY"), "Status IN_PROGRESS or READY", r)
        eq(r.get("RequestedProvisionedConcurrentExecutions"), 1, "Requested")
    with check("get_provisioned_concurrency_config reaches READY within 30 s"):
        deadline = time.time() + 30
        while True:
            r = lam.get_provisioned_concurrency_config(FunctionName=NODE, Qualifier="1")
            if r.get("Status") == "READY" or time.time() > deadline:
                break
            time.sleep(0.5)
        eq(r.get("Status"), "READY", "Status")
        eq(r.get("AvailableProvisionedConcurrentExecutions"), 1, "Available")
        eq(r.get("AllocatedProvisionedConcurrentExecutions"), 1, "Allocated")
    with check("list_provisioned_concurrency_configs lists version 1"):
        cs = lam.list_provisioned_concurrency_configs(FunctionName=NODE)["ProvisionedConcurrencyConfigs"]
        eq([c["FunctionArn"] for c in cs], [state["node_arn"] + ":1"], "FunctionArns")
    with check("delete_provisioned_concurrency_config removes it"):
        r = lam.delete_provisioned_concurrency_config(FunctionName=NODE, Qualifier="1")
        eq(status(r), 204, "HTTP status")
        raises("ProvisionedConcurrencyConfigNotFoundException", 404,
               lam.get_provisioned_concurrency_config, FunctionName=NODE, Qualifier="1")
    with check("put_provisioned_concurrency_config on $LATEST raises InvalidParameterValueException"):
        raises("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
               FunctionName=NODE, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)


def group_event_invoke():
    dest = {"OnFailure": {"Destination": state["dest_arn"]}}

    def same(r, retries):
        eq(r.get("FunctionArn"), state["node_arn"] + ":$LATEST", "FunctionArn")
        eq(r.get("MaximumRetryAttempts"), retries, "MaximumRetryAttempts")
        eq(r.get("MaximumEventAgeInSeconds"), 300, "MaximumEventAgeInSeconds")
        eq(r.get("DestinationConfig", {}).get("OnFailure"), dest["OnFailure"], "OnFailure")
        expect(isinstance(r.get("LastModified"), datetime), "LastModified as a timestamp", r)
    with check("put_function_event_invoke_config", critical=True):
        same(lam.put_function_event_invoke_config(FunctionName=NODE, MaximumRetryAttempts=1,
                                                  MaximumEventAgeInSeconds=300,
                                                  DestinationConfig=dest), 1)
    with check("get_function_event_invoke_config"):
        same(lam.get_function_event_invoke_config(FunctionName=NODE), 1)
    with check("update_function_event_invoke_config keeps the other fields"):
        same(lam.update_function_event_invoke_config(FunctionName=NODE, MaximumRetryAttempts=0), 0)
        same(lam.get_function_event_invoke_config(FunctionName=NODE), 0)
    with check("list_function_event_invoke_configs"):
        cs = lam.list_function_event_invoke_configs(FunctionName=NODE)["FunctionEventInvokeConfigs"]
        eq(len(cs), 1, "number of configs")
        same(cs[0], 0)
    with check("MaximumRetryAttempts=3 raises InvalidParameterValueException (400)"):
        raises("InvalidParameterValueException", 400, raw.put_function_event_invoke_config,
               FunctionName=NODE, MaximumRetryAttempts=3)
    with check("delete_function_event_invoke_config removes it"):
        eq(status(lam.delete_function_event_invoke_config(FunctionName=NODE)), 204, "HTTP status")
        raises("ResourceNotFoundException", 404, lam.get_function_event_invoke_config,
               FunctionName=NODE)


def group_account():
    with check("get_account_settings"):
        r = lam.get_account_settings()
        limit, usage = r.get("AccountLimit", {}), r.get("AccountUsage", {})
        expect(isinstance(limit.get("ConcurrentExecutions"), int) and limit["ConcurrentExecutions"] > 0,
               "AccountLimit.ConcurrentExecutions > 0", r)
        expect(isinstance(limit.get("CodeSizeZipped"), int), "AccountLimit.CodeSizeZipped", r)
        expect(usage.get("FunctionCount", 0) >= 3, "AccountUsage.FunctionCount >= 3", r)


def aws_cli_v1():
    out = subprocess.run(["aws", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).startswith("aws-cli/1.")


def aws_cli(*args, cwd=None):
    return checks.aws(API, "lambda", *args, cwd=cwd)


def group_cli():
    with check("aws lambda list-functions"):
        names = [f["FunctionName"] for f in aws_cli("list-functions")["Functions"]]
        expect(NODE in names, f"{NODE} listed", names)
    with check("aws lambda invoke"), tempfile.TemporaryDirectory() as d:
        # CLI v1 sends --payload as is and has no --cli-binary-format option;
        # v2 needs `--cli-binary-format raw-in-base64-out` to do the same.
        fmt = [] if aws_cli_v1() else ["--cli-binary-format", "raw-in-base64-out"]
        out = aws_cli("invoke", "--function-name", NODE, "--payload", '{"action":"echo"}',
                      *fmt, "out.json", cwd=d)
        eq(out.get("StatusCode"), 200, "StatusCode")
        eq(out.get("ExecutedVersion"), "$LATEST", "ExecutedVersion")
        p = json.load(open(os.path.join(d, "out.json")))
        eq(p["event"], {"action": "echo"}, "event")
        eq(p["functionName"], NODE, "functionName")


def group_delete():
    with check("delete_function removes a function"):
        lam.delete_function(FunctionName=PY)
        raises("ResourceNotFoundException", 404, lam.get_function, FunctionName=PY)
        raises("ResourceNotFoundException", 404, invoke, fn=PY)
    with check("delete_function of a missing function raises ResourceNotFoundException"):
        raises("ResourceNotFoundException", 404, lam.delete_function, FunctionName=PY)


def cleanup():
    try:
        names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate()
                 for f in page["Functions"] if f["FunctionName"].startswith(PREFIX)]
        for name in names:
            with contextlib.suppress(ClientError):
                lam.delete_function(FunctionName=name)
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp Lambda API at {API}, functions {PREFIX}-*", flush=True)
    checks.run([group_create, group_get, group_invoke, group_update_config, group_versions,
                group_aliases, group_concurrency, group_provisioned, group_event_invoke,
                group_account, group_cli, group_delete], cleanup)


if __name__ == "__main__":
    main()
