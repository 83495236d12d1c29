def handler(event, context):
    return {"ric": True, "echo": event, "requestId": context.aws_request_id}
