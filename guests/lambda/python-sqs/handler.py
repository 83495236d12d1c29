"""An SQS consumer for wisp's event source mapping tests: logs each record
and reports bodies `fail` as batch item failures."""
import json


def handler(event, context):
    failures = []
    for r in event["Records"]:
        if r["body"] == "fail":
            failures.append({"itemIdentifier": r["messageId"]})
            continue
        print("SQS " + json.dumps(r), flush=True)
    return {"batchItemFailures": failures}
