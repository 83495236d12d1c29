"""wisp's Lambda Runtime API client for Python (standard library only).

Run as: python3 -u bootstrap.py, with cwd = LAMBDA_TASK_ROOT and the usual
Lambda environment (AWS_LAMBDA_RUNTIME_API, _HANDLER, ...).

Life cycle: import the handler (the INIT phase; a failure is posted to
/runtime/init/error and the process exits 1), then loop forever:
GET /next -> call the handler -> POST /response or /error.
"""

import decimal
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


class ProtocolError(Exception):
    """The Runtime API answered something that is not the HTTP/1.1 we read."""


# A response's status line and headers may take this much; so may any one
# line of a chunked body.
MAX_HEAD_BYTES = 64 * 1024


class Response:
    """What the loop reads of an answer (http.client's names)."""

    __slots__ = ("status", "headers")

    def __init__(self, status, headers):
        self.status = status
        self.headers = headers  # lower-case name -> value

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)


class RuntimeClient:
    """A small HTTP/1.1 client on one kept-alive TCP connection to the Runtime
    API. http.client costs a few hundred microseconds per call, more than
    wisp's whole per-invocation budget; this costs a few tens. Each request
    goes out in a single send; a response is framed by Content-Length,
    chunked encoding, or the connection's end."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.host_header = address
        self.sock = None
        # Received bytes not consumed yet are buf[start:end]. A header block
        # must fit in the buffer.
        self.buf = bytearray(MAX_HEAD_BYTES)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.got_bytes = False
        self.next_request = f"GET {NEXT_PATH} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode("latin-1")
        # A GET /next went out behind the last post; its answer is to be read.
        self.next_sent = False

    def call(self, method, path, body=None, headers=None, next_follows=False):
        """Returns (status, response, body); the body is bytes, or a bytearray
        when it came in several reads. If the connection closes
        before any byte of the answer (say, an idle connection the server
        dropped as we reused it), the request was not served: it is sent once
        more on a new connection. With next_follows a GET /next goes out in
        the same send, and the next call of it only reads its answer."""
        if method == "GET" and path == NEXT_PATH and body is None and not headers:
            if self.next_sent:
                self.next_sent = False
                answer = self.read_pipelined()
                if answer is not None:
                    return answer
            request = self.next_request
        else:
            request = self.encode(method, path, body, headers)
            if next_follows:
                request += self.next_request
        for attempt in (0, 1):
            self.got_bytes = False  # any byte of the answer yet?
            try:
                if self.sock is None:
                    # No timeout: GET /next blocks until there is an event.
                    self.sock = socket.create_connection((self.host, self.port))
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                response = self.exchange(request, next_follows)
                self.next_sent = next_follows and self.sock is not None
                return response
            except OSError:
                self.close()
                if attempt or self.got_bytes:
                    raise
            except BaseException:
                self.close()
                raise

    def post(self, path, payload, error_type=None, next_follows=False,
             content_type="application/json"):
        """next_follows: a GET /next goes right behind the post. wisp then
        holds the post's answer until the next event and sends both at once,
        so the process wakes once per invocation, not twice."""
        headers = {"Content-Type": content_type}
        if error_type is not None:
            headers["Lambda-Runtime-Function-Error-Type"] = header_safe(error_type)
        if next_follows:
            headers["Wisp-Next-Follows"] = "1"
        # 202 expected; a 413 (response too large) is recorded by the server
        # and we simply go on to the next event.
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return self.call("POST", path, payload, headers, next_follows)

    def read_pipelined(self):
        """The answer to the GET /next sent behind a post, or None if the
        connection ended before any of it (then it is asked for again)."""
        self.got_bytes = False
        try:
            response = self.read_response()
        except OSError:
            self.close()
            if self.got_bytes:
                raise
            return None
        except BaseException:
            self.close()
            raise
        if self.start != self.end:
            self.close()  # bytes past the response: the stream is out of step
        return response

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.start = self.end = 0

    def encode(self, method, path, body, headers):
        # The path holds a request id from the server: nothing may break the line.
        if not path.isascii() or not path.isprintable() or " " in path:
            raise ProtocolError(f"bad Runtime API path {path!r}")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None or method == "POST":
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body else head

    def exchange(self, request, next_follows=False):
        self.start = self.end = 0
        try:
            self.sock.sendall(request)
        except OSError as send_error:
            # The server may have answered early and closed, not reading all
            # of a body too large (a 413): the answer can still be here.
            try:
                response = self.read_response()
            except OSError:
                if self.got_bytes:
                    raise
                raise send_error from None
            self.close()
            return response
        response = self.read_response()
        # Past the response is the pipelined GET /next's answer, if any.
        if self.start != self.end and not next_follows:
            self.close()  # bytes past the response: the stream is out of step
        return response

    def fill(self):
        """Reads more bytes into the buffer (moving what is left to its start
        when it is full)."""
        if self.end == len(self.buf):
            if self.start == 0:
                raise ProtocolError(f"response headers (or a line) over {MAX_HEAD_BYTES} bytes")
            left = self.end - self.start
            self.buf[:left] = self.buf[self.start:self.end]
            self.start, self.end = 0, left
        n = self.sock.recv_into(self.view[self.end:])
        if n == 0:
            state = "mid-response" if self.got_bytes else "without answering"
            raise ConnectionResetError(f"the Runtime API closed the connection {state}")
        self.got_bytes = True
        self.end += n

    def read_line(self):
        """The next line of a chunked body, without its CRLF."""
        while True:
            lf = self.buf.find(b"\n", self.start, self.end)
            if lf >= 0:
                line = bytes(self.view[self.start:lf]).rstrip(b"\r")
                self.start = lf + 1
                return line
            self.fill()

    def read_bytes(self, n, out):
        """Appends the next n bytes to the bytearray out."""
        while n:
            if self.start == self.end:
                self.start = self.end = 0
                self.fill()
            take = min(n, self.end - self.start)
            out += self.view[self.start:self.start + take]
            self.start += take
            n -= take

    def read_response(self):
        while True:
            while True:
                k = self.buf.find(b"\r\n\r\n", self.start, self.end)
                if k >= 0:
                    break
                self.fill()
            lines = str(self.view[self.start:k], "latin-1").split("\r\n")
            self.start = k + 4
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() or rest[3:4] not in ("", " "):
                raise ProtocolError(f"bad status line {lines[0][:100]!r}")
            status = int(code)
            if status >= 200:
                break
            # An interim 1xx answer: the real one follows.
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                raise ProtocolError(f"bad header line {line[:100]!r}")
            value = value.strip()
            # Repeated fields are joined, as http.client's getheader does.
            headers[name] = headers[name] + ", " + value if name in headers else value
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        te = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            body = b""
        elif te is not None and te.lower().rsplit(",", 1)[-1].strip() == "chunked":
            body = self.read_chunked()
        elif te is None and length is not None:
            if not length.isdigit() or not length.isascii():
                raise ProtocolError(f"bad Content-Length {length[:100]!r}")
            body = self.read_length(int(length))
        else:
            body = self.read_to_eof()  # no framing: the body ends with the connection
            keep_alive = False
        if not keep_alive:
            self.close()
        return status, Response(status, headers), body

    def read_length(self, n):
        if self.end - self.start >= n:
            # The usual case: the whole body came with the headers.
            body = bytes(self.view[self.start:self.start + n])
            self.start += n
            return body
        # Receive the rest straight into the body (a bytearray: no more copies).
        body = bytearray(n)
        have = self.end - self.start
        body[:have] = self.view[self.start:self.end]
        self.start = self.end = 0
        view = memoryview(body)
        while have < n:
            got = self.sock.recv_into(view[have:])
            if got == 0:
                raise ConnectionResetError("the Runtime API closed the connection mid-response")
            have += got
        return body

    def read_chunked(self):
        body = bytearray()
        while True:
            size = self.read_line().split(b";", 1)[0].strip()  # chunk extensions are ignored
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError(f"bad chunk size {size[:100]!r}")
            n = int(size, 16)
            if n == 0:
                break
            self.read_bytes(n, body)
            if self.read_line():
                raise ProtocolError("chunk longer than its size")
        while self.read_line():
            pass  # trailer fields are ignored
        return body

    def read_to_eof(self):
        body = bytearray(self.view[self.start:self.end])
        self.start = self.end = 0
        while True:
            n = self.sock.recv_into(self.view)
            if n == 0:
                return body
            body += self.view[:n]


def header_safe(value):
    """A header value keeps printable ASCII only (a CR or LF would end it early)."""
    cleaned = "".join(c for c in str(value) if " " <= c <= "~")
    return cleaned or "Unknown"


# ---------------------------------------------------------------- results --
# A Decimal is written as its own digits (awslambdaric writes them raw):
# the encoder puts a marker string in its place, then the marker, quoted
# as JSON writes it, is swapped for the digits. The nonce keeps user data
# from ever matching.
_DECIMAL_MARK = "\u0000wisp-decimal-%s:" % os.urandom(8).hex()


class LambdaEncoder(json.JSONEncoder):
    """As AWS's Python runtime client encodes results: default separators,
    a Decimal as its digits (NaN as NaN), non-ASCII characters escaped on
    python3.11 and written as they are from python3.12 on."""

    def default(self, o):
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return float("nan")
            return _DECIMAL_MARK + str(o)
        return super().default(o)

    def encode(self, o):
        text = super().encode(o)
        if _DECIMAL_MARK[1:] not in text:
            return text
        quoted = json.dumps(_DECIMAL_MARK, ensure_ascii=self.ensure_ascii)[:-1]
        out = []
        rest = text
        while True:
            i = rest.find(quoted)
            if i < 0:
                out.append(rest)
                return "".join(out)
            j = rest.index('"', i + len(quoted))
            out.append(rest[:i])
            out.append(rest[i + len(quoted):j])
            rest = rest[j + 1:]


ENCODER = LambdaEncoder(
    ensure_ascii=os.environ.get("AWS_EXECUTION_ENV", "") in ("", "AWS_Lambda_python3.11"))


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


class JsonFormatter(logging.Formatter):
    """LoggingConfig's LogFormat JSON: a record per line, as Lambda's Python
    runtime writes it (timestamp, level, message, logger, requestId, and the
    exception's type, message and stack when there is one)."""

    def format(self, record):
        doc = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + "Z",
            "level": {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(record.levelname, record.levelname),
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None),
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["errorType"] = record.exc_info[0].__name__
            doc["errorMessage"] = str(record.exc_info[1])
            doc["stackTrace"] = traceback.format_tb(record.exc_info[2])
        return json.dumps(doc, default=str)


def setup_logging():
    """The root logger gets Lambda's handler and format, on stdout, times in
    UTC. Like Lambda, the root level is left at Python's default (WARNING)
    unless AWS_LAMBDA_LOG_LEVEL is set, so logging.info() shows only once the
    function sets a level itself (the usual `logger.setLevel(logging.INFO)`)."""
    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        formatter = JsonFormatter()
    else:
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
        raise RuntimeError(f"GET /next answered {status}: {bytes(body[:200])!r}")
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
        # bytes go out as they are, as AWS's runtime client sends them.
        content_type = "application/unknown"
        if isinstance(result, (bytes, bytearray)):
            payload = bytes(result)
        else:
            content_type = "application/json"
            try:
                payload = ENCODER.encode(result)
            except Exception as e:
                raise FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}")
    except Exception as e:
        doc = exception_document(e)
        log_error(doc)
        client.post(path + "error", json.dumps(doc), doc["errorType"], next_follows=True)
        return
    client.post(path + "response", payload, next_follows=True, content_type=content_type)


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
    except (OSError, ProtocolError, RuntimeError) as e:
        # The Runtime API failed us (connection refused or reset, bad status).
        sys.stderr.write(f"wisp bootstrap: runtime API error: {e}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
