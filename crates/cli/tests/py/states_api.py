#!/usr/bin/env python3
"""Drives a running wisp's Step Functions API through boto3 and the AWS CLI:
definitions validated with AWS's codes, state machines, and EXPRESS
executions run by StartSyncExecution with Lambda, SQS and EventBridge
tasks, Choice, Catch and Fail; STANDARD executions, durable, with their
history, listing and stopping.

Environment: WISP_API, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, WISP_FIXTURES. Prints `ok - <name>` / `not ok - <name>`
per check, then `N passed, M failed`; exits 0 only if nothing failed.
"""
import hashlib
import http.server
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config

import checks
from checks import check, eq, expect, raises

API = os.environ["WISP_API"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ACCOUNT = "000000000000"
P = "sf" + uuid.uuid4().hex[:6]
ROLE = f"arn:aws:iam::{ACCOUNT}:role/states"

# StartSyncExecution goes to the `sync-` host unless told otherwise.
_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60,
               inject_host_prefix=False)
sfn = boto3.client("stepfunctions", endpoint_url=API, region_name=REGION,
                   config=Config(**_config))
sqs = boto3.client("sqs", endpoint_url=API, region_name=REGION, config=Config(**_config))
events = boto3.client("events", endpoint_url=API, region_name=REGION, config=Config(**_config))
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))
state = {}


def machine_arn(name):
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def group_definitions():
    good = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    with check("validate_state_machine_definition answers OK or FAIL with AWS's codes"):
        r = sfn.validate_state_machine_definition(definition=json.dumps(good))
        eq((r["result"], r["diagnostics"]), ("OK", []), "good")
        bad = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}
        r = sfn.validate_state_machine_definition(definition=json.dumps(bad))
        eq(r["result"], "FAIL", "result")
        eq([(d["code"], d["location"]) for d in r["diagnostics"]],
           [("MISSING_TRANSITION_TARGET", "/States/A/Next")], "diagnostics")
    with check("create_state_machine refuses a bad definition with InvalidDefinition"):
        e = raises("InvalidDefinition", 400, sfn.create_state_machine, name=P + "-bad",
                   definition='{"StartAt": "A", "States": {"A": {"Type": "Nope"}}}', roleArn=ROLE)
        expect("SCHEMA_VALIDATION_FAILED" in str(e), "the code in the message", str(e))


def group_machines():
    fn = P + "-fn"
    state["fn"] = fn
    fn_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"
    definition = {
        "Comment": "echo an order through a function, route it, catch a function's error",
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": fn,
                                    "Payload": {"action": "echo", "order.$": "$.order"}},
                     "ResultSelector": {"echoed.$": "$.Payload.event.order"},
                     "ResultPath": "$.r", "Next": "Route"},
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.r.echoed", "NumericGreaterThan": 10, "Next": "Big"},
                {"Variable": "$.r.echoed", "NumericEquals": 0, "Next": "Refuse"}],
                "Default": "Throw"},
            "Big": {"Type": "Pass", "Parameters": {"size": "big", "id.$": "$.r.echoed",
                                                   "note.$": "States.Format('order {}', $.order)"},
                    "End": True},
            "Throw": {"Type": "Task", "Resource": fn_arn,
                      "Parameters": {"action": "throw", "what": "small"},
                      "Catch": [{"ErrorEquals": ["TypeError"], "ResultPath": "$.error",
                                 "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Pass", "End": True},
            "Refuse": {"Type": "Fail", "Error": "Order.Empty", "Cause": "an order of nothing"},
        },
    }
    with check("create_state_machine answers its ARN", critical=True):
        lam.create_function(FunctionName=fn, Runtime="nodejs20.x", Handler="index.handler",
                            Role=ROLE, Code={"ZipFile": checks.zipped("node-kit")}, Timeout=10)
        r = sfn.create_state_machine(name=P + "-orders", definition=json.dumps(definition),
                                     roleArn=ROLE, type="EXPRESS",
                                     tags=[{"key": "team", "value": "shop"}])
        eq(r["stateMachineArn"], machine_arn(P + "-orders"), "stateMachineArn")
        state["arn"] = r["stateMachineArn"]
    with check("describe, list, update and tags"):
        d = sfn.describe_state_machine(stateMachineArn=state["arn"])
        eq((d["type"], d["status"], json.loads(d["definition"])), ("EXPRESS", "ACTIVE", definition),
           "fields")
        names = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
        expect(P + "-orders" in names, "listed", names)
        sfn.update_state_machine(stateMachineArn=state["arn"], roleArn=ROLE + "2")
        eq(sfn.describe_state_machine(stateMachineArn=state["arn"])["roleArn"], ROLE + "2", "role")
        eq(sfn.list_tags_for_resource(resourceArn=state["arn"])["tags"],
           [{"key": "team", "value": "shop"}], "tags")
    with check("start_sync_execution runs a Lambda task, a Choice and a Pass with an intrinsic"):
        r = sfn.start_sync_execution(stateMachineArn=state["arn"], input=json.dumps({"order": 12}))
        eq(r["status"], "SUCCEEDED", "status")
        eq(json.loads(r["output"]), {"size": "big", "id": 12, "note": "order 12"}, "output")
        expect(r["executionArn"].startswith(
            f"arn:aws:states:{REGION}:{ACCOUNT}:express:{P}-orders:"), "an express ARN", r)
    with check("a function's error is caught by its errorType"):
        r = sfn.start_sync_execution(stateMachineArn=state["arn"], input=json.dumps({"order": 3}))
        eq(r["status"], "SUCCEEDED", "status")
        out = json.loads(r["output"])
        eq(out["error"]["Error"], "TypeError", "Error")
        expect("bad input: small" in out["error"]["Cause"], "the message in Cause", out)
    with check("a Fail state fails the execution with its Error and Cause"):
        r = sfn.start_sync_execution(stateMachineArn=state["arn"], input=json.dumps({"order": 0}))
        eq((r["status"], r["error"], r["cause"]), ("FAILED", "Order.Empty", "an order of nothing"),
           "failure")


