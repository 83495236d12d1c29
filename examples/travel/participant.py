#!/usr/bin/env python3
"""A participant of the `transfer` two-phase commit: reads its queue, votes
on `prepare` (answering the coordinator's task token), and applies
`commit` or `abort`. Run one per participant:

    python3 examples/travel/participant.py bank            # votes yes
    python3 examples/travel/participant.py ledger --vote no

Endpoint and credentials come from wisp's data dir (`.wisp`), or from
WISP_API / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Needs boto3.
"""
import argparse
import configparser
import json
import os
import sys

import boto3


def connect(data_dir):
    api = os.environ.get("WISP_API")
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not api:
        with open(os.path.join(data_dir, "endpoints.json")) as f:
            api = json.load(f)["api"]
    if not key:
        creds = configparser.ConfigParser()
        creds.read(os.path.join(data_dir, "credentials"))
        key = creds["wisp"]["aws_access_key_id"]
        secret = creds["wisp"]["aws_secret_access_key"]
    args = dict(endpoint_url=api, region_name="us-east-1",
                aws_access_key_id=key, aws_secret_access_key=secret)
    return boto3.client("sqs", **args), boto3.client("stepfunctions", **args)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("queue")
    parser.add_argument("--vote", choices=["yes", "no"], default="yes")
    parser.add_argument("--data-dir", default=".wisp")
    parser.add_argument("--once", action="store_true",
                        help="stop after one transaction is committed or aborted")
    args = parser.parse_args()
    sqs, sfn = connect(args.data_dir)
    url = sqs.get_queue_url(QueueName=args.queue)["QueueUrl"]
    prepared = {}
    print(f"{args.queue}: waiting for transactions (voting {args.vote})", flush=True)
    while True:
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10, MaxNumberOfMessages=10)
        for m in got.get("Messages", []):
            msg = json.loads(m["Body"])
            txn, phase = msg["txn"], msg["phase"]
            if phase == "prepare":
                if args.vote == "yes":
                    prepared[txn] = msg.get("amount")
                    print(f"{args.queue}: {txn} prepared, voting yes", flush=True)
                    sfn.send_task_success(taskToken=msg["token"],
                                          output=json.dumps({"participant": args.queue}))
                else:
                    print(f"{args.queue}: {txn} refused, voting no", flush=True)
                    sfn.send_task_failure(taskToken=msg["token"], error="Participant.VotedNo",
                                          cause=f"{args.queue} cannot take {txn}")
            elif phase == "commit":
                print(f"{args.queue}: {txn} committed ({prepared.pop(txn, None)})", flush=True)
                sfn.send_task_success(taskToken=msg["token"], output="{}")
            elif phase == "abort":
                prepared.pop(txn, None)
                print(f"{args.queue}: {txn} aborted", flush=True)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if args.once and phase in ("commit", "abort"):
                return


if __name__ == "__main__":
    sys.exit(main())
