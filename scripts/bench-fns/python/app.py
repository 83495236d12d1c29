# Returns at once: what is measured is the platform around it.
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