def group_integrations():
    url = sqs.create_queue(QueueName=P + "-q")["QueueUrl"]
    q_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{P}-q"
    events.put_rule(Name=P + "-flow", EventPattern=json.dumps({"source": ["flow"]}))
    events.put_targets(Rule=P + "-flow", Targets=[{"Id": "q", "Arn": q_arn}])
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl": url, "MessageBody.$": "$.message"},
                     "ResultPath": "$.sent", "Next": "Put"},
            "Put": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
                    "Parameters": {"Entries": [{"Source": "flow", "DetailType": "Done",
                                                "Detail": {"message.$": "$.message"}}]},
                    "ResultPath": "$.put", "End": True},
        },
    }
    with check("sqs:sendMessage and events:putEvents tasks"):
        arn = sfn.create_state_machine(name=P + "-io", definition=json.dumps(definition),
                                       roleArn=ROLE, type="EXPRESS")["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"message": "hi"}))
        eq(r["status"], "SUCCEEDED", f"status ({r.get('error')}: {r.get('cause')})")
        out = json.loads(r["output"])
        expect("MessageId" in out["sent"] and out["put"]["FailedEntryCount"] == 0, "results", out)
        got = checks.drain(sqs, url, 2)
        bodies = [m["Body"] for m in got]
        expect("hi" in bodies, "the message", bodies)
        event = [json.loads(b) for b in bodies if b != "hi"]
        eq([e["detail"] for e in event], [{"message": "hi"}], "the event")


def group_async_starts():
    url = sqs.create_queue(QueueName=P + "-started")["QueueUrl"]
    definition = {"StartAt": "Send", "States": {"Send": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
        "Parameters": {"QueueUrl": url, "MessageBody.$": "States.JsonToString($)"}, "End": True}}}
    with check("start_execution runs an EXPRESS machine asynchronously", critical=True):
        arn = sfn.create_state_machine(name=P + "-async", definition=json.dumps(definition),
                                       roleArn=ROLE, type="EXPRESS")["stateMachineArn"]
        state["async"] = arn
        r = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"via": "api"}))
        expect(r["executionArn"].startswith(
            f"arn:aws:states:{REGION}:{ACCOUNT}:express:{P}-async:"), "an express ARN", r)
        got = checks.drain(sqs, url, 1)
        eq([json.loads(m["Body"]) for m in got], [{"via": "api"}], "what the execution sent")
    with check("a rule's target and a schedule's target start executions"):
        events.put_rule(Name=P + "-start", EventPattern=json.dumps({"source": ["kick"]}))
        events.put_targets(Rule=P + "-start", Targets=[
            {"Id": "sm", "Arn": state["async"], "InputPath": "$.detail"}])
        events.put_events(Entries=[{"Source": "kick", "DetailType": "t",
                                    "Detail": json.dumps({"via": "rule"})}])
        scheduler = boto3.client("scheduler", endpoint_url=API, region_name=REGION,
                                 config=Config(**_config))
        at = datetime.now(timezone.utc) + timedelta(seconds=2)
        scheduler.create_schedule(
            Name=P + "-start", ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
            FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
            Target={"Arn": state["async"], "RoleArn": ROLE, "Input": json.dumps({"via": "schedule"})})
        got = checks.drain(sqs, url, 2)
        eq(sorted(json.loads(m["Body"])["via"] for m in got), ["rule", "schedule"], "both ran")
        events.delete_rule(Name=P + "-start", Force=True)


def wait_for(arn, statuses=("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"), seconds=30):
    deadline = time.time() + seconds
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] in statuses or time.time() > deadline:
            return d
        time.sleep(0.1)


def history(arn, **kw):
    out, token = [], None
    while True:
        r = sfn.get_execution_history(executionArn=arn, **kw, **({"nextToken": token} if token else {}))
        out += r["events"]
        token = r.get("nextToken")
        if not token:
            return out


