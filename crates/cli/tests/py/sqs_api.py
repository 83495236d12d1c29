#!/usr/bin/env python3
"""Drives a running wisp's SQS API through boto3 and the AWS CLI and checks
that it parses and behaves as Amazon SQS does.

Environment: WISP_API, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION. Prints `ok - <name>` / `not ok - <name>` per check, then
`N passed, M failed`; exits 0 only if nothing failed.
"""
import hashlib
import json
import os
import struct
import subprocess
import threading
import time
import uuid
from datetime import datetime

import boto3
from botocore.config import Config

import checks
from checks import check, eq, expect, raises

API = os.environ["WISP_API"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
P = "sq" + uuid.uuid4().hex[:6]
ACCOUNT = "000000000000"

_config = dict(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
sqs = boto3.client("sqs", endpoint_url=API, region_name=REGION, config=Config(**_config))
raw = boto3.client("sqs", endpoint_url=API, region_name=REGION,
                   config=Config(parameter_validation=False, **_config))
lam = boto3.client("lambda", endpoint_url=API, region_name=REGION, config=Config(**_config))
lam_raw = boto3.client("lambda", endpoint_url=API, region_name=REGION,
                       config=Config(parameter_validation=False, **_config))
state = {}


def md5_attributes(attrs):
    """AWS's MD5OfMessageAttributes, written out independently of wisp."""
    h = hashlib.md5()

    def put(b):
        h.update(struct.pack(">I", len(b)) + b)

    for name in sorted(attrs):
        a = attrs[name]
        put(name.encode())
        put(a["DataType"].encode())
        if "BinaryValue" in a:
            h.update(b"\x02")
            put(a["BinaryValue"])
        else:
            h.update(b"\x01")
            put(a["StringValue"].encode())
    return h.hexdigest()


def url(name):
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def arn(name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def group_queues():
    q = P + "-orders"
    with check("create_queue answers AWS's URL form", critical=True):
        u = sqs.create_queue(QueueName=q, Attributes={"VisibilityTimeout": "5"},
                             tags={"team": "shop"})["QueueUrl"]
        eq(u, f"{API}/{ACCOUNT}/{q}", "QueueUrl")
        state["q"] = u
    with check("create_queue is idempotent for equal attributes, QueueNameExists otherwise"):
        eq(sqs.create_queue(QueueName=q, Attributes={"VisibilityTimeout": "5"})["QueueUrl"],
           state["q"], "same URL")
        raises("QueueNameExists", 400, sqs.create_queue, QueueName=q,
               Attributes={"VisibilityTimeout": "6"})
    with check("get_queue_url, and a missing queue raises QueueDoesNotExist"):
        eq(url(q), state["q"], "QueueUrl")
        e = raises("QueueDoesNotExist", 400, sqs.get_queue_url, QueueName=P + "-nope")
        eq(e.response["Error"]["Code"], "AWS.SimpleQueueService.NonExistentQueue", "query code")
    with check("list_queues by prefix, paginated"):
        for i in range(3):
            sqs.create_queue(QueueName=f"{P}-page-{i}")
        got = sqs.list_queues(QueueNamePrefix=P + "-page-")["QueueUrls"]
        eq(len(got), 3, "queues with the prefix")
        first = sqs.list_queues(QueueNamePrefix=P + "-page-", MaxResults=2)
        eq(len(first["QueueUrls"]), 2, "first page")
        rest = sqs.list_queues(QueueNamePrefix=P + "-page-", MaxResults=2,
                               NextToken=first["NextToken"])
        eq(rest["QueueUrls"], got[2:], "second page")
        expect("NextToken" not in rest, "no token after the last page", rest)
    with check("get_queue_attributes: All, settable and computed"):
        a = sqs.get_queue_attributes(QueueUrl=state["q"], AttributeNames=["All"])["Attributes"]
        eq(a["VisibilityTimeout"], "5", "VisibilityTimeout")
        eq(a["QueueArn"], arn(q), "QueueArn")
        eq(a["MaximumMessageSize"], "1048576", "MaximumMessageSize")
        eq(a["ApproximateNumberOfMessages"], "0", "ApproximateNumberOfMessages")
        expect(abs(int(a["CreatedTimestamp"]) - time.time()) < 60, "CreatedTimestamp in seconds", a)
        one = sqs.get_queue_attributes(QueueUrl=state["q"], AttributeNames=["QueueArn"])
        eq(list(one["Attributes"]), ["QueueArn"], "only the named attribute")
    with check("set_queue_attributes, bounds refused with InvalidAttributeValue"):
        sqs.set_queue_attributes(QueueUrl=state["q"], Attributes={"DelaySeconds": "0",
                                                                   "VisibilityTimeout": "7"})
        a = sqs.get_queue_attributes(QueueUrl=state["q"], AttributeNames=["VisibilityTimeout"])
        eq(a["Attributes"]["VisibilityTimeout"], "7", "VisibilityTimeout")
        raises("InvalidAttributeValue", 400, sqs.set_queue_attributes, QueueUrl=state["q"],
               Attributes={"VisibilityTimeout": "43201"})
        raises("InvalidAttributeName", 400, sqs.set_queue_attributes, QueueUrl=state["q"],
               Attributes={"Colour": "red"})
        raises("InvalidAttributeName", 400, sqs.get_queue_attributes, QueueUrl=state["q"],
               AttributeNames=["Colour"])
    with check("tags: tag_queue, untag_queue, list_queue_tags"):
        sqs.tag_queue(QueueUrl=state["q"], Tags={"stage": "dev"})
        eq(sqs.list_queue_tags(QueueUrl=state["q"])["Tags"], {"team": "shop", "stage": "dev"},
           "tags")
        sqs.untag_queue(QueueUrl=state["q"], TagKeys=["team"])
        eq(sqs.list_queue_tags(QueueUrl=state["q"])["Tags"], {"stage": "dev"}, "tags")
    with check("a queue URL naming another host reaches the same queue"):
        other = state["q"].replace("127.0.0.1", "localhost")
        expect(other != state["q"], "another host", other)
        a = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])
        eq(a["Attributes"]["QueueArn"], arn(q), "QueueArn")


def group_messages():
    u = state["q"]
    attrs = {
        "city": {"DataType": "String", "StringValue": "Any City é"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        "kind": {"DataType": "String.custom", "StringValue": "x"},
    }
    with check("send_message: MD5s as AWS computes them", critical=True):
        r = sqs.send_message(QueueUrl=u, MessageBody="hello é 😀", MessageAttributes=attrs,
                             MessageSystemAttributes={"AWSTraceHeader": {
                                 "DataType": "String", "StringValue": "Root=1-abc"}})
        eq(r["MD5OfMessageBody"], hashlib.md5("hello é 😀".encode()).hexdigest(), "body MD5")
        eq(r["MD5OfMessageAttributes"], md5_attributes(attrs), "attributes MD5")
        expect("MD5OfMessageSystemAttributes" in r, "a system attributes MD5", r)
        state["sent"] = r["MessageId"]
    with check("receive_message: the body, the selected attributes and their MD5"):
        r = sqs.receive_message(QueueUrl=u, MessageAttributeNames=["city", "b.*", "blob"],
                                MessageSystemAttributeNames=["All"], MaxNumberOfMessages=10)
        m = r["Messages"][0]
        eq(m["MessageId"], state["sent"], "MessageId")
        eq(m["Body"], "hello é 😀", "Body")
        eq(set(m["MessageAttributes"]), {"city", "blob"}, "selected attributes")
        eq(m["MessageAttributes"]["blob"]["BinaryValue"], b"\x00\x01\xff", "binary value")
        sel = {k: attrs[k] for k in ("city", "blob")}
        eq(m["MD5OfMessageAttributes"], md5_attributes(sel), "MD5 of the returned attributes")
        a = m["Attributes"]
        eq(a["ApproximateReceiveCount"], "1", "ApproximateReceiveCount")
        eq(a["SenderId"], os.environ["AWS_ACCESS_KEY_ID"], "SenderId")
        eq(a["AWSTraceHeader"], "Root=1-abc", "AWSTraceHeader")
        for k in ("SentTimestamp", "ApproximateFirstReceiveTimestamp"):
            expect(abs(int(a[k]) / 1000 - time.time()) < 60, f"{k} in ms", a)
        state["receipt"] = m["ReceiptHandle"]
    with check("an in-flight message is not received again; counts say so"):
        r = sqs.receive_message(QueueUrl=u)
        expect("Messages" not in r, "no message", r)
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq(a["ApproximateNumberOfMessagesNotVisible"], "1", "not visible")
    with check("change_message_visibility to 0 returns it; received again, count 2"):
        sqs.change_message_visibility(QueueUrl=u, ReceiptHandle=state["receipt"],
                                      VisibilityTimeout=0)
        m = sqs.receive_message(QueueUrl=u, AttributeNames=["ApproximateReceiveCount"],
                                VisibilityTimeout=30)["Messages"][0]
        eq(m["Attributes"]["ApproximateReceiveCount"], "2", "ApproximateReceiveCount")
        expect(m["ReceiptHandle"] != state["receipt"], "a new receipt handle", m)
        # The old receipt deletes nothing (SQS answers success).
        sqs.delete_message(QueueUrl=u, ReceiptHandle=state["receipt"])
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq(a["ApproximateNumberOfMessagesNotVisible"], "1", "still in flight")
        sqs.delete_message(QueueUrl=u, ReceiptHandle=m["ReceiptHandle"])
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq(a["ApproximateNumberOfMessagesNotVisible"], "0", "deleted")
    with check("visibility runs out: the message comes back"):
        sqs.send_message(QueueUrl=u, MessageBody="again")
        m1 = sqs.receive_message(QueueUrl=u, VisibilityTimeout=1)["Messages"][0]
        time.sleep(1.2)
        m2 = sqs.receive_message(QueueUrl=u, WaitTimeSeconds=2)["Messages"][0]
        eq(m2["MessageId"], m1["MessageId"], "the same message")
        sqs.delete_message(QueueUrl=u, ReceiptHandle=m2["ReceiptHandle"])
    with check("delayed messages are counted as delayed"):
        sqs.send_message(QueueUrl=u, MessageBody="later", DelaySeconds=60)
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq(a["ApproximateNumberOfMessagesDelayed"], "1", "delayed")
        expect("Messages" not in sqs.receive_message(QueueUrl=u), "nothing receivable", a)
    with check("purge_queue, and again within 60 s is PurgeQueueInProgress"):
        sqs.purge_queue(QueueUrl=u)
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq(a["ApproximateNumberOfMessagesDelayed"], "0", "purged")
        raises("PurgeQueueInProgress", 400, sqs.purge_queue, QueueUrl=u)
    with check("bad messages: characters, size, attributes, bounds"):
        raises("InvalidMessageContents", 400, sqs.send_message, QueueUrl=u, MessageBody="a\x01")
        raises("InvalidParameterValue", 400, sqs.send_message, QueueUrl=u,
               MessageBody="x" * (1024 * 1024 + 1))
        raises("InvalidParameterValue", 400, sqs.send_message, QueueUrl=u, MessageBody="x",
               MessageAttributes={f"a{i}": {"DataType": "String", "StringValue": "v"}
                                  for i in range(11)})
        raises("InvalidParameterValue", 400, raw.send_message, QueueUrl=u, MessageBody="x",
               DelaySeconds=901)
        raises("InvalidParameterValue", 400, raw.receive_message, QueueUrl=u,
               MaxNumberOfMessages=11)
        raises("InvalidParameterValue", 400, raw.receive_message, QueueUrl=u,
               WaitTimeSeconds=21)
        raises("ReceiptHandleIsInvalid", 400, sqs.delete_message, QueueUrl=u,
               ReceiptHandle="not-a-receipt")


def group_batches():
    u = state["q"]
    with check("send_message_batch: per-entry failures beside successes"):
        r = sqs.send_message_batch(QueueUrl=u, Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "bad\x02"},
            {"Id": "c", "MessageBody": "three"},
        ])
        eq(sorted(e["Id"] for e in r["Successful"]), ["a", "c"], "successful")
        eq([(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]],
           [("b", "InvalidMessageContents", True)], "failed")
        eq(r["Successful"][0]["MD5OfMessageBody"], hashlib.md5(b"one").hexdigest(), "MD5")
    with check("batches: empty, too many, repeated and bad ids refused as AWS does"):
        raises("EmptyBatchRequest", 400, raw.send_message_batch, QueueUrl=u, Entries=[])
        raises("TooManyEntriesInBatchRequest", 400, sqs.send_message_batch, QueueUrl=u,
               Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])
        raises("BatchEntryIdsNotDistinct", 400, sqs.send_message_batch, QueueUrl=u,
               Entries=[{"Id": "x", "MessageBody": "x"}, {"Id": "x", "MessageBody": "y"}])
        raises("InvalidBatchEntryId", 400, sqs.send_message_batch, QueueUrl=u,
               Entries=[{"Id": "no spaces", "MessageBody": "x"}])
        raises("BatchRequestTooLong", 400, sqs.send_message_batch, QueueUrl=u,
               Entries=[{"Id": str(i), "MessageBody": "x" * 300_000} for i in range(4)])
    with check("delete_message_batch and change_message_visibility_batch"):
        got = sqs.receive_message(QueueUrl=u, MaxNumberOfMessages=10)["Messages"]
        eq(len(got), 2, "received")
        r = sqs.change_message_visibility_batch(QueueUrl=u, Entries=[
            {"Id": "k", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 60},
            {"Id": "bad", "ReceiptHandle": "nope", "VisibilityTimeout": 60},
        ])
        eq([s["Id"] for s in r["Successful"]], ["k"], "changed")
        eq([f["Code"] for f in r["Failed"]], ["ReceiptHandleIsInvalid"], "failed")
        r = sqs.delete_message_batch(QueueUrl=u, Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        eq(len(r["Successful"]), 2, "deleted")
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
        eq((a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]),
           ("0", "0"), "empty")


