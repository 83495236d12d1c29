#!/usr/bin/env python3
"""Drives a running wisp's EventBridge API through boto3 and the AWS CLI:
buses, rules, targets, PutEvents and delivery to queues, functions and
other buses, input transformation, dead-letter queues, TestEventPattern.

Environment: WISP_API, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, WISP_FIXTURES. Prints `ok - <name>` / `not ok - <name>`
per check, then `N passed, M failed`; exits 0 only if nothing failed.
"""
import http.server
import json
import os
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
P = "ev" + uuid.uuid4().hex[:6]

_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
events = boto3.client("events", endpoint_url=API, region_name=REGION, config=Config(**_config))
raw = boto3.client("events", endpoint_url=API, region_name=REGION,
                   config=Config(parameter_validation=False, **_config))
sqs = boto3.client("sqs", endpoint_url=API, region_name=REGION, config=Config(**_config))
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))
state = {}


def queue(name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def drain(url, want, timeout=20):
    return checks.drain(sqs, url, want, timeout)


def entry(source, detail, detail_type="Order Placed", **extra):
    return dict(Source=source, DetailType=detail_type, Detail=json.dumps(detail), **extra)


def group_buses():
    bus = P + "-bus"
    state["bus"] = bus
    with check("the default bus exists without being made"):
        d = events.describe_event_bus()
        eq(d["Name"], "default", "Name")
        eq(d["Arn"], f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default", "Arn")
        names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
        expect("default" in names, "default listed", names)
    with check("create_event_bus answers its ARN", critical=True):
        r = events.create_event_bus(Name=bus, Description="orders",
                                    Tags=[{"Key": "team", "Value": "shop"}])
        eq(r["EventBusArn"], f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}", "EventBusArn")
    with check("describe, by name and by ARN, with its times"):
        d = events.describe_event_bus(Name=bus)
        eq(d["Description"], "orders", "Description")
        expect(isinstance(d["CreationTime"], datetime), "CreationTime a timestamp", d)
        eq(events.describe_event_bus(Name=d["Arn"])["Name"], bus, "by ARN")
    with check("update_event_bus changes the description"):
        events.update_event_bus(Name=bus, Description="all orders")
        eq(events.describe_event_bus(Name=bus)["Description"], "all orders", "Description")
    with check("list_event_buses by prefix, paginated"):
        events.create_event_bus(Name=bus + "-2")
        r = events.list_event_buses(NamePrefix=P, Limit=1)
        eq([b["Name"] for b in r["EventBuses"]], [bus], "first page")
        r = events.list_event_buses(NamePrefix=P, Limit=1, NextToken=r["NextToken"])
        eq([b["Name"] for b in r["EventBuses"]], [bus + "-2"], "second page")
        expect("NextToken" not in r, "no more pages", r)
        events.delete_event_bus(Name=bus + "-2")
    with check("tags on a bus"):
        arn = events.describe_event_bus(Name=bus)["Arn"]
        events.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "test"}])
        events.untag_resource(ResourceARN=arn, TagKeys=["team"])
        eq(events.list_tags_for_resource(ResourceARN=arn)["Tags"],
           [{"Key": "env", "Value": "test"}], "Tags")
    with check("errors: an existing bus, a missing one, the default one, a bad name"):
        raises("ResourceAlreadyExistsException", 400, events.create_event_bus, Name=bus)
        raises("ResourceNotFoundException", 400, events.describe_event_bus, Name=P + "-none")
        raises("ValidationException", 400, events.delete_event_bus, Name="default")
        raises("ValidationException", 400, raw.create_event_bus, Name="bad name!")


