#!/usr/bin/env python3
"""Drives a running wisp's EventBridge Scheduler API (and scheduled
EventBridge rules) through boto3 and the AWS CLI: groups, schedules, their
checks and errors, and ticks fired to queues, functions and buses, with
context attributes, time zones, ActionAfterCompletion and dead letters.

Environment: WISP_API, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, WISP_FIXTURES. Prints `ok - <name>` / `not ok - <name>`
per check, then `N passed, M failed`; exits 0 only if nothing failed.
"""
import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import boto3
from botocore.config import Config

import checks
from checks import check, eq, expect, raises

API = os.environ["WISP_API"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ACCOUNT = "000000000000"
P = "sc" + uuid.uuid4().hex[:6]
ROLE = f"arn:aws:iam::{ACCOUNT}:role/scheduler"
OFF = {"Mode": "OFF"}

_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
scheduler = boto3.client("scheduler", endpoint_url=API, region_name=REGION,
                         config=Config(**_config))
raw = boto3.client("scheduler", endpoint_url=API, region_name=REGION,
                   config=Config(parameter_validation=False, **_config))
events = boto3.client("events", endpoint_url=API, region_name=REGION, config=Config(**_config))
sqs = boto3.client("sqs", endpoint_url=API, region_name=REGION, config=Config(**_config))
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))
state = {}


def queue(name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def drain(url, want, timeout=20):
    return checks.drain(sqs, url, want, timeout)


def at(seconds, zone="UTC"):
    """An at() expression `seconds` from now, in `zone`'s local time."""
    t = datetime.now(ZoneInfo(zone)) + timedelta(seconds=seconds)
    return f"at({t.strftime('%Y-%m-%dT%H:%M:%S')})"


def group_scheduled_rule():
    """Set up first: a rule on cron(* * * * ? *) fires within a minute; it is
    checked last, while the other groups run."""
    url, arn = queue(P + "-rule")
    state["rule_queue"] = url
    with check("put_rule takes a ScheduleExpression and refuses a bad one", critical=True):
        r = events.put_rule(Name=P + "-minutely", ScheduleExpression="cron(* * * * ? *)")
        state["rule_arn"] = r["RuleArn"]
        events.put_targets(Rule=P + "-minutely", Targets=[{"Id": "q", "Arn": arn}])
        eq(events.describe_rule(Name=P + "-minutely")["ScheduleExpression"],
           "cron(* * * * ? *)", "ScheduleExpression")
        for bad in ["rate(1 minutes)", "cron(0 0 * * * *)", "at(2030-01-01T00:00:00)", "daily"]:
            raises("ValidationException", 400, events.put_rule, Name=P + "-bad",
                   ScheduleExpression=bad)


def group_groups():
    g = P + "-group"
    state["group"] = g
    with check("the default group exists without being made"):
        d = scheduler.get_schedule_group(Name="default")
        eq((d["Name"], d["State"]), ("default", "ACTIVE"), "default")
        eq(d["Arn"], f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/default", "Arn")
    with check("create_schedule_group answers its ARN", critical=True):
        r = scheduler.create_schedule_group(Name=g, Tags=[{"Key": "team", "Value": "ops"}])
        eq(r["ScheduleGroupArn"], f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{g}",
           "ScheduleGroupArn")
        d = scheduler.get_schedule_group(Name=g)
        expect(isinstance(d["CreationDate"], datetime), "CreationDate a timestamp", d)
    with check("list_schedule_groups by prefix, paginated"):
        scheduler.create_schedule_group(Name=g + "-2")
        r = scheduler.list_schedule_groups(NamePrefix=P, MaxResults=1)
        eq([x["Name"] for x in r["ScheduleGroups"]], [g], "page 1")
        r = scheduler.list_schedule_groups(NamePrefix=P, MaxResults=1, NextToken=r["NextToken"])
        eq([x["Name"] for x in r["ScheduleGroups"]], [g + "-2"], "page 2")
    with check("tags on a group"):
        arn = scheduler.get_schedule_group(Name=g)["Arn"]
        scheduler.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "test"}])
        scheduler.untag_resource(ResourceArn=arn, TagKeys=["team"])
        eq(scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"],
           [{"Key": "env", "Value": "test"}], "Tags")
    with check("errors: a taken name, a missing group, the default group, a bad name"):
        raises("ConflictException", 409, scheduler.create_schedule_group, Name=g)
        raises("ConflictException", 409, scheduler.create_schedule_group, Name="default")
        raises("ResourceNotFoundException", 404, scheduler.get_schedule_group, Name=P + "-none")
        raises("ValidationException", 400, scheduler.delete_schedule_group, Name="default")
        raises("ValidationException", 400, raw.create_schedule_group, Name="bad name!")