def group_long_poll():
    u = sqs.create_queue(QueueName=P + "-poll")["QueueUrl"]
    with check("a long poll returns as soon as a message arrives"):
        out = {}

        def poll():
            t = time.monotonic()
            out["r"] = sqs.receive_message(QueueUrl=u, WaitTimeSeconds=20)
            out["took"] = time.monotonic() - t

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        sqs.send_message(QueueUrl=u, MessageBody="wake")
        th.join(30)
        eq(out["r"]["Messages"][0]["Body"], "wake", "body")
        expect(out["took"] < 10, "well before the 20 s wait", out["took"])
    with check("a long poll of an empty queue waits its time, then answers empty"):
        t = time.monotonic()
        r = sqs.receive_message(QueueUrl=u, WaitTimeSeconds=1)
        took = time.monotonic() - t
        expect("Messages" not in r, "no messages", r)
        expect(0.9 <= took < 5, "about 1 s", took)


def group_fifo():
    name = P + "-o.fifo"
    with check("a FIFO queue needs FifoQueue and the .fifo name", critical=True):
        raises("InvalidParameterValue", 400, sqs.create_queue, QueueName=P + "-o",
               Attributes={"FifoQueue": "true"})
        u = sqs.create_queue(QueueName=name, Attributes={
            "FifoQueue": "true", "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
        state["fifo"] = u
    u = state["fifo"]
    with check("FIFO sends need MessageGroupId and a deduplication id"):
        raises("MissingParameter", 400, sqs.send_message, QueueUrl=u, MessageBody="x",
               MessageDeduplicationId="d")
        raises("InvalidParameterValue", 400, sqs.send_message, QueueUrl=u, MessageBody="x",
               MessageGroupId="g")
    with check("FIFO: sequence numbers rise, duplicates in the window are dropped"):
        seqs = []
        for i in range(3):
            r = sqs.send_message(QueueUrl=u, MessageBody=f"A{i}", MessageGroupId="A",
                                 MessageDeduplicationId=f"a{i}")
            seqs.append(int(r["SequenceNumber"]))
        expect(seqs == sorted(seqs) and len(set(seqs)) == 3, "rising", seqs)
        dup = sqs.send_message(QueueUrl=u, MessageBody="A0 again", MessageGroupId="A",
                               MessageDeduplicationId="a0")
        eq(int(dup["SequenceNumber"]), seqs[0], "the first message's sequence number")
        sqs.send_message(QueueUrl=u, MessageBody="B0", MessageGroupId="B",
                         MessageDeduplicationId="b0")
    with check("FIFO: strict order per group, a group blocked while in flight"):
        first = sqs.receive_message(QueueUrl=u, MaxNumberOfMessages=1,
                                    AttributeNames=["All"])["Messages"]
        eq(first[0]["Body"], "A0", "first")
        eq(first[0]["Attributes"]["MessageGroupId"], "A", "MessageGroupId")
        expect("SequenceNumber" in first[0]["Attributes"], "SequenceNumber", first)
        nxt = sqs.receive_message(QueueUrl=u, MaxNumberOfMessages=10)["Messages"]
        eq([m["Body"] for m in nxt], ["B0"], "group A blocked, B served")
        # A0 fails: its visibility ends, and it comes back before A1.
        sqs.change_message_visibility(QueueUrl=u, ReceiptHandle=first[0]["ReceiptHandle"],
                                      VisibilityTimeout=0)
        again = sqs.receive_message(QueueUrl=u, MaxNumberOfMessages=10)["Messages"]
        eq([m["Body"] for m in again], ["A0", "A1", "A2"], "group A in order")
        sqs.delete_message_batch(QueueUrl=u, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(again + nxt)])


def group_dead_letters():
    dlq_name, src_name = P + "-dlq", P + "-src"
    with check("RedrivePolicy to a missing queue is refused", critical=True):
        raises("InvalidAttributeValue", 400, sqs.create_queue, QueueName=src_name, Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq_name),
                                         "maxReceiveCount": 1})})
        dlq = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
        src = sqs.create_queue(QueueName=src_name, Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq_name),
                                         "maxReceiveCount": "2"})})["QueueUrl"]
        state["dlq"], state["src"] = dlq, src
    dlq, src = state["dlq"], state["src"]
    with check("a poison message reaches the DLQ after maxReceiveCount; the rest go on"):
        sqs.send_message(QueueUrl=src, MessageBody="poison")
        for _ in range(2):
            m = sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"][0]
            eq(m["Body"], "poison", "received")
        sqs.send_message(QueueUrl=src, MessageBody="fine")
        r = sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10)["Messages"]
        eq([m["Body"] for m in r], ["fine"], "only the good one")
        sqs.delete_message(QueueUrl=src, ReceiptHandle=r[0]["ReceiptHandle"])
        d = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"],
                                VisibilityTimeout=0)["Messages"][0]
        eq(d["Body"], "poison", "in the DLQ")
        eq(d["Attributes"]["DeadLetterQueueSourceArn"], arn(src_name), "its source")
    with check("list_dead_letter_source_queues"):
        r = sqs.list_dead_letter_source_queues(QueueUrl=dlq)
        eq(r["queueUrls"], [src], "sources")
    with check("start_message_move_task redrives back to the source"):
        h = sqs.start_message_move_task(SourceArn=arn(dlq_name))["TaskHandle"]
        expect(h, "a task handle", h)
        deadline = time.time() + 10
        while time.time() < deadline:
            t = sqs.list_message_move_tasks(SourceArn=arn(dlq_name))["Results"][0]
            if t["Status"] != "RUNNING":
                break
            time.sleep(0.1)
        eq(t["Status"], "COMPLETED", "status")
        eq(t["ApproximateNumberOfMessagesMoved"], 1, "moved")
        m = sqs.receive_message(QueueUrl=src, WaitTimeSeconds=2)["Messages"][0]
        eq(m["Body"], "poison", "back home")
        raises("ResourceNotFoundException", 400, sqs.cancel_message_move_task,
               TaskHandle="nope")
        raises("InvalidParameterValue", 400, sqs.start_message_move_task,
               SourceArn=arn(src_name))


