"""What the SDK check scripts share: named checks that report `ok - <name>`
/ `not ok - <name>` and continue, expectations, and AWS error assertions."""
import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile

from botocore.exceptions import ClientError

passed, failed = [], []


class Abort(Exception):
    """Ends the current group after a failed check."""


class Failure(Exception):
    pass


@contextlib.contextmanager
def check(name, critical=False):
    """One named check. A failed `critical` check ends its group, because the
    checks after it need what it sets up; other failures are only recorded."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed.append(name)
        msg = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
        if isinstance(e, ClientError):
            msg += "\n    response: " + json.dumps(e.response, default=str)
        print(f"not ok - {name}\n    " + msg.replace("\n", "\n    "), flush=True)
        if critical:
            raise Abort from None
    else:
        passed.append(name)
        print(f"ok - {name}", flush=True)


def expect(cond, what, got):
    if not cond:
        raise Failure(f"expected {what}\n    got: {got!r}")


def eq(got, want, what):
    expect(got == want, f"{what} == {want!r}", got)


def status(resp):
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def raises(code, http_status, fn, /, exceptions=None, **kwargs):
    """Calls fn and checks it fails with AWS error `code` and `http_status`,
    as the exception class botocore generates from the model when it has one
    (from `exceptions`, else the client fn is a method of)."""
    if exceptions is None:
        exceptions = getattr(getattr(fn, "__self__", None), "exceptions", None)
    try:
        resp = fn(**kwargs)
    except ClientError as e:
        err = e.response.get("Error", {})
        # Query-compatible services (SQS) also send their old code; botocore
        # keeps the modeled name in QueryErrorCode and raises its class.
        got = (err.get("QueryErrorCode") or err.get("Code"), status(e.response))
        if got != (code, http_status):
            raise Failure(f"expected {code} ({http_status})\n    got: {got}\n"
                          f"    response: {json.dumps(e.response, default=str)}") from None
        cls = getattr(exceptions, code, None) if exceptions is not None else None
        if cls is not None:
            expect(isinstance(e, cls), f"an instance of client.exceptions.{code}", type(e))
        return e
    resp = resp[0] if isinstance(resp, tuple) else resp
    if isinstance(resp, dict):
        resp.pop("Payload", None)
    raise Failure(f"expected {code} ({http_status})\n    got success: "
                  f"{json.dumps(resp, default=str)}")


def aws(endpoint, service, *args, cwd=None):
    """Runs `aws SERVICE ARGS...` against `endpoint`; its JSON output."""
    p = subprocess.run(["aws", service, *args, "--endpoint-url", endpoint, "--output", "json"],
                       capture_output=True, text=True, timeout=120, cwd=cwd, env=dict(os.environ))
    expect(p.returncode == 0, f"`aws {service} {args[0]}` to exit 0",
           f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return json.loads(p.stdout) if p.stdout.strip() else {}


def run(groups, cleanup=lambda: None):
    """Runs each group, then `cleanup`; prints the tally and exits 0 only if
    nothing failed."""
    try:
        for g in groups:
            try:
                g()
            except Abort:
                print(f"# {g.__name__}: stopped after the failure above", flush=True)
            except Exception as e:  # noqa: BLE001 - a failure outside any check
                failed.append(g.__name__)
                print(f"not ok - {g.__name__}\n    {type(e).__name__}: {e}", flush=True)
    finally:
        cleanup()
    if failed:
        print("# failed: " + "; ".join(failed))
    print(f"{len(passed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


def delete_functions_and_queues(lam, sqs, prefix):
    """Deletes the functions and queues whose names start with `prefix`."""
    for f in lam.list_functions().get("Functions", []):
        if f["FunctionName"].startswith(prefix):
            lam.delete_function(FunctionName=f["FunctionName"])
    for u in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=u)


def zipped(fixture):
    """A code zip of the fixture directory `fixture` (under WISP_FIXTURES)."""
    buf = io.BytesIO()
    root = os.path.join(os.environ["WISP_FIXTURES"], fixture)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(os.listdir(root)):
            z.write(os.path.join(root, f), f)
    return buf.getvalue()


def drain(sqs, url, want, timeout=20):
    """Receives from `url` until `want` messages came (or `timeout` s),
    deleting each; what came, with its message attributes."""
    import time
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                MessageAttributeNames=["All"])
        for m in r.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got
