"""A Python function with one behaviour per event["action"], for wisp's tests."""
import decimal
import json
import os
import time
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)
calls = 0


def handler(event, context):
    global calls
    calls += 1
    action = "echo"
    if isinstance(event, dict):
        # Behind the gateway the event is API Gateway's.
        action = event.get("action", "http" if "requestContext" in event else "echo")
    if action == "echo":
        return {
            "event": event,
            "calls": calls,
            "pid": os.getpid(),
            "requestId": context.aws_request_id,
            "functionName": context.function_name,
            "memoryLimitInMB": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(),
            "region": os.environ.get("AWS_REGION"),
            "stage": os.environ.get("STAGE"),
        }
    if action == "log":
        print("hello from python", event.get("n"))
        logger.info("logged via logging")
        return "logged"
    if action == "sleep":
        time.sleep(event["ms"] / 1000)
        return "slept"
    if action == "bytes":
        return b"\x00raw\xff"
    if action == "decimal":
        return {"price": decimal.Decimal("1.10"), "n": decimal.Decimal("3")}
    if action == "unicode":
        return {"greeting": "héllo wörld ✓"}
    if action == "big":
        return "x" * event["bytes"]
    if action == "throw":
        raise ValueError("bad input: %s" % event.get("what"))
    if action == "crash":
        os._exit(4)
    if action == "oom":
        keep = []
        while True:
            keep.append(bytearray(1024 * 1024))
    if action == "http":
        return {
            "statusCode": 200,
            "headers": {"content-type": "text/plain"},
            "body": "python saw %s %s" % (
                event.get("requestContext", {}).get("http", {}).get("method"),
                event.get("rawPath"),
            ),
        }
    raise RuntimeError("unknown action %s" % action)