def group_cli():
    name = P + "-cli"

    def aws(*args):
        return checks.aws(API, "sqs", *args)

    with check("aws sqs create-queue, send-message, receive-message, delete-message"):
        u = aws("create-queue", "--queue-name", name)["QueueUrl"]
        s = aws("send-message", "--queue-url", u, "--message-body", "from the cli")
        eq(s["MD5OfMessageBody"], hashlib.md5(b"from the cli").hexdigest(), "MD5")
        m = aws("receive-message", "--queue-url", u, "--wait-time-seconds", "2")["Messages"][0]
        eq(m["Body"], "from the cli", "Body")
        aws("delete-message", "--queue-url", u, "--receipt-handle", m["ReceiptHandle"])
        a = aws("get-queue-attributes", "--queue-url", u, "--attribute-names", "All")
        eq(a["Attributes"]["ApproximateNumberOfMessagesNotVisible"], "0", "deleted")
    with check("aws sqs on a missing queue fails with its code"):
        p = subprocess.run(["aws", "sqs", "get-queue-url", "--queue-name", P + "-none",
                            "--endpoint-url", API], capture_output=True, text=True, timeout=60)
        expect(p.returncode != 0 and "NonExistentQueue" in p.stderr + p.stdout,
               "a NonExistentQueue error", p.stderr)