def group_schedules():
    g = state["group"]
    url, arn = queue(P + "-q")
    state["queue"] = (url, arn)
    target = {"Arn": arn, "RoleArn": ROLE, "Input": '{"job": "report"}'}
    with check("create_schedule answers its ARN", critical=True):
        r = scheduler.create_schedule(
            Name="nightly", GroupName=g, ScheduleExpression="cron(0 3 * * ? *)",
            ScheduleExpressionTimezone="Europe/Berlin", FlexibleTimeWindow={
                "Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
            Target=target, Description="the nightly report",
            StartDate=datetime(2026, 1, 1, tzinfo=timezone.utc),
            EndDate=datetime(2099, 1, 1, tzinfo=timezone.utc))
        eq(r["ScheduleArn"], f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{g}/nightly",
           "ScheduleArn")
    with check("get_schedule shows it back, with AWS's defaults filled in"):
        d = scheduler.get_schedule(Name="nightly", GroupName=g)
        eq((d["ScheduleExpression"], d["ScheduleExpressionTimezone"], d["State"]),
           ("cron(0 3 * * ? *)", "Europe/Berlin", "ENABLED"), "expression")
        eq(d["FlexibleTimeWindow"], {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}, "window")
        eq(d["Target"]["RetryPolicy"],
           {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}, "RetryPolicy")
        eq(d["StartDate"], datetime(2026, 1, 1, tzinfo=timezone.utc), "StartDate")
        eq(d["ActionAfterCompletion"], "NONE", "ActionAfterCompletion")
        eq(d["Description"], "the nightly report", "Description")
    with check("update_schedule replaces the definition"):
        scheduler.update_schedule(Name="nightly", GroupName=g, ScheduleExpression="rate(2 hours)",
                                  FlexibleTimeWindow=OFF, Target=target, State="DISABLED")
        d = scheduler.get_schedule(Name="nightly", GroupName=g)
        eq((d["ScheduleExpression"], d["State"], d["FlexibleTimeWindow"]),
           ("rate(2 hours)", "DISABLED", OFF), "updated")
        expect("Description" not in d, "the description gone with the old definition", d)
    with check("list_schedules by group, prefix and state"):
        scheduler.create_schedule(Name="hourly", GroupName=g, ScheduleExpression="rate(1 hour)",
                                  FlexibleTimeWindow=OFF, Target=target)
        r = scheduler.list_schedules(GroupName=g)
        eq([(s["Name"], s["State"]) for s in r["Schedules"]],
           [("hourly", "ENABLED"), ("nightly", "DISABLED")], "all")
        eq(r["Schedules"][0]["Target"], {"Arn": arn}, "target summary")
        r = scheduler.list_schedules(GroupName=g, State="ENABLED")
        eq([s["Name"] for s in r["Schedules"]], ["hourly"], "enabled")
        r = scheduler.list_schedules(GroupName=g, NamePrefix="n", MaxResults=1)
        eq([s["Name"] for s in r["Schedules"]], ["nightly"], "prefix")
    with check("bad schedules are refused with ValidationException"):
        bad = [
            dict(ScheduleExpression="rate(1 minutes)"),
            dict(ScheduleExpression="cron(0 0 * * * *)"),
            dict(ScheduleExpression="cron(0 0 ? * 2#6 *)"),
            dict(ScheduleExpression="rate(1 hour)", ScheduleExpressionTimezone="Mars/Base"),
            dict(ScheduleExpression="rate(1 hour)", Target={
                "Arn": "arn:aws:scheduler:::aws-sdk:sqs:sendMessage", "RoleArn": ROLE}),
            dict(ScheduleExpression="rate(1 hour)", Target={
                "Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default", "RoleArn": ROLE}),
            dict(ScheduleExpression="rate(1 hour)", StartDate=datetime(2030, 1, 1),
                 EndDate=datetime(2029, 1, 1)),
            dict(ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={
                "Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1441}),
        ]
        for b in bad:
            kwargs = dict(Name="bad", GroupName=g, FlexibleTimeWindow=OFF, Target=target)
            kwargs.update(b)
            raises("ValidationException", 400, raw.create_schedule, **kwargs)
    with check("errors: a taken name, a missing schedule or group"):
        raises("ConflictException", 409, scheduler.create_schedule, Name="hourly", GroupName=g,
               ScheduleExpression="rate(1 hour)", FlexibleTimeWindow=OFF, Target=target)
        raises("ResourceNotFoundException", 404, scheduler.get_schedule, Name="nope",
               GroupName=g)
        raises("ResourceNotFoundException", 404, scheduler.create_schedule, Name="x",
               GroupName=P + "-nogroup", ScheduleExpression="rate(1 hour)",
               FlexibleTimeWindow=OFF, Target=target)
        raises("ResourceNotFoundException", 404, scheduler.delete_schedule, Name="nope",
               GroupName=g)
    with check("delete_schedule, and delete_schedule_group takes its schedules with it"):
        scheduler.delete_schedule(Name="hourly", GroupName=g)
        eq([s["Name"] for s in scheduler.list_schedules(GroupName=g)["Schedules"]],
           ["nightly"], "left")
        scheduler.delete_schedule_group(Name=g + "-2")
        raises("ResourceNotFoundException", 404, scheduler.get_schedule_group, Name=g + "-2")


def group_firing():
    url, arn = state["queue"]
    with check("an at() schedule fires once to a queue, with its context attributes filled in"):
        scheduler.create_schedule(
            Name=P + "-once", ScheduleExpression=at(2), FlexibleTimeWindow=OFF,
            ActionAfterCompletion="DELETE", Target={
                "Arn": arn, "RoleArn": ROLE,
                "Input": json.dumps({"arn": "<aws.scheduler.schedule-arn>",
                                     "at": "<aws.scheduler.scheduled-time>",
                                     "try": "<aws.scheduler.attempt-number>"})})
        got = drain(url, 1)
        expect(len(got) == 1, "one message", got)
        body = json.loads(got[0]["Body"])
        eq(body["arn"], f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{P}-once",
           "schedule ARN")
        expect(body["at"].endswith("Z") and "T" in body["at"], "an RFC 3339 time", body)
        eq(body["try"], "1", "attempt number")
        eq(drain(url, 1, timeout=3), [], "no second firing")
    with check("ActionAfterCompletion DELETE removes the schedule once it is done"):
        deadline = time.time() + 10
        while time.time() < deadline:
            names = [s["Name"] for s in scheduler.list_schedules(NamePrefix=P)["Schedules"]]
            if P + "-once" not in names:
                break
            time.sleep(0.3)
        expect(P + "-once" not in names, "the schedule gone", names)
    with check("at() is read in the schedule's time zone"):
        scheduler.create_schedule(
            Name=P + "-tokyo", ScheduleExpression=at(2, "Asia/Tokyo"),
            ScheduleExpressionTimezone="Asia/Tokyo", FlexibleTimeWindow=OFF,
            Target={"Arn": arn, "RoleArn": ROLE, "Input": '{"zone": "tokyo"}'})
        got = drain(url, 1)
        eq([json.loads(m["Body"]) for m in got], [{"zone": "tokyo"}], "fired on time")
        eq(scheduler.get_schedule(Name=P + "-tokyo")["State"], "ENABLED",
           "kept (ActionAfterCompletion NONE)")
    with check("a bus target gets an event with the Input as detail"):
        b_url, b_arn = queue(P + "-busq")
        events.put_rule(Name=P + "-ticks", EventPattern=json.dumps({"source": ["billing"]}))
        events.put_targets(Rule=P + "-ticks", Targets=[{"Id": "q", "Arn": b_arn}])
        scheduler.create_schedule(
            Name=P + "-bus", ScheduleExpression=at(2), FlexibleTimeWindow=OFF, Target={
                "Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default", "RoleArn": ROLE,
                "Input": '{"run": "invoices"}',
                "EventBridgeParameters": {"DetailType": "Invoice Run", "Source": "billing"}})
        got = drain(b_url, 1)
        expect(len(got) == 1, "one event", got)
        e = json.loads(got[0]["Body"])
        eq((e["source"], e["detail-type"], e["detail"]),
           ("billing", "Invoice Run", {"run": "invoices"}), "event")
        eq(e["resources"], [f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{P}-bus"],
           "resources")
    with check("a function target is invoked with the Input"):
        fn = P + "-fn"
        d_url, d_arn = queue(P + "-dest")
        lam.create_function(FunctionName=fn, Runtime="nodejs20.x", Handler="index.handler",
                            Role=ROLE, Code={"ZipFile": checks.zipped("node-kit")}, Timeout=10)
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": d_arn}})
        scheduler.create_schedule(
            Name=P + "-fn", ScheduleExpression=at(2), FlexibleTimeWindow=OFF, Target={
                "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}", "RoleArn": ROLE,
                "Input": '{"task": "cleanup"}'})
        got = drain(d_url, 1, timeout=30)
        expect(len(got) == 1, "a success record", got)
        eq(json.loads(got[0]["Body"])["requestPayload"], {"task": "cleanup"}, "the payload")
    with check("a target that fails goes to its DLQ with the scheduler's attributes"):
        dlq_url, dlq_arn = queue(P + "-dlq")
        missing = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{P}-missing"
        scheduler.create_schedule(
            Name=P + "-doomed", ScheduleExpression=at(2), FlexibleTimeWindow=OFF, Target={
                "Arn": missing, "RoleArn": ROLE, "Input": '{"n": 1}',
                "DeadLetterConfig": {"Arn": dlq_arn},
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}})
        got = drain(dlq_url, 1)
        expect(len(got) == 1, "one dead letter", got)
        a = {k: v["StringValue"] for k, v in got[0]["MessageAttributes"].items()}
        eq(a["ERROR_CODE"], "RESOURCE_NOT_FOUND", "ERROR_CODE")
        eq(a["TARGET_ARN"], missing, "TARGET_ARN")
        eq(a["SCHEDULE_ARN"],
           f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{P}-doomed", "SCHEDULE_ARN")
        expect("EXECUTION_ID" in a and "SCHEDULED_TIME" in a, "the run named", a)
        eq(json.loads(got[0]["Body"]), {"n": 1}, "the input")
    with check("a disabled schedule does not fire"):
        scheduler.create_schedule(
            Name=P + "-off", ScheduleExpression=at(1), FlexibleTimeWindow=OFF, State="DISABLED",
            Target={"Arn": arn, "RoleArn": ROLE, "Input": '{"off": true}'})
        eq(drain(url, 1, timeout=3), [], "nothing")


def group_cli():
    with check("aws scheduler list-schedules and get-schedule"):
        r = checks.aws(API, "scheduler", "list-schedules", "--name-prefix", P)
        names = [s["Name"] for s in r["Schedules"]]
        expect(P + "-tokyo" in names, "the tokyo schedule listed", names)
        r = checks.aws(API, "scheduler", "get-schedule", "--name", P + "-tokyo")
        eq(r["ScheduleExpressionTimezone"], "Asia/Tokyo", "zone")


def group_scheduled_rule_fired():
    with check("a scheduled rule fires a Scheduled Event to its targets"):
        got = drain(state["rule_queue"], 1, timeout=75)
        expect(len(got) == 1, "a tick within a minute", got)
        e = json.loads(got[0]["Body"])
        eq((e["source"], e["detail-type"], e["detail"], e["resources"]),
           ("aws.events", "Scheduled Event", {}, [state["rule_arn"]]), "event")
        expect(e["time"].endswith(":00Z"), "on the minute", e["time"])


def cleanup():
    try:
        for s in scheduler.list_schedules(NamePrefix=P)["Schedules"]:
            scheduler.delete_schedule(Name=s["Name"], GroupName=s["GroupName"])
        for g in scheduler.list_schedule_groups(NamePrefix=P)["ScheduleGroups"]:
            scheduler.delete_schedule_group(Name=g["Name"])
        for r in events.list_rules(NamePrefix=P)["Rules"]:
            events.delete_rule(Name=r["Name"], Force=True)
        checks.delete_functions_and_queues(lam, sqs, P)
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp EventBridge Scheduler API at {API}, resources {P}-*", flush=True)
    checks.run([group_scheduled_rule, group_groups, group_schedules, group_firing, group_cli,
                group_scheduled_rule_fired], cleanup)


if __name__ == "__main__":
    main()