def group_standard():
    fn_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{state['fn']}"
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Task", "Resource": fn_arn,
                     "Parameters": {"action": "echo", "n.$": "$.n"},
                     "ResultSelector": {"n.$": "$.event.n"}, "Next": "Flaky"},
            "Flaky": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                      "Parameters": {"FunctionName": state["fn"], "Payload": {"action": "throw"}},
                      "Retry": [{"ErrorEquals": ["TypeError"], "IntervalSeconds": 1,
                                 "MaxAttempts": 1}],
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught",
                                 "Next": "Done"}], "End": True},
            "Done": {"Type": "Pass", "Parameters": {"n.$": "$.n", "error.$": "$.caught.Error"},
                     "End": True},
        },
    }
    with check("a STANDARD execution runs durably: Lambda tasks, Retry, Catch", critical=True):
        arn = sfn.create_state_machine(name=P + "-durable", definition=json.dumps(definition),
                                       roleArn=ROLE)["stateMachineArn"]
        state["durable"] = arn
        r = sfn.start_execution(stateMachineArn=arn, name="first", input=json.dumps({"n": 7}))
        eq(r["executionArn"], f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{P}-durable:first",
           "executionArn")
        state["first"] = r["executionArn"]
        again = sfn.start_execution(stateMachineArn=arn, name="first", input=json.dumps({"n": 7}))
        eq(again["executionArn"], r["executionArn"], "the same name and input: the same execution")
        d = wait_for(r["executionArn"])
        eq((d["status"], json.loads(d["output"])), ("SUCCEEDED", {"n": 7, "error": "TypeError"}),
           f"status and output ({d.get('error')}: {d.get('cause')})")
        eq((d["name"], d["stateMachineArn"], json.loads(d["input"])), ("first", arn, {"n": 7}),
           "fields")
        expect(d["stopDate"] >= d["startDate"], "stopped after it started", d)
        raises("ExecutionAlreadyExists", 400, sfn.start_execution, stateMachineArn=arn,
               name="first", input=json.dumps({"n": 7}))
    with check("get_execution_history: AWS's event types, ids, previousEventId, pages, reverse"):
        events_ = history(state["first"], maxResults=4)
        types = [e["type"] for e in events_]
        eq(types, ["ExecutionStarted", "TaskStateEntered", "LambdaFunctionScheduled",
                   "LambdaFunctionStarted", "LambdaFunctionSucceeded", "TaskStateExited",
                   "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskFailed",
                   "TaskScheduled", "TaskStarted", "TaskFailed", "TaskStateExited",
                   "PassStateEntered", "PassStateExited", "ExecutionSucceeded"], "types")
        eq([e["id"] for e in events_], list(range(1, len(types) + 1)), "ids")
        eq([e["previousEventId"] for e in events_], list(range(0, len(types))), "previousEventId")
        entered = events_[1]["stateEnteredEventDetails"]
        eq((entered["name"], json.loads(entered["input"])), ("Echo", {"n": 7}), "entered")
        failed = events_[9]["taskFailedEventDetails"]
        eq((failed["resourceType"], failed["resource"], failed["error"]),
           ("lambda", "invoke", "TypeError"), "TaskFailed")
        scheduled = events_[7]["taskScheduledEventDetails"]
        eq(json.loads(scheduled["parameters"])["FunctionName"], state["fn"], "TaskScheduled")
        ended = json.loads(events_[-1]["executionSucceededEventDetails"]["output"])
        eq(ended, {"n": 7, "error": "TypeError"}, "ExecutionSucceeded")
        gap = events_[11]["timestamp"] - events_[9]["timestamp"]
        expect(gap.total_seconds() >= 0.9, "the retry waited its interval", gap)
        backwards = history(state["first"], reverseOrder=True, maxResults=5)
        eq([e["id"] for e in backwards], list(range(len(types), 0, -1)), "reverse")
        bare = sfn.get_execution_history(executionArn=state["first"],
                                         includeExecutionData=False)["events"]
        expect("input" not in bare[1]["stateEnteredEventDetails"], "no data when asked", bare[1])
    with check("list_executions by status, paginated; describe_state_machine_for_execution"):
        for i in range(3):
            sfn.start_execution(stateMachineArn=state["durable"], name=f"more-{i}",
                                input=json.dumps({"n": i}))
        for i in range(3):
            wait_for(f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{P}-durable:more-{i}")
        listed, token = [], None
        while True:
            r = sfn.list_executions(stateMachineArn=state["durable"], maxResults=2,
                                    **({"nextToken": token} if token else {}))
            listed += r["executions"]
            token = r.get("nextToken")
            if not token:
                break
        eq(sorted(e["name"] for e in listed), ["first", "more-0", "more-1", "more-2"], "all")
        eq({e["status"] for e in listed}, {"SUCCEEDED"}, "statuses")
        eq(sfn.list_executions(stateMachineArn=state["durable"],
                               statusFilter="RUNNING")["executions"], [], "none running")
        sfn.update_state_machine(stateMachineArn=state["durable"], definition=json.dumps(
            {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}))
        m = sfn.describe_state_machine_for_execution(executionArn=state["first"])
        eq(json.loads(m["definition"]), definition, "the definition it ran")
    with check("a Wait state parks the execution; stop_execution aborts it"):
        waits = {"StartAt": "Nap", "States": {
            "Nap": {"Type": "Wait", "SecondsPath": "$.s", "Next": "After"},
            "After": {"Type": "Pass", "End": True}}}
        arn = sfn.create_state_machine(name=P + "-wait", definition=json.dumps(waits),
                                       roleArn=ROLE)["stateMachineArn"]
        short = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"s": 1}))
        long = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"s": 3600}))
        d = wait_for(short["executionArn"])
        eq(d["status"], "SUCCEEDED", "the short wait ended")
        eq(wait_for(long["executionArn"], seconds=1)["status"], "RUNNING", "the long one waits")
        r = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        eq([e["executionArn"] for e in r], [long["executionArn"]], "listed running")
        sfn.stop_execution(executionArn=long["executionArn"], error="Ops.Stop", cause="no need")
        d = sfn.describe_execution(executionArn=long["executionArn"])
        eq((d["status"], d["error"], d["cause"]), ("ABORTED", "Ops.Stop", "no need"), "aborted")
        last = history(long["executionArn"], reverseOrder=True, maxResults=1)
        eq(last[0]["type"], "ExecutionAborted", "the last event")
        raises("ExecutionDoesNotExist", 400, sfn.describe_execution,
               executionArn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{P}-wait:none")
        raises("InvalidArn", 400, sfn.describe_execution, executionArn="arn:nope")
    with check("aws stepfunctions get-execution-history and describe-execution"):
        r = checks.aws(API, "stepfunctions", "get-execution-history", "--execution-arn",
                       state["first"], "--reverse-order", "--max-items", "1")
        eq([e["type"] for e in r["events"]], ["ExecutionSucceeded"], "newest first")
        r = checks.aws(API, "stepfunctions", "describe-execution", "--execution-arn",
                       state["first"])
        eq(r["status"], "SUCCEEDED", "status")


def token_from_queue(url):
    got = checks.drain(sqs, url, 1)
    return json.loads(got[0]["Body"])


def group_callbacks():
    url = sqs.create_queue(QueueName=P + "-asks")["QueueUrl"]
    ask = {"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": url,
                               "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
                "HeartbeatSeconds": 600, "ResultPath": "$.answer",
                "Catch": [{"ErrorEquals": ["Order.Refused"], "ResultPath": "$.refused",
                           "Next": "Refused"}],
                "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
        "Refused": {"Type": "Pass", "End": True}}}
    with check("sqs:sendMessage.waitForTaskToken waits for send_task_success", critical=True):
        arn = sfn.create_state_machine(name=P + "-ask", definition=json.dumps(ask),
                                       roleArn=ROLE)["stateMachineArn"]
        state["ask"] = arn
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 5}))
        body = token_from_queue(url)
        eq(body["order"], 5, "the message")
        eq(sfn.describe_execution(executionArn=run["executionArn"])["status"], "RUNNING", "waits")
        sfn.send_task_heartbeat(taskToken=body["token"])
        sfn.send_task_success(taskToken=body["token"], output=json.dumps({"approved": True}))
        d = wait_for(run["executionArn"])
        eq((d["status"], json.loads(d["output"])), ("SUCCEEDED", {"order": 5, "answer": {"approved": True}}),
           "status and output")
        types = [e["type"] for e in history(run["executionArn"])]
        expect(types.index("TaskSubmitted") < types.index("TaskSucceeded"), "submitted, then done",
               types)
        raises("TaskTimedOut", 400, sfn.send_task_success, taskToken=body["token"], output="{}")
        raises("InvalidToken", 400, sfn.send_task_success, taskToken="nope", output="{}")
    with check("send_task_failure fails the task with its error, which Catch matches"):
        run = sfn.start_execution(stateMachineArn=state["ask"], input=json.dumps({"order": 6}))
        body = token_from_queue(url)
        raises("InvalidOutput", 400, sfn.send_task_success, taskToken=body["token"], output="{no")
        sfn.send_task_failure(taskToken=body["token"], error="Order.Refused", cause="out of stock")
        d = wait_for(run["executionArn"])
        eq(json.loads(d["output"])["refused"], {"Error": "Order.Refused", "Cause": "out of stock"},
           "caught")
    with check("a task with no heartbeat in HeartbeatSeconds fails with States.HeartbeatTimeout"):
        beat = json.loads(json.dumps(ask))
        beat["States"]["Ask"]["HeartbeatSeconds"] = 3
        beat["States"]["Ask"].pop("Catch")
        beat["States"].pop("Refused")
        arn = sfn.create_state_machine(name=P + "-beat", definition=json.dumps(beat),
                                       roleArn=ROLE)["stateMachineArn"]
        kept = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 1}))
        kept_token = token_from_queue(url)["token"]
        sfn.send_task_heartbeat(taskToken=kept_token)
        quiet = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 2}))
        token_from_queue(url)
        for _ in range(12):
            sfn.send_task_heartbeat(taskToken=kept_token)
            time.sleep(0.5)
        d = wait_for(quiet["executionArn"])
        eq((d["status"], d["error"]), ("FAILED", "States.HeartbeatTimeout"), "the quiet one")
        expect("TaskTimedOut" in [e["type"] for e in history(quiet["executionArn"])],
               "TaskTimedOut in its history", "")
        eq(sfn.describe_execution(executionArn=kept["executionArn"])["status"], "RUNNING",
           "the one that beat still waits")
        sfn.send_task_success(taskToken=kept_token, output="{}")
        eq(wait_for(kept["executionArn"])["status"], "SUCCEEDED", "then succeeds")
    with check("lambda:invoke.waitForTaskToken invokes the function with the token, then waits"):
        marks = os.path.join(tempfile.mkdtemp(), "tokens")
        call = {"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": state["fn"],
                           "Payload": {"action": "mark", "file": marks, "n.$": "$$.Task.Token",
                                       "ms": 0}},
            "End": True}}}
        arn = sfn.create_state_machine(name=P + "-call", definition=json.dumps(call),
                                       roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn)
        deadline = time.time() + 30
        while not (os.path.exists(marks) and open(marks).read().strip()) and time.time() < deadline:
            time.sleep(0.1)
        token = open(marks).read().strip()
        sfn.send_task_success(taskToken=token, output=json.dumps({"called": True}))
        d = wait_for(run["executionArn"])
        eq((d["status"], json.loads(d["output"])), ("SUCCEEDED", {"called": True}), "done")
    with check("activities: a worker takes the task with get_activity_task and answers it"):
        activity = sfn.create_activity(name=P + "-review")["activityArn"]
        eq(activity, f"arn:aws:states:{REGION}:{ACCOUNT}:activity:{P}-review", "activityArn")
        eq(sfn.create_activity(name=P + "-review")["activityArn"], activity, "idempotent")
        eq(sfn.describe_activity(activityArn=activity)["name"], P + "-review", "described")
        expect(activity in [a["activityArn"] for a in sfn.list_activities()["activities"]],
               "listed", "")
        work = {"StartAt": "Review", "States": {"Review": {
            "Type": "Task", "Resource": activity, "Parameters": {"doc.$": "$.doc"},
            "TimeoutSeconds": 60, "End": True}}}
        arn = sfn.create_state_machine(name=P + "-work", definition=json.dumps(work),
                                       roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"doc": "d1"}))
        task = sfn.get_activity_task(activityArn=activity, workerName="worker-1")
        eq(json.loads(task["input"]), {"doc": "d1"}, "the task's input")
        sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"ok": "d1"}))
        d = wait_for(run["executionArn"])
        eq((d["status"], json.loads(d["output"])), ("SUCCEEDED", {"ok": "d1"}), "done")
        events_ = history(run["executionArn"])
        types = [e["type"] for e in events_]
        eq([t for t in types if t.startswith("Activity")],
           ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"], "activity events")
        started = [e for e in events_ if e["type"] == "ActivityStarted"][0]
        eq(started["activityStartedEventDetails"]["workerName"], "worker-1", "the worker")
        sfn.delete_activity(activityArn=activity)
        raises("ActivityDoesNotExist", 400, sfn.describe_activity, activityArn=activity)
    with check("states:startExecution.sync and .sync:2 wait for a child execution"):
        child = {"StartAt": "Grow", "States": {
            "Grow": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                     "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 100, "Next": "TooBig"}],
                "Default": "Ok"},
            "Ok": {"Type": "Succeed"},
            "TooBig": {"Type": "Fail", "Error": "Child.TooBig", "Cause": "n > 100"}}}
        child_arn = sfn.create_state_machine(name=P + "-child", definition=json.dumps(child),
                                             roleArn=ROLE)["stateMachineArn"]
        parent = {"StartAt": "V2", "States": {
            "V2": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                   "Parameters": {"StateMachineArn": child_arn, "Input": {"n.$": "$.n"}},
                   "ResultSelector": {"out.$": "$.Output", "status.$": "$.Status"},
                   "ResultPath": "$.v2", "Next": "V1",
                   "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.failed",
                              "Next": "Failed"}]},
            "V1": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
                   "Parameters": {"StateMachineArn": child_arn, "Input": {"n.$": "$.n"}},
                   "ResultSelector": {"out.$": "$.Output"}, "ResultPath": "$.v1", "End": True},
            "Failed": {"Type": "Pass", "End": True}}}
        arn = sfn.create_state_machine(name=P + "-parent", definition=json.dumps(parent),
                                       roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 1}))
        d = wait_for(run["executionArn"])
        out = json.loads(d.get("output") or "{}")
        eq(d["status"], "SUCCEEDED", f"status ({d.get('error')}: {d.get('cause')})")
        eq(out["v2"], {"out": {"n": 2}, "status": "SUCCEEDED"}, ".sync:2: the output as JSON")
        eq(out["v1"], {"out": json.dumps({"n": 2}, separators=(",", ":"))},
           ".sync: the output as text")
        children = sfn.list_executions(stateMachineArn=child_arn)["executions"]
        eq(len(children), 2, "two children ran")
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 100}))
        d = wait_for(run["executionArn"])
        failed = json.loads(d["output"])["failed"]
        eq(failed["Error"], "States.TaskFailed", "the child's failure fails the task")
        eq(json.loads(failed["Cause"])["Error"], "Child.TooBig", "the child's error in the cause")
    with check("an EXPRESS machine may not wait for tokens"):
        raises("InvalidDefinition", 400, sfn.create_state_machine, name=P + "-xwait",
               definition=json.dumps(ask), roleArn=ROLE, type="EXPRESS")


