"""wisp's Lambda Runtime API client for Python (standard library only).

Run as: python3 -u bootstrap.py, with cwd = LAMBDA_TASK_ROOT and the usual
Lambda environment (AWS_LAMBDA_RUNTIME_API, _HANDLER, ...).

Life cycle: import the handler (the INIT phase; a failure is posted to
/runtime/init/error and the process exits 1), then loop forever:
GET /next -> call the handler -> POST /response or /error.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = API_PREFIX + "/invocation/next"
THIS_FILE = __file__

# The request being served, for log records; "" until the first invocation,
# then the last request's id (as on Lambda).
current_request_id = ""


class RuntimeClient:
    """One kept-alive HTTP/1.1 connection to the Runtime API."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.conn = None

    def call(self, method, path, body=None, headers=None):
        """Returns (status, response, body bytes). Reconnects once if the kept
        connection was dropped (the server may close idle connections)."""
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    # No timeout: GET /next blocks until there is an event.
                    conn = http.client.HTTPConnection(self.host, self.port)
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.conn = conn
                self.conn.request(method, path, body, headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp, resp.read()
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                if attempt:
                    raise

    def post(self, path, payload, error_type=None):
        headers = {"Content-Type": "application/json"}
        if error_type is not None:
            headers["Lambda-Runtime-Function-Error-Type"] = header_safe(error_type)
        # 202 expected; a 413 (response too large) is recorded by the server
        # and we simply go on to the next event.
        return self.call("POST", path, payload.encode("utf-8"), headers)


def header_safe(value):
    """http.client refuses header values with control or non-latin1 characters."""
    cleaned = "".join(c for c in str(value) if " " <= c <= "~")
    return cleaned or "Unknown"


# ---------------------------------------------------------------- results --
class LambdaEncoder(json.JSONEncoder):
    """json with Decimal support: integral Decimals become ints, others floats
    (what DynamoDB-reading handlers expect). Default separators and ASCII
    escaping, as Lambda's Python 3.11 runtime emits them."""

    def default(self, o):
        if isinstance(o, decimal.Decimal):
            if o.is_finite() and o == o.to_integral_value():
                return int(o)
            return float(o)
        return super().default(o)


ENCODER = LambdaEncoder()


class FaultError(Exception):
    """A runtime-level failure with a Lambda error type (Runtime.*)."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def error_document(error_type, message, trace):
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": current_request_id,
        "stackTrace": trace,
    }


def exception_document(exc):
    """errorType = class name, errorMessage = str(e), stackTrace = the
    formatted frames (traceback.format_list), starting at the user's code:
    the leading frames of this file and of importlib are dropped."""
    if isinstance(exc, FaultError):
        return error_document(exc.error_type, exc.message, exc.trace)
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and is_runtime_frame(frames[0].filename):
        frames.pop(0)
    try:
        message = str(exc)
    except Exception:
        message = "<the exception's message could not be formatted>"
    return error_document(type(exc).__name__, message, traceback.format_list(frames))


IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep


def is_runtime_frame(filename):
    return filename == THIS_FILE or filename.startswith(("<frozen importlib", IMPORTLIB_DIR))


def log_error(doc):
    """Lambda's error log: "[ERROR] Type: message", then the traceback; one write."""
    head = "[ERROR] " + doc["errorType"]
    if doc["errorMessage"]:
        head += ": " + doc["errorMessage"]
    lines = [head, "Traceback (most recent call last):"]
    for entry in doc["stackTrace"]:
        lines.extend(entry.splitlines())
    sys.stderr.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- context --
def obj_from_dict(cls, data):
    if data is None:
        return None
    obj = cls()
    for key, value in data.items():
        if key in cls.__slots__:
            setattr(obj, key, value)
    return obj


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self):
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self):
        self.custom = self.env = self.client = None


class LambdaContext:
    __slots__ = (
        "aws_request_id", "invoked_function_arn", "identity", "client_context",
        "_deadline_ms",
    )
    # Constant for the life of the process; shared by every context.
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")

    def __init__(self, request_id, arn, deadline_ms, cognito_json, client_context_json):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self._deadline_ms = deadline_ms
        # As on Lambda: identity is always an object (fields None when the
        # invocation carried no Cognito identity); client_context is None
        # unless the invocation carried one.
        self.identity = CognitoIdentity()
        cognito = parse_json_header(cognito_json)
        if isinstance(cognito, dict):
            self.identity.cognito_identity_id = cognito.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito.get("cognitoIdentityPoolId")
        client_context = parse_json_header(client_context_json)
        self.client_context = obj_from_dict(ClientContext, client_context) if isinstance(client_context, dict) else None
        if self.client_context is not None and isinstance(self.client_context.client, dict):
            self.client_context.client = obj_from_dict(Client, self.client_context.client)

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, invoked_function_arn={self.invoked_function_arn!r})"
        )


def parse_json_header(value):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- logging --
class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = current_request_id
        return True


def setup_logging():
    """The root logger gets Lambda's handler and format, on stdout, times in
    UTC. Like Lambda, the root level is left at Python's default (WARNING)
    unless AWS_LAMBDA_LOG_LEVEL is set, so logging.info() shows only once the
    function sets a level itself (the usual `logger.setLevel(logging.INFO)`)."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        root.setLevel({"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))


# ---------------------------------------------------------------- loading --
def load_handler(spec):
    """_HANDLER is "module.function"; the module may be a path with slashes
    ("pkg/mod.fn" imports pkg.mod)."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {e}")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise FaultError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}")
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").strip()}\n']
        raise FaultError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {e}", trace)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")


# ------------------------------------------------------------- invocation --
def invoke(client, handler):
    global current_request_id
    status, resp, body = client.call("GET", NEXT_PATH)
    if status != 200:
        raise RuntimeError(f"GET /next answered {status}: {body[:200]!r}")
    request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    current_request_id = request_id
    trace_id = resp.getheader("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    context = LambdaContext(
        request_id,
        resp.getheader("Lambda-Runtime-Invoked-Function-Arn"),
        int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0),
        resp.getheader("Lambda-Runtime-Cognito-Identity"),
        resp.getheader("Lambda-Runtime-Client-Context"),
    )
    path = f"{API_PREFIX}/invocation/{request_id}/"
    try:
        try:
            event = json.loads(body)
        except ValueError as e:
            raise FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")
        result = handler(event, context)
        try:
            payload = ENCODER.encode(result)
        except Exception as e:
            raise FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}")
    except Exception as e:
        doc = exception_document(e)
        log_error(doc)
        client.post(path + "error", json.dumps(doc), doc["errorType"])
        return
    client.post(path + "response", payload)


def main():
    # Lambda's sys.path starts with the task root; this script's own
    # directory (Python's default sys.path[0]) is not the user's to see.
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(THIS_FILE)):
        sys.path.pop(0)
    sys.path.insert(0, task_root)

    setup_logging()
    client = RuntimeClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"))
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:  # FaultError, or anything the module raised at import
        doc = exception_document(e)
        log_error(doc)
        try:
            client.post(API_PREFIX + "/init/error", json.dumps(doc), doc["errorType"])
        finally:
            sys.exit(1)
    try:
        while True:
            invoke(client, handler)
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        # The Runtime API failed us (connection refused or reset, bad status).
        sys.stderr.write(f"wisp bootstrap: runtime API error: {e}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