def group_mappings():
    fn, qname = P + "-consumer", P + "-feed"
    with check("a function and a queue to map", critical=True):
        lam.create_function(FunctionName=fn, Runtime="nodejs20.x", Handler="index.handler",
                            Role="arn:aws:iam::000000000000:role/x",
                            Code={"ZipFile": checks.zipped("node-sqs")}, Timeout=10)
        sqs.create_queue(QueueName=qname, Attributes={"VisibilityTimeout": "30"})
    pattern = json.dumps({"body": {"kind": ["order"]}})
    with check("create_event_source_mapping answers Creating with AWS's fields", critical=True):
        m = lam.create_event_source_mapping(
            EventSourceArn=arn(qname), FunctionName=fn, BatchSize=5,
            FilterCriteria={"Filters": [{"Pattern": pattern}]},
            FunctionResponseTypes=["ReportBatchItemFailures"],
            ScalingConfig={"MaximumConcurrency": 5})
        eq(m["ResponseMetadata"]["HTTPStatusCode"], 202, "status")
        eq(m["State"], "Creating", "State")
        eq(m["FunctionArn"], f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}", "FunctionArn")
        eq(m["EventSourceArn"], arn(qname), "EventSourceArn")
        eq(m["BatchSize"], 5, "BatchSize")
        eq(m["FilterCriteria"]["Filters"][0]["Pattern"], pattern, "pattern")
        eq(m["ScalingConfig"], {"MaximumConcurrency": 5}, "ScalingConfig")
        expect(isinstance(m["LastModified"], datetime), "LastModified a timestamp", m)
        state["esm"] = m["UUID"]
    with check("get, list by function and by queue"):
        g = lam.get_event_source_mapping(UUID=state["esm"])
        eq(g["State"], "Enabled", "State")
        by_fn = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
        eq([x["UUID"] for x in by_fn], [state["esm"]], "by function")
        by_arn = lam.list_event_source_mappings(EventSourceArn=arn(qname))["EventSourceMappings"]
        eq([x["UUID"] for x in by_arn], [state["esm"]], "by queue")
    with check("update: a batch over 10 needs a window; Enabled false is Disabled"):
        raises("InvalidParameterValueException", 400, lam.update_event_source_mapping,
               UUID=state["esm"], BatchSize=50)
        u = lam.update_event_source_mapping(UUID=state["esm"], BatchSize=50,
                                            MaximumBatchingWindowInSeconds=1, Enabled=False)
        eq(u["BatchSize"], 50, "BatchSize")
        eq(lam.get_event_source_mapping(UUID=state["esm"])["State"], "Disabled", "State")
    with check("bad mappings refused: filters, concurrency, duplicates, missing function"):
        raises("InvalidParameterValueException", 400, lam.create_event_source_mapping,
               EventSourceArn=arn(qname), FunctionName=fn,
               FilterCriteria={"Filters": [{"Pattern": "{not json"}]})
        raises("InvalidParameterValueException", 400, lam_raw.create_event_source_mapping,
               EventSourceArn=arn(qname), FunctionName=fn, ScalingConfig={"MaximumConcurrency": 1})
        raises("ResourceConflictException", 409, lam.create_event_source_mapping,
               EventSourceArn=arn(qname), FunctionName=fn)
        raises("ResourceNotFoundException", 404, lam.create_event_source_mapping,
               EventSourceArn=arn(qname), FunctionName=P + "-ghost")
    with check("delete answers Deleting, then it is gone"):
        d = lam.delete_event_source_mapping(UUID=state["esm"])
        eq(d["State"], "Deleting", "State")
        raises("ResourceNotFoundException", 404, lam.get_event_source_mapping, UUID=state["esm"])
    with check("aws lambda create/list/delete-event-source-mapping"):
        def aws(*args):
            return checks.aws(API, "lambda", *args)
        m = aws("create-event-source-mapping", "--function-name", fn, "--event-source-arn",
                arn(qname), "--batch-size", "3")
        eq(m["BatchSize"], 3, "BatchSize")
        listed = aws("list-event-source-mappings", "--function-name", fn)["EventSourceMappings"]
        eq([x["UUID"] for x in listed], [m["UUID"]], "listed")
        aws("delete-event-source-mapping", "--uuid", m["UUID"])


def group_delete():
    with check("delete_queue, then it does not exist"):
        sqs.delete_queue(QueueUrl=state["q"])
        raises("QueueDoesNotExist", 400, sqs.get_queue_attributes, QueueUrl=state["q"],
               AttributeNames=["All"])
        raises("QueueDoesNotExist", 400, sqs.send_message, QueueUrl=state["q"], MessageBody="x")


def cleanup():
    try:
        for m in lam.list_event_source_mappings().get("EventSourceMappings", []):
            if P in m["EventSourceArn"]:
                lam.delete_event_source_mapping(UUID=m["UUID"])
        checks.delete_functions_and_queues(lam, sqs, P)
    except Exception as e:  # noqa: BLE001
        print(f"# cleanup failed: {e}", flush=True)


def main():
    print(f"# wisp SQS API at {API}, queues {P}-*", flush=True)
    checks.run([group_queues, group_messages, group_batches, group_long_poll, group_fifo,
                group_dead_letters, group_cli, group_mappings, group_delete], cleanup)


if __name__ == "__main__":
    main()