def group_branches():
    url = sqs.create_queue(QueueName=P + "-branch")["QueueUrl"]
    both = {"StartAt": "Both", "States": {"Both": {
        "Type": "Parallel", "ResultPath": "$.both", "End": True,
        "Branches": [
            {"StartAt": "Here", "States": {"Here": {
                "Type": "Pass", "Parameters": {"id.$": "$$.Execution.Id"}, "End": True}}},
            {"StartAt": "Ask", "States": {"Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": url, "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True}}}]}}}
    with check("a STANDARD Parallel runs its branches durably, a callback in one of them"):
        arn = sfn.create_state_machine(name=P + "-both", definition=json.dumps(both),
                                       roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"k": 1}))
        token = token_from_queue(url)["token"]
        eq(sfn.describe_execution(executionArn=run["executionArn"])["status"], "RUNNING", "waits")
        sfn.send_task_success(taskToken=token, output=json.dumps({"asked": True}))
        d = wait_for(run["executionArn"])
        eq(d["status"], "SUCCEEDED", f"status ({d.get('error')}: {d.get('cause')})")
        eq(json.loads(d["output"])["both"], [{"id": run["executionArn"]}, {"asked": True}],
           "the branches' outputs in order, the parent's context in a branch")
        events = history(run["executionArn"])
        types = [e["type"] for e in events]
        eq(types[:3] + types[-3:], ["ExecutionStarted", "ParallelStateEntered",
                                    "ParallelStateStarted", "ParallelStateSucceeded",
                                    "ParallelStateExited", "ExecutionSucceeded"], "history")
        inner = types[3:-3]
        eq([t for t in inner if t.startswith("Pass")], ["PassStateEntered", "PassStateExited"],
           "the first branch's events are in its parent's history")
        eq([t for t in inner if not t.startswith("Pass")],
           ["TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskSubmitted",
            "TaskSucceeded", "TaskStateExited"], "the second branch's, in order")
        eq([e["id"] for e in events], list(range(1, len(events) + 1)), "numbered in order")
        eq([e["type"] for e in history(run["executionArn"], reverseOrder=True, maxResults=4)],
           list(reversed(types)), "read backwards, page by page")
        eq([e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]],
           [run["executionArn"].rsplit(":", 1)[1]], "branches are not listed as executions")
    items = {"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
        "ToleratedFailureCount": 1,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Check", "States": {
            "Check": {"Type": "Choice", "Choices": [
                {"Variable": "$.n", "NumericEquals": 3, "Next": "Bad"}], "Default": "Double"},
            "Double": {"Type": "Pass", "Parameters": {"i.$": "$.i",
                                                      "twice.$": "States.MathAdd($.n, $.n)"},
                       "End": True},
            "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "three"}}},
        "End": True}}}
    with check("a STANDARD Map runs its items durably, MaxConcurrency and tolerated failures"):
        arn = sfn.create_state_machine(name=P + "-each", definition=json.dumps(items),
                                       roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [1, 2, 3, 4, 5]}))
        d = wait_for(run["executionArn"])
        eq(d["status"], "SUCCEEDED", f"status ({d.get('error')}: {d.get('cause')})")
        eq(json.loads(d["output"]), [{"i": 0, "twice": 2}, {"i": 1, "twice": 4},
                                     {"Error": "Item.Bad", "Cause": "three"},
                                     {"i": 3, "twice": 8}, {"i": 4, "twice": 10}], "output")
        events = history(run["executionArn"])
        types = [e["type"] for e in events]
        eq((types.count("MapIterationStarted"), types.count("MapIterationSucceeded"),
            types.count("MapIterationFailed")), (5, 4, 1), "iterations")
        # Each item's states are in the history, within the Map's.
        inner = types[types.index("MapStateStarted"):types.index("MapStateSucceeded")]
        eq((inner.count("ChoiceStateEntered"), inner.count("PassStateExited"),
            inner.count("FailStateEntered")), (5, 4, 1), "the items' states")
        run = sfn.start_execution(stateMachineArn=arn,
                                  input=json.dumps({"items": [3, 3, 1]}))
        d = wait_for(run["executionArn"])
        eq((d["status"], d["error"]), ("FAILED", "States.ExceedToleratedFailureThreshold"),
           "past the tolerance")