def group_rules():
    bus = state["bus"]
    pattern = {"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}
    with check("put_rule answers the rule's ARN", critical=True):
        r = events.put_rule(Name="big-orders", EventBusName=bus, EventPattern=json.dumps(pattern),
                            Description="over 100")
        eq(r["RuleArn"], f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/big-orders", "RuleArn")
        r = events.put_rule(Name=P + "-default", EventPattern=json.dumps({"source": ["x"]}))
        eq(r["RuleArn"], f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{P}-default", "on default")
    with check("describe_rule shows it back"):
        d = events.describe_rule(Name="big-orders", EventBusName=bus)
        eq(json.loads(d["EventPattern"]), pattern, "EventPattern")
        eq((d["State"], d["EventBusName"], d["Description"]), ("ENABLED", bus, "over 100"), "fields")
    with check("an invalid pattern is InvalidEventPatternException"):
        for bad in ['{"source": "shop"}', '{"a": [{"numeric": [">", "x"]}]}', "not json", "{}"]:
            raises("InvalidEventPatternException", 400, events.put_rule, Name="bad",
                   EventBusName=bus, EventPattern=bad)
    with check("a rule needs a pattern or a schedule; a bus must exist"):
        raises("ValidationException", 400, events.put_rule, Name="none", EventBusName=bus)
        raises("ResourceNotFoundException", 400, events.put_rule, Name="r",
               EventBusName=P + "-nobus", EventPattern='{"source": ["a"]}')
    with check("list_rules by prefix, paginated"):
        for n in ["a1", "a2", "a3"]:
            events.put_rule(Name=n, EventBusName=bus, EventPattern='{"source": ["a"]}')
        r = events.list_rules(EventBusName=bus, NamePrefix="a", Limit=2)
        eq([x["Name"] for x in r["Rules"]], ["a1", "a2"], "page 1")
        r = events.list_rules(EventBusName=bus, NamePrefix="a", Limit=2, NextToken=r["NextToken"])
        eq([x["Name"] for x in r["Rules"]], ["a3"], "page 2")
        for n in ["a1", "a2", "a3"]:
            events.delete_rule(Name=n, EventBusName=bus)
    with check("disable_rule and enable_rule"):
        events.disable_rule(Name="big-orders", EventBusName=bus)
        eq(events.describe_rule(Name="big-orders", EventBusName=bus)["State"], "DISABLED", "State")
        events.enable_rule(Name="big-orders", EventBusName=bus)
        eq(events.describe_rule(Name="big-orders", EventBusName=bus)["State"], "ENABLED", "State")
    with check("a missing rule is ResourceNotFoundException"):
        raises("ResourceNotFoundException", 400, events.describe_rule, Name="nope",
               EventBusName=bus)
        raises("ResourceNotFoundException", 400, events.enable_rule, Name="nope",
               EventBusName=bus)


def group_delivery():
    bus = state["bus"]
    q_url, q_arn = queue(P + "-big")
    all_url, all_arn = queue(P + "-all")
    dest_url, dest_arn = queue(P + "-dest")
    fn = P + "-fn"
    with check("targets: a queue with an input transformer, a function, a constant", critical=True):
        lam.create_function(FunctionName=fn, Runtime="nodejs20.x", Handler="index.handler",
                            Role="arn:aws:iam::000000000000:role/x",
                            Code={"ZipFile": checks.zipped("node-kit")}, Timeout=10)
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": dest_arn}})
        r = events.put_targets(Rule="big-orders", EventBusName=bus, Targets=[
            {"Id": "to-queue", "Arn": q_arn, "InputTransformer": {
                "InputPathsMap": {"id": "$.detail.id", "total": "$.detail.total",
                                  "who": "$.detail.customer"},
                "InputTemplate": '{"order": <id>, "total": <total>, '
                                 '"note": "<who> spent <total>", "rule": "<aws.events.rule-name>"}'}},
            {"Id": "to-function", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"},
        ])
        eq(r["FailedEntryCount"], 0, "FailedEntryCount")
        events.put_rule(Name="everything", EventBusName=bus, EventPattern='{"source": ["shop"]}')
        events.put_targets(Rule="everything", EventBusName=bus, Targets=[
            {"Id": "path", "Arn": all_arn, "InputPath": "$.detail"}])
    with check("list_targets_by_rule and list_rule_names_by_target"):
        t = events.list_targets_by_rule(Rule="big-orders", EventBusName=bus)["Targets"]
        eq([x["Id"] for x in t], ["to-queue", "to-function"], "ids")
        eq(t[0]["InputTransformer"]["InputPathsMap"]["id"], "$.detail.id", "kept as given")
        names = events.list_rule_names_by_target(TargetArn=q_arn, EventBusName=bus)["RuleNames"]
        eq(names, ["big-orders"], "RuleNames")
    with check("put_events answers an id per entry and delivers to every matched target"):
        r = events.put_events(Entries=[
            entry("shop", {"id": 1, "total": 250, "customer": 'Zoë "Z"'}, EventBusName=bus),
            entry("shop", {"id": 2, "total": 5, "customer": "Al"}, EventBusName=bus),
            entry("other", {"id": 3, "total": 999}, EventBusName=bus),
        ])
        eq(r["FailedEntryCount"], 0, "FailedEntryCount")
        eq(len([e for e in r["Entries"] if "EventId" in e]), 3, "ids")
        state["first_id"] = r["Entries"][0]["EventId"]
        big = drain(q_url, 1)
        eq([json.loads(m["Body"]) for m in big],
           [{"order": 1, "total": 250, "note": 'Zoë "Z" spent 250', "rule": "big-orders"}],
           "the transformed big order")
        details = sorted(json.loads(m["Body"])["id"] for m in drain(all_url, 2))
        eq(details, [1, 2], "InputPath $.detail of both shop events")
    with check("a function target is invoked asynchronously with the whole event"):
        got = drain(dest_url, 1, timeout=30)
        expect(len(got) == 1, "a success destination record", got)
        record = json.loads(got[0]["Body"])
        event = record["requestPayload"]
        eq(event["id"], state["first_id"], "id")
        eq((event["source"], event["detail-type"], event["account"], event["region"]),
           ("shop", "Order Placed", ACCOUNT, REGION), "envelope")
        eq(event["detail"]["total"], 250, "detail")
        eq(record["responsePayload"]["event"]["id"], state["first_id"], "the function got it")
    with check("a disabled rule delivers nothing"):
        events.disable_rule(Name="everything", EventBusName=bus)
        events.put_events(Entries=[entry("shop", {"id": 4, "total": 1}, EventBusName=bus)])
        time.sleep(1)
        eq(drain(all_url, 1, timeout=2), [], "nothing")
        events.enable_rule(Name="everything", EventBusName=bus)
    with check("a bus target forwards the event to another bus"):
        fwd = P + "-fwd"
        events.create_event_bus(Name=fwd)
        f_url, f_arn = queue(P + "-fwdq")
        events.put_rule(Name="in", EventBusName=fwd, EventPattern='{"detail-type": ["Forward"]}')
        events.put_targets(Rule="in", EventBusName=fwd, Targets=[{"Id": "q", "Arn": f_arn}])
        events.put_rule(Name="out", EventBusName=bus, EventPattern='{"detail-type": ["Forward"]}')
        events.put_targets(Rule="out", EventBusName=bus, Targets=[
            {"Id": "bus", "Arn": events.describe_event_bus(Name=fwd)["Arn"]}])
        r = events.put_events(Entries=[entry("fw", {"n": 1}, "Forward", EventBusName=bus)])
        got = drain(f_url, 1)
        eq([json.loads(m["Body"])["id"] for m in got], [r["Entries"][0]["EventId"]], "same event")
    with check("a loop of buses forwarding to each other ends, in a dead letter"):
        a, b = P + "-loop-a", P + "-loop-b"
        l_url, l_arn = queue(P + "-loopdlq")
        for x in (a, b):
            events.create_event_bus(Name=x)
        for src, dst in ((a, b), (b, a)):
            events.put_rule(Name="fwd", EventBusName=src, EventPattern='{"source": ["loop"]}')
            events.put_targets(Rule="fwd", EventBusName=src, Targets=[{
                "Id": "next", "Arn": events.describe_event_bus(Name=dst)["Arn"],
                "DeadLetterConfig": {"Arn": l_arn}}])
        events.put_events(Entries=[entry("loop", {"n": 1}, EventBusName=a)])
        got = drain(l_url, 1)
        expect(len(got) == 1, "one dead letter", got)
        msg = got[0]["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]
        expect("loop" in msg, "the loop named", msg)
        eq(drain(l_url, 1, timeout=2), [], "and only one")
    with check("remove_targets; a rule with targets is not deleted unless forced"):
        raises("ValidationException", 400, events.delete_rule, Name="everything", EventBusName=bus)
        r = events.remove_targets(Rule="everything", EventBusName=bus, Ids=["path", "nope"])
        eq(r["FailedEntryCount"], 1, "FailedEntryCount")
        eq(r["FailedEntries"][0]["TargetId"], "nope", "the missing one")
        events.delete_rule(Name="everything", EventBusName=bus)
        events.delete_rule(Name="out", EventBusName=bus, Force=True)


def group_dead_letters():
    bus = state["bus"]
    dlq_url, dlq_arn = queue(P + "-dlq")
    with check("a target that cannot be reached sends the event to its DLQ with AWS's attributes"):
        missing_fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{P}-missing"
        events.put_rule(Name="doomed", EventBusName=bus, EventPattern='{"source": ["doom"]}')
        events.put_targets(Rule="doomed", EventBusName=bus, Targets=[{
            "Id": "gone", "Arn": missing_fn, "DeadLetterConfig": {"Arn": dlq_arn},
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}}])
        events.put_events(Entries=[entry("doom", {"n": 1}, EventBusName=bus)])
        got = drain(dlq_url, 1)
        expect(len(got) == 1, "one dead letter", got)
        a = {k: v["StringValue"] for k, v in got[0]["MessageAttributes"].items()}
        eq(a["ERROR_CODE"], "RESOURCE_NOT_FOUND", "ERROR_CODE")
        eq(a["TARGET_ARN"], missing_fn, "TARGET_ARN")
        eq(a["RULE_ARN"], f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/doomed", "RULE_ARN")
        expect("ERROR_MESSAGE" in a, "an ERROR_MESSAGE", a)
        eq(json.loads(got[0]["Body"])["source"], "doom", "the event")
    with check("bad targets are refused: a bad retry policy, two inputs, an unknown ARN"):
        r = events.put_targets(Rule="doomed", EventBusName=bus, Targets=[
            {"Id": "a", "Arn": dlq_arn, "Input": "{}", "InputPath": "$.detail"},
            {"Id": "b", "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/x"},
        ])
        eq(r["FailedEntryCount"], 2, "FailedEntryCount")
        raises("ValidationException", 400, raw.put_targets, Rule="doomed", EventBusName=bus,
               Targets=[{"Id": "c", "Arn": dlq_arn, "RetryPolicy": {"MaximumRetryAttempts": 186}}])


def group_put_events_errors():
    bus = state["bus"]
    with check("entries are refused one by one with AWS's codes"):
        r = raw.put_events(Entries=[
            {"DetailType": "x", "Detail": "{}"},
            {"Source": "s", "DetailType": "x", "Detail": "[1]"},
            {"Source": "s", "DetailType": "x", "Detail": "{}", "EventBusName": P + "-none"},
            {"Source": "aws.s3", "DetailType": "x", "Detail": "{}"},
            {"Source": "s", "DetailType": "x", "Detail": "{}", "EventBusName": bus},
        ])
        eq(r["FailedEntryCount"], 4, "FailedEntryCount")
        eq([e.get("ErrorCode") for e in r["Entries"]],
           ["InvalidArgument", "MalformedDetail", "ResourceNotFoundException",
            "NotAuthorizedForSourceException", None], "codes")
        expect("EventId" in r["Entries"][4], "the good one accepted", r["Entries"][4])
    with check("more than 10 entries, or over 256 KiB, is a ValidationException"):
        raises("ValidationException", 400, raw.put_events,
               Entries=[entry("s", {})] * 11)
        big = {"x": "y" * (256 * 1024)}
        raises("ValidationException", 400, raw.put_events, Entries=[entry("s", big)])
    with check("a given Time is kept, as RFC 3339"):
        url, arn = queue(P + "-time")
        events.put_rule(Name="time", EventBusName=bus, EventPattern='{"source": ["clock"]}')
        events.put_targets(Rule="time", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        t = datetime(2024, 2, 29, 12, 30, 5, tzinfo=timezone.utc)
        events.put_events(Entries=[entry("clock", {}, Time=t, EventBusName=bus,
                                         Resources=["arn:aws:x"])])
        got = drain(url, 1)
        body = json.loads(got[0]["Body"])
        eq((body["time"], body["resources"]), ("2024-02-29T12:30:05Z", ["arn:aws:x"]), "time")
        events.delete_rule(Name="time", EventBusName=bus, Force=True)


def group_archives():
    bus = state["bus"]
    bus_arn = events.describe_event_bus(Name=bus)["Arn"]
    url, arn = queue(P + "-replayed")
    name = P + "-arch"
    with check("create_archive answers its ARN; bad input is refused", critical=True):
        r = events.create_archive(ArchiveName=name, EventSourceArn=bus_arn, RetentionDays=1,
                                  EventPattern=json.dumps({"source": ["archived"]}),
                                  Description="shop events")
        eq(r["ArchiveArn"], f"arn:aws:events:{REGION}:{ACCOUNT}:archive/{name}", "ArchiveArn")
        eq(r["State"], "ENABLED", "State")
        raises("ResourceAlreadyExistsException", 400, events.create_archive, ArchiveName=name,
               EventSourceArn=bus_arn)
        raises("InvalidEventPatternException", 400, events.create_archive,
               ArchiveName=name + "-x", EventSourceArn=bus_arn, EventPattern='{"a": 1}')
        raises("ResourceNotFoundException", 400, events.create_archive, ArchiveName=name + "-y",
               EventSourceArn=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{P}-nobus")
    with check("matching events are archived as PutEvents answers"):
        state["t0"] = datetime.now(timezone.utc) - timedelta(seconds=2)
        r = events.put_events(Entries=[entry("archived", {"n": n}, EventBusName=bus)
                                       for n in range(3)] +
                              [entry("not-archived", {"n": 9}, EventBusName=bus)])
        eq(r["FailedEntryCount"], 0, "FailedEntryCount")
        d = events.describe_archive(ArchiveName=name)
        eq((d["EventCount"], d["RetentionDays"], d["EventSourceArn"]), (3, 1, bus_arn), "counts")
        expect(d["SizeBytes"] > 0, "a size", d)
    with check("list_archives and update_archive"):
        r = events.list_archives(NamePrefix=P, EventSourceArn=bus_arn)
        eq([a["ArchiveName"] for a in r["Archives"]], [name], "listed")
        events.update_archive(ArchiveName=name, Description="all", RetentionDays=7)
        d = events.describe_archive(ArchiveName=name)
        eq((d["Description"], d["RetentionDays"]), ("all", 7), "updated")
    with check("a replay sends the archived events back to the rules named, with replay-name"):
        events.put_rule(Name="replayed", EventBusName=bus,
                        EventPattern='{"source": ["archived"]}')
        events.put_targets(Rule="replayed", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        events.put_rule(Name="not-replayed", EventBusName=bus,
                        EventPattern='{"source": ["archived"]}')
        drain(url, 10, timeout=2)
        time.sleep(1.1)
        r = events.start_replay(
            ReplayName=P + "-r1", EventSourceArn=f"arn:aws:events:{REGION}:{ACCOUNT}:archive/{name}",
            EventStartTime=state["t0"], EventEndTime=datetime.now(timezone.utc),
            Destination={"Arn": bus_arn, "FilterArns": [
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/replayed"]})
        eq(r["State"], "STARTING", "State")
        got = drain(url, 3)
        bodies = [json.loads(m["Body"]) for m in got]
        eq(sorted(b["detail"]["n"] for b in bodies), [0, 1, 2], "the archived events")
        eq({b["replay-name"] for b in bodies}, {P + "-r1"}, "replay-name")
        deadline = time.time() + 10
        while time.time() < deadline:
            d = events.describe_replay(ReplayName=P + "-r1")
            if d["State"] == "COMPLETED":
                break
            time.sleep(0.2)
        eq(d["State"], "COMPLETED", "State")
        expect("ReplayEndTime" in d and "EventLastReplayedTime" in d, "progress times", d)
        eq(d["Destination"]["FilterArns"],
           [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/replayed"], "FilterArns")
        eq(events.describe_archive(ArchiveName=name)["EventCount"], 3, "replays not re-archived")
    with check("list_replays; cancelling a finished replay is IllegalStatusException"):
        r = events.list_replays(NamePrefix=P)
        eq([(x["ReplayName"], x["State"]) for x in r["Replays"]], [(P + "-r1", "COMPLETED")],
           "listed")
        raises("IllegalStatusException", 400, events.cancel_replay, ReplayName=P + "-r1")
        raises("ResourceAlreadyExistsException", 400, events.start_replay, ReplayName=P + "-r1",
               EventSourceArn=f"arn:aws:events:{REGION}:{ACCOUNT}:archive/{name}",
               EventStartTime=state["t0"], EventEndTime=datetime.now(timezone.utc),
               Destination={"Arn": bus_arn})
    with check("a replay is refused: times backwards or ahead, another bus, no archive"):
        src = f"arn:aws:events:{REGION}:{ACCOUNT}:archive/{name}"
        now = datetime.now(timezone.utc)
        for kwargs in [dict(EventStartTime=now, EventEndTime=now - timedelta(minutes=1)),
                       dict(EventStartTime=now, EventEndTime=now + timedelta(hours=1)),
                       dict(EventStartTime=state["t0"], EventEndTime=now,
                            Destination={"Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:"
                                                "event-bus/default"})]:
            kwargs.setdefault("Destination", {"Arn": bus_arn})
            raises("ValidationException", 400, events.start_replay, ReplayName=P + "-bad",
                   EventSourceArn=src, **kwargs)
        raises("ResourceNotFoundException", 400, events.start_replay, ReplayName=P + "-bad",
               EventSourceArn=src + "-none", EventStartTime=state["t0"], EventEndTime=now,
               Destination={"Arn": bus_arn})
    with check("delete_archive"):
        events.delete_archive(ArchiveName=name)
        raises("ResourceNotFoundException", 400, events.describe_archive, ArchiveName=name)


class _Hook(http.server.BaseHTTPRequestHandler):
    """Records each request; answers what `answers` says for its path."""
    seen = []
    answers = {}

    def _any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        _Hook.seen.append({"method": self.command, "path": self.path, "body": body,
                           "headers": {k.lower(): v for k, v in self.headers.items()}})
        path = self.path.split("?")[0]
        if path == "/token":
            status, out = 200, json.dumps({"access_token": "tok-1", "expires_in": 3600})
        else:
            queue_ = _Hook.answers.get(path, [])
            status = queue_.pop(0) if queue_ else 200
            out = "{}"
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    do_POST = do_PUT = do_GET = _any

    def log_message(self, *args):
        pass


def hook_requests(path, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = [r for r in _Hook.seen if r["path"].split("?")[0] == path]
        if len(got) >= want:
            return got
        time.sleep(0.1)
    return [r for r in _Hook.seen if r["path"].split("?")[0] == path]


def group_api_destinations():
    bus = state["bus"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    conn = P + "-conn"
    with check("create_connection and describe_connection, secrets not shown", critical=True):
        r = events.create_connection(Name=conn, AuthorizationType="API_KEY", AuthParameters={
            "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k1"},
            "InvocationHttpParameters": {"HeaderParameters": [
                {"Key": "x-team", "Value": "shop", "IsValueSecret": False}]}})
        expect(r["ConnectionArn"].startswith(
            f"arn:aws:events:{REGION}:{ACCOUNT}:connection/{conn}/"), "ConnectionArn", r)
        eq(r["ConnectionState"], "AUTHORIZED", "ConnectionState")
        state["conn_arn"] = r["ConnectionArn"]
        d = events.describe_connection(Name=conn)
        eq(d["AuthParameters"]["ApiKeyAuthParameters"], {"ApiKeyName": "x-api-key"}, "no secret")
        eq([c["Name"] for c in events.list_connections(NamePrefix=P)["Connections"]], [conn],
           "listed")
    with check("create_api_destination; a rule delivers to it with the connection's auth"):
        r = events.create_api_destination(
            Name=P + "-hook", ConnectionArn=state["conn_arn"], HttpMethod="POST",
            InvocationEndpoint=base + "/hooks/*", InvocationRateLimitPerSecond=50)
        state["dest_arn"] = r["ApiDestinationArn"]
        d = events.describe_api_destination(Name=P + "-hook")
        eq((d["HttpMethod"], d["InvocationRateLimitPerSecond"]), ("POST", 50), "fields")
        events.put_rule(Name="hook", EventBusName=bus, EventPattern='{"source": ["hook"]}')
        events.put_targets(Rule="hook", EventBusName=bus, Targets=[{
            "Id": "api", "Arn": state["dest_arn"], "InputPath": "$.detail",
            "HttpParameters": {"PathParameterValues": ["orders"],
                               "QueryStringParameters": {"v": "1"},
                               "HeaderParameters": {"x-extra": "yes"}}}])
        events.put_events(Entries=[entry("hook", {"order": 1}, EventBusName=bus)])
        got = hook_requests("/hooks/orders", 1)
        expect(len(got) == 1, "one request", _Hook.seen)
        h = got[0]["headers"]
        eq((h.get("x-api-key"), h.get("x-team"), h.get("x-extra")), ("k1", "shop", "yes"),
           "headers")
        eq(got[0]["path"], "/hooks/orders?v=1", "path and query")
        eq(json.loads(got[0]["body"]), {"order": 1}, "body")
    with check("a 5xx answer is tried again; basic auth after update_connection"):
        events.update_connection(Name=conn, AuthorizationType="BASIC", AuthParameters={
            "BasicAuthParameters": {"Username": "u", "Password": "p"}})
        _Hook.answers["/hooks/flaky"] = [503]
        events.put_targets(Rule="hook", EventBusName=bus, Targets=[{
            "Id": "api", "Arn": state["dest_arn"],
            "HttpParameters": {"PathParameterValues": ["flaky"]}}])
        events.put_events(Entries=[entry("hook", {"order": 2}, EventBusName=bus)])
        got = hook_requests("/hooks/flaky", 2)
        eq(len(got), 2, "two tries")
        eq(got[1]["headers"].get("authorization"), "Basic dTpw", "basic auth")
    with check("an OAuth connection fetches a token and sends it"):
        events.update_connection(Name=conn, AuthorizationType="OAUTH_CLIENT_CREDENTIALS",
                                 AuthParameters={"OAuthParameters": {
                                     "ClientParameters": {"ClientID": "id", "ClientSecret": "s"},
                                     "AuthorizationEndpoint": base + "/token",
                                     "HttpMethod": "POST"}})
        events.put_targets(Rule="hook", EventBusName=bus, Targets=[{
            "Id": "api", "Arn": state["dest_arn"],
            "HttpParameters": {"PathParameterValues": ["oauth"]}}])
        events.put_events(Entries=[entry("hook", {"order": 3}, EventBusName=bus)])
        got = hook_requests("/hooks/oauth", 1)
        eq(got[0]["headers"].get("authorization"), "Bearer tok-1", "bearer token")
        token = hook_requests("/token", 1)[0]
        expect("grant_type=client_credentials" in token["body"], "a client credentials grant",
               token)
    with check("a 4xx answer is not tried again: the event goes to the DLQ"):
        dlq_url, dlq_arn = queue(P + "-hookdlq")
        _Hook.answers["/hooks/bad"] = [400]
        events.put_targets(Rule="hook", EventBusName=bus, Targets=[{
            "Id": "api", "Arn": state["dest_arn"], "DeadLetterConfig": {"Arn": dlq_arn},
            "HttpParameters": {"PathParameterValues": ["bad"]}}])
        events.put_events(Entries=[entry("hook", {"order": 4}, EventBusName=bus)])
        got = drain(dlq_url, 1)
        expect(len(got) == 1, "one dead letter", got)
        a = {k: v["StringValue"] for k, v in got[0]["MessageAttributes"].items()}
        eq(a["ERROR_CODE"], "SDK_CLIENT_ERROR", "ERROR_CODE")
        expect("400" in a["ERROR_MESSAGE"], "the status in the message", a)
        eq(len(hook_requests("/hooks/bad", 1)), 1, "one try")
    with check("bad connections and destinations are refused"):
        raises("ValidationException", 400, raw.create_connection, Name=P + "-x",
               AuthorizationType="API_KEY", AuthParameters={"ApiKeyAuthParameters": {
                   "ApiKeyName": "k", "ApiKeyValue": ""}})
        raises("ValidationException", 400, raw.create_connection, Name=P + "-x",
               AuthorizationType="TOKEN", AuthParameters={})
        raises("ValidationException", 400, events.create_api_destination, Name=P + "-x",
               ConnectionArn=state["conn_arn"], HttpMethod="POST",
               InvocationEndpoint="ftp://example.com")
        raises("ResourceNotFoundException", 400, events.create_api_destination, Name=P + "-x",
               ConnectionArn=state["conn_arn"] + "x", HttpMethod="POST",
               InvocationEndpoint="https://example.com")
        raises("ValidationException", 400, events.delete_connection, Name=conn)
    with check("delete_api_destination, deauthorize_connection, delete_connection"):
        events.delete_rule(Name="hook", EventBusName=bus, Force=True)
        events.delete_api_destination(Name=P + "-hook")
        eq(events.deauthorize_connection(Name=conn)["ConnectionState"], "DEAUTHORIZED", "state")
        events.delete_connection(Name=conn)
        raises("ResourceNotFoundException", 400, events.describe_connection, Name=conn)
    server.shutdown()


def group_test_pattern():
    event = {"id": "1", "account": ACCOUNT, "source": "shop", "time": "2024-01-01T00:00:00Z",
             "region": REGION, "resources": [], "detail-type": "t", "detail": {"n": 5}}
    with check("test_event_pattern matches and does not"):
        r = events.test_event_pattern(EventPattern='{"detail": {"n": [{"numeric": [">", 1]}]}}',
                                      Event=json.dumps(event))
        eq(r["Result"], True, "match")
        r = events.test_event_pattern(EventPattern='{"source": [{"prefix": "x"}]}',
                                      Event=json.dumps(event))
        eq(r["Result"], False, "no match")
    with check("test_event_pattern refuses a bad pattern and an event missing fields"):
        raises("InvalidEventPatternException", 400, events.test_event_pattern,
               EventPattern='{"a": 1}', Event=json.dumps(event))
        raises("ValidationException", 400, events.test_event_pattern,
               EventPattern='{"source": ["a"]}', Event='{"source": "a"}')


def group_cli():
    bus = state["bus"]
    with check("aws events put-events and list-rules"):
        entries = json.dumps([{"Source": "cli", "DetailType": "t", "Detail": '{"a": 1}',
                               "EventBusName": bus}])
        r = checks.aws(API, "events", "put-events", "--entries", entries)
        eq(r["FailedEntryCount"], 0, "FailedEntryCount")
        r = checks.aws(API, "events", "list-rules", "--event-bus-name", bus)
        expect("big-orders" in [x["Name"] for x in r["Rules"]], "big-orders listed", r)


def cleanup():
    try:
        for b in events.list_event_buses(NamePrefix=P)["EventBuses"]:
            for r in events.list_rules(EventBusName=b["Name"])["Rules"]:
                events.delete_rule(Name=r["Name"], EventBusName=b["Name"], Force=True)
            events.delete_event_bus(Name=b["Name"])
        events.delete_rule(Name=P + "-default")
        checks.delete_functions_and_queues(lam, sqs, P)
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp EventBridge API at {API}, resources {P}-*", flush=True)
    checks.run([group_buses, group_rules, group_delivery, group_dead_letters,
                group_put_events_errors, group_archives, group_api_destinations, group_test_pattern,
                group_cli], cleanup)


if __name__ == "__main__":
    main()