def group_versions():
    def says(word):
        return json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": word,
                                                             "End": True}}})
    with check("versions and aliases: publish, list, describe, route executions, delete"):
        r = sfn.create_state_machine(name=P + "-ver", definition=says("one"), roleArn=ROLE,
                                     type="EXPRESS", publish=True, versionDescription="first")
        arn = r["stateMachineArn"]
        eq(r["stateMachineVersionArn"], arn + ":1", "published at create")
        u = sfn.update_state_machine(stateMachineArn=arn, definition=says("two"), publish=True)
        eq(u["stateMachineVersionArn"], arn + ":2", "published at update")
        eq(sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"],
           arn + ":2", "nothing changed: the same version")
        eq([v["stateMachineVersionArn"] for v in
            sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]],
           [arn + ":2", arn + ":1"], "newest first")
        eq(json.loads(sfn.describe_state_machine(stateMachineArn=arn + ":1")["definition"]),
           json.loads(says("one")), "a version keeps its definition")
        alias = sfn.create_state_machine_alias(
            name="live", routingConfiguration=[{"stateMachineVersionArn": arn + ":1", "weight": 100}]
        )["stateMachineAliasArn"]
        eq(alias, arn + ":live", "alias ARN")
        out = lambda target: json.loads(sfn.start_sync_execution(stateMachineArn=target)["output"])
        eq((out(alias), out(arn + ":2"), out(arn)), ("one", "two", "two"),
           "the alias runs version 1, the version 2, the machine its latest")
        raises("ConflictException", 400, sfn.delete_state_machine_version,
               stateMachineVersionArn=arn + ":1")
        sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
            {"stateMachineVersionArn": arn + ":2", "weight": 100}])
        eq(out(alias), "two", "moved to version 2")
        d = sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
        eq(d["routingConfiguration"], [{"stateMachineVersionArn": arn + ":2", "weight": 100}],
           "routing")
        eq([a["stateMachineAliasArn"] for a in
            sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]],
           [alias], "listed")
        sfn.delete_state_machine_version(stateMachineVersionArn=arn + ":1")
        raises("ResourceNotFound", 400, sfn.describe_state_machine_alias,
               stateMachineAliasArn=arn + ":gone")
        raises("ValidationException", 400, sfn.create_state_machine_alias, name="half",
               routingConfiguration=[{"stateMachineVersionArn": arn + ":2", "weight": 50}])
        sfn.delete_state_machine_alias(stateMachineAliasArn=alias)
        eq(sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"], [],
           "deleted")


def group_test_state():
    with check("test_state runs one state: Pass, Choice, Fail, a real Task, mocks, DEBUG data"):
        r = sfn.test_state(definition=json.dumps({
            "Type": "Pass", "InputPath": "$.order", "Parameters": {"id.$": "$.id", "k": 1},
            "ResultPath": "$.out", "Next": "After"}),
            roleArn=ROLE, input=json.dumps({"order": {"id": 7}}), inspectionLevel="DEBUG")
        eq((r["status"], r["nextState"], json.loads(r["output"])),
           ("SUCCEEDED", "After", {"order": {"id": 7}, "out": {"id": 7, "k": 1}}), "Pass")
        eq((json.loads(r["inspectionData"]["afterInputPath"]),
            json.loads(r["inspectionData"]["afterParameters"])), ({"id": 7}, {"id": 7, "k": 1}),
           "DEBUG inspection")
        r = sfn.test_state(definition=json.dumps({
            "Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}],
            "Default": "Small"}), roleArn=ROLE, input='{"n": 5}')
        eq((r["status"], r["nextState"]), ("SUCCEEDED", "Big"), "Choice")
        r = sfn.test_state(definition='{"Type": "Fail", "Error": "E", "Cause": "c"}', roleArn=ROLE)
        eq((r["status"], r["error"], r["cause"]), ("FAILED", "E", "c"), "Fail")
        task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": state["fn"], "Payload": {"action": "echo", "n.$": "$.n"}},
                "ResultSelector": {"n.$": "$.Payload.event.n"}, "End": True}
        r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input='{"n": 3}')
        eq((r["status"], json.loads(r["output"])), ("SUCCEEDED", {"n": 3}), "a real Task")
        task["Retry"] = [{"ErrorEquals": ["Boom"], "MaxAttempts": 2}]
        r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input='{"n": 3}',
                           mock={"errorOutput": {"error": "Boom", "cause": "mocked"}})
        eq((r["status"], r["error"]), ("RETRIABLE", "Boom"), "a retry it would make")
        task.pop("Retry")
        task["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Undo"}]
        r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input='{"n": 3}',
                           mock={"errorOutput": {"error": "Boom", "cause": "mocked"}})
        eq((r["status"], r["nextState"], json.loads(r["output"])["err"]["Error"]),
           ("CAUGHT_ERROR", "Undo", "Boom"), "a catch it would take")
        r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input='{"n": 3}',
                           mock={"result": json.dumps({"Payload": {"event": {"n": 9}}})})
        eq(json.loads(r["output"]), {"n": 9}, "a mocked result")
        raises("InvalidDefinition", 400, sfn.test_state, definition='{"Type": "Nope"}', roleArn=ROLE)


def group_jsonata():
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Remember",
        "States": {
            "Remember": {"Type": "Pass", "Assign": {"customer": "{% $states.input.customer %}"},
                         "Output": {"n": "{% $states.input.n %}"}, "Next": "Echo"},
            "Echo": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Arguments": {"FunctionName": state["fn"],
                                   "Payload": {"action": "echo", "n": "{% $states.input.n * 2 %}",
                                               "who": "{% $customer %}"}},
                     "Assign": {"doubled": "{% $states.result.Payload.event.n %}"},
                     "Output": "{% $states.result.Payload.event %}", "Next": "Route"},
            "Route": {"Type": "Choice", "Default": "Small", "Choices": [
                {"Condition": "{% $doubled > 10 %}", "Next": "Each", "Assign": {"size": "big"}}]},
            "Each": {"Type": "Map", "Items": "{% $range(1, $states.input.n, 1) %}",
                     "ItemSelector": {"i": "{% $states.context.Map.Item.Value %}", "who": "{% $customer %}"},
                     "ItemProcessor": {"StartAt": "Line", "States": {
                         "Line": {"Type": "Pass", "Output": "{% $states.input.who & '#' & $states.input.i %}",
                                  "End": True}}},
                     "Output": {"lines": "{% $states.result %}", "size": "{% $size %}",
                                "hash": "{% $hash($customer, 'SHA-256') %}"},
                     "End": True},
            "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "{% 'only ' & $string($doubled) %}"},
        },
    }
    with check("JSONata: Arguments, Output, Assign, Condition, Items, $states and variables, STANDARD"):
        arn = sfn.create_state_machine(name=P + "-jsonata", definition=json.dumps(definition),
                                       roleArn=ROLE)["stateMachineArn"]
        r = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"customer": "ann", "n": 6}))
        d = wait_for(r["executionArn"])
        eq((d["status"], json.loads(d.get("output", "null"))),
           ("SUCCEEDED", {"lines": [f"ann#{i}" for i in range(1, 13)], "size": "big",
                          "hash": hashlib.sha256(b"ann").hexdigest()}),
           f"status and output ({d.get('error')}: {d.get('cause')})")
        exited = [e for e in history(r["executionArn"]) if e["type"] == "PassStateExited"]
        eq(exited[0]["stateExitedEventDetails"].get("assignedVariables"), {"customer": '"ann"'},
           "assignedVariables in the history")
        r = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"customer": "bob", "n": 2}))
        d = wait_for(r["executionArn"])
        eq((d["status"], d.get("error"), d.get("cause")), ("FAILED", "TooSmall", "only 4"),
           "Fail's Error and Cause as expressions")
        sync = sfn.create_state_machine(name=P + "-jsonata-x", type="EXPRESS", roleArn=ROLE,
                                        definition=json.dumps(definition))["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=sync, input=json.dumps({"customer": "cy", "n": 6}))
        eq((r["status"], json.loads(r["output"])["lines"][:2]), ("SUCCEEDED", ["cy#1", "cy#2"]), "EXPRESS")
    with check("JSONata: a failing expression is States.QueryEvaluationError, catchable; bad ones refused"):
        bad = {"QueryLanguage": "JSONata", "StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Arguments": {"FunctionName": state["fn"], "Payload": "{% $states.input.missing %}"},
                  "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Caught",
                             "Output": "{% $states.errorOutput %}"}], "End": True},
            "Caught": {"Type": "Succeed"}}}
        arn = sfn.create_state_machine(name=P + "-jsonata-bad", type="EXPRESS", roleArn=ROLE,
                                       definition=json.dumps(bad))["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
        out = json.loads(r.get("output", "{}"))
        eq((r["status"], out.get("Error")), ("SUCCEEDED", "States.QueryEvaluationError"),
           f"an Arguments expression that yields nothing fails the Task, caught ({r.get('cause')})")
        expect("specified for the field 'Arguments/Payload' returned nothing (undefined)"
               in out.get("Cause", ""), "AWS's cause", out)
        for wrong, says in [
            ({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.a", "End": True}}},
             "The field 'InputPath' is not supported when QueryLanguage is JSONata"),
            ({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "Output": "{% ( %}", "End": True}}},
             "is not valid"),
            ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {"states": 1}, "End": True}}},
             "reserved"),
        ]:
            r = sfn.validate_state_machine_definition(definition=json.dumps(wrong))
            expect(r["result"] == "FAIL" and any(says in d["message"] for d in r["diagnostics"]),
                   says, r["diagnostics"])
    with check("JSONPath states set and read variables; test_state takes and shows variables"):
        d = {"StartAt": "Keep", "States": {
            "Keep": {"Type": "Pass", "Result": {"x": 41}, "Assign": {"kept.$": "$.x"}, "Next": "Use"},
            "Use": {"Type": "Pass", "Parameters": {"next.$": "States.MathAdd($kept, 1)"}, "End": True}}}
        arn = sfn.create_state_machine(name=P + "-vars", type="EXPRESS", roleArn=ROLE,
                                       definition=json.dumps(d))["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
        eq(json.loads(r["output"]), {"next": 42}, "a variable read by an intrinsic")
        r = sfn.test_state(definition=json.dumps({
            "QueryLanguage": "JSONata", "Type": "Pass", "Output": "{% $a + 1 %}",
            "Assign": {"b": "{% $a * 10 %}"}, "End": True}),
            roleArn=ROLE, input="{}", variables=json.dumps({"a": 4}), inspectionLevel="DEBUG")
        eq((r["status"], json.loads(r["output"]), json.loads(r["inspectionData"]["variables"])),
           ("SUCCEEDED", 5, {"a": 4, "b": 40}), "test_state with variables")


class _Endpoint(http.server.BaseHTTPRequestHandler):
    """Records each request; /missing answers 404, the rest echo JSON."""
    seen = []

    def _any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        _Endpoint.seen.append({"method": self.command, "path": self.path, "body": body,
                               "headers": {k.lower(): v for k, v in self.headers.items()}})
        status = 404 if self.path.startswith("/missing") else 200
        out = json.dumps({"got": self.path, "method": self.command})
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-served-by", "test")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    do_POST = do_PUT = do_GET = do_DELETE = _any

    def log_message(self, *args):
        pass


def group_http_task():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    conn = events.create_connection(Name=P + "-http", AuthorizationType="API_KEY", AuthParameters={
        "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k1"}})["ConnectionArn"]
    definition = {"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                 "Parameters": {"ApiEndpoint.$": "States.Format('" + base + "/{}', $.path)",
                                "Method": "POST", "Authentication": {"ConnectionArn": conn},
                                "Headers": {"x-trace": "t1"}, "QueryParameters": {"page": "2"},
                                "RequestBody": {"order.$": "$.order"}},
                 "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody",
                                    "served.$": "$.Headers.x-served-by[0]"},
                 "Catch": [{"ErrorEquals": ["States.Http.StatusCode.404"], "Next": "Missing"}],
                 "End": True},
        "Missing": {"Type": "Pass", "End": True}}}
    with check("the HTTP task calls an allowed endpoint through a connection, AWS's result and errors"):
        allowed = sfn.create_state_machine(
            name=P + "-http", type="EXPRESS", roleArn=ROLE, definition=json.dumps(definition),
            tags=[{"key": "wisp:allowed-outbound-hosts", "value": base}])["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=allowed,
                                      input=json.dumps({"path": "orders", "order": 7}))
        eq((r["status"], json.loads(r.get("output", "null"))),
           ("SUCCEEDED", {"status": 200, "body": {"got": "/orders?page=2", "method": "POST"},
                          "served": "test"}), f"result ({r.get('error')}: {r.get('cause')})")
        req = _Endpoint.seen[-1]
        eq((req["headers"].get("x-api-key"), req["headers"].get("x-trace"), json.loads(req["body"]),
            req["headers"].get("content-type")),
           ("k1", "t1", {"order": 7}, "application/json; charset=UTF-8"),
           "the connection's key, the task's headers and its JSON body")
        r = sfn.start_sync_execution(stateMachineArn=allowed,
                                      input=json.dumps({"path": "missing", "order": 1}))
        out = json.loads(r["output"])
        eq((r["status"], out["Error"], json.loads(out["Cause"])["StatusCode"]),
           ("SUCCEEDED", "States.Http.StatusCode.404", 404), "a 404 is caught by its name")
        denied = sfn.create_state_machine(name=P + "-http-denied", type="EXPRESS", roleArn=ROLE,
                                          definition=json.dumps(definition))["stateMachineArn"]
        r = sfn.start_sync_execution(stateMachineArn=denied,
                                      input=json.dumps({"path": "orders", "order": 1}))
        eq((r["status"], r.get("error")), ("FAILED", "States.Permissions"),
           "an endpoint the machine is not allowed to call")
        expect("allowed_outbound_hosts" in r.get("cause", ""), "says how to allow it", r)
    events.delete_connection(Name=P + "-http")
    server.shutdown()


def group_map_runs():
    item = {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 1, "Next": "Echo"},
                                         "Echo": {"Type": "Pass", "Parameters": {"got.$": "$.n"}, "End": True}}}
    item["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    definition = {"StartAt": "Ship", "States": {
        "Ship": {"Type": "Map", "Label": "ShipAll", "ItemsPath": "$.items", "MaxConcurrency": 1,
                 "ItemSelector": {"n.$": "$$.Map.Item.Value"},
                 "ItemProcessor": item, "End": True}}}
    with check("a DISTRIBUTED Map is a map run: describe, list, update it while it runs"):
        arn = sfn.create_state_machine(name=P + "-dmap", definition=json.dumps(definition),
                                       roleArn=ROLE)["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [1, 2, 3, 4, 5, 6]}))
        ex = ex["executionArn"]
        deadline = time.time() + 10
        runs = []
        while not runs and time.time() < deadline:
            runs = sfn.list_map_runs(executionArn=ex)["mapRuns"]
            time.sleep(0.1)
        eq(len(runs), 1, "one map run listed")
        run = runs[0]["mapRunArn"]
        expect(":mapRun:" + P + "-dmap/ShipAll:" in run, "the ARN names the machine and label", run)
        d = sfn.describe_map_run(mapRunArn=run)
        eq((d["status"], d["maxConcurrency"], d["itemCounts"]["total"], d["executionArn"]),
           ("RUNNING", 1, 6, ex), "running, one at a time")
        expect(d["itemCounts"]["running"] <= 1 and d["itemCounts"]["pending"] >= 4,
               "the rest pending", d["itemCounts"])
        sfn.update_map_run(mapRunArn=run, maxConcurrency=6)
        d = wait_for(ex)
        eq((d["status"], [o["got"] for o in json.loads(d["output"])]), ("SUCCEEDED", [1, 2, 3, 4, 5, 6]),
           f"output in order ({d.get('cause')})")
        expect(d["stopDate"].timestamp() - d["startDate"].timestamp() < 4.5,
               "the raised concurrency ran the rest together", (d["startDate"], d["stopDate"]))
        m = sfn.describe_map_run(mapRunArn=run)
        eq((m["status"], m["maxConcurrency"], m["itemCounts"]["succeeded"], m["itemCounts"]["pending"]),
           ("SUCCEEDED", 6, 6, 0), "ended, counted")
        kinds = [e["type"] for e in history(ex)]
        expect("MapRunStarted" in kinds and "MapRunSucceeded" in kinds
               and not any(k.startswith("MapIteration") for k in kinds),
               "MapRun events, none per item", kinds)
        raises("ResourceNotFound", 400, sfn.describe_map_run, mapRunArn=run.replace("ShipAll", "Other"))
        bad = json.loads(json.dumps(definition))
        bad["States"]["Ship"]["Label"] = "has space"
        r = sfn.validate_state_machine_definition(definition=json.dumps(bad))
        eq(r["result"], "FAIL", "a Label with a space is refused")


def group_errors():
    with check("errors: a missing machine, a bad ARN, a STANDARD machine run synchronously"):
        raises("StateMachineDoesNotExist", 400, sfn.describe_state_machine,
               stateMachineArn=machine_arn(P + "-none"))
        raises("InvalidArn", 400, sfn.describe_state_machine, stateMachineArn="arn:nope")
        arn = sfn.create_state_machine(
            name=P + "-std", roleArn=ROLE,
            definition='{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}')["stateMachineArn"]
        raises("StateMachineTypeNotSupported", 400, sfn.start_sync_execution, stateMachineArn=arn)
        raises("InvalidExecutionInput", 400, sfn.start_sync_execution, stateMachineArn=state["arn"],
               input="not json")


def group_cli():
    with check("aws stepfunctions list-state-machines and delete-state-machine"):
        r = checks.aws(API, "stepfunctions", "list-state-machines")
        expect(P + "-orders" in [m["name"] for m in r["stateMachines"]], "listed", r)
        checks.aws(API, "stepfunctions", "delete-state-machine", "--state-machine-arn",
                   machine_arn(P + "-std"))
        raises("StateMachineDoesNotExist", 400, sfn.describe_state_machine,
               stateMachineArn=machine_arn(P + "-std"))


def cleanup():
    try:
        for m in sfn.list_state_machines()["stateMachines"]:
            if m["name"].startswith(P):
                sfn.delete_state_machine(stateMachineArn=m["stateMachineArn"])
        events.delete_rule(Name=P + "-flow", Force=True)
        checks.delete_functions_and_queues(lam, sqs, P)
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp Step Functions API at {API}, resources {P}-*", flush=True)
    checks.run([group_definitions, group_machines, group_integrations, group_async_starts,
                group_standard, group_callbacks, group_branches, group_versions, group_test_state, group_jsonata,
                group_http_task, group_map_runs, group_errors, group_cli],
               cleanup)


if __name__ == "__main__":
    main()
