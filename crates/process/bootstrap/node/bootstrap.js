'use strict';
// wisp's Lambda Runtime API client for Node.js (standard library only).
//
// Run as: node --max-old-space-size=N bootstrap.js, with cwd = LAMBDA_TASK_ROOT
// and the usual Lambda environment (AWS_LAMBDA_RUNTIME_API, _HANDLER, ...).
//
// Life cycle: load the handler module (the INIT phase; a failure is posted to
// /runtime/init/error and the process exits 1), then loop forever:
// GET /next -> call the handler -> POST /response or /error.
// An uncaught exception or unhandled rejection during an invocation is posted
// as that invocation's error and the process exits 129, as Lambda's does;
// wisp then replaces the worker.

const net = require('net');
const http = require('http');
const { Writable } = require('stream');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const env = process.env;
const API = env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
// "[::1]:9001" is an IPv6 address: connect without the brackets.
const HOST = API.slice(0, API.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
const PORT = Number(API.slice(API.lastIndexOf(':') + 1));
const BASE = '/2018-06-01/runtime';
const NEXT_PATH = `${BASE}/invocation/next`;
const TASK_ROOT = env.LAMBDA_TASK_ROOT || process.cwd();
// Lambda's Node runtime names the stack array "trace" in error documents
// (Python's uses "stackTrace"); keep the field name in one place.
const TRACE_KEY = 'trace';

// -------------------------------------------------------------- transport --
// A small HTTP/1.1 client on one kept-alive TCP connection: Node's http
// module costs a few hundred microseconds per call, more than wisp's whole
// per-invocation budget; this costs a few tens. Requests pipeline: whatever
// is sent in one tick goes out in a single write (a result and the GET /next
// after it cost one round trip, not two), and the server answers them in
// order. A response is framed by Content-Length, chunked encoding, or the
// connection's end.

const MAX_HEAD_BYTES = 64 * 1024; // status line + headers (and any one line)
const EMPTY = Buffer.alloc(0);
// GET /next never changes: encode it once.
const NEXT_REQUEST = Buffer.from(`GET ${NEXT_PATH} HTTP/1.1\r\nHost: ${API}\r\n\r\n`, 'latin1');
// Parser states: the first four read lines; DATA takes `remaining` bytes of
// body (Infinity: up to the end of the connection).
const [STATUS, HEADER, CHUNK_SIZE, TRAILER, DATA] = [0, 1, 2, 3, 4];

function isBlank(c) {
  return c === 32 || c === 9;
}

function protocolError(message) {
  const err = new Error(`bad response from the Runtime API: ${message}`);
  err.code = 'EPROTO';
  return err;
}

class RuntimeConnection {
  constructor() {
    this.socket = null;
    this.queue = []; // not yet written: { request, resolve, reject, retried }
    this.inflight = []; // written, answered in order
    this.flushing = false; // a write of the queue is scheduled
    this.parts = []; // the body's pieces (usually one view of one read)
    this.resetResponse();
  }

  resetResponse() {
    this.state = STATUS;
    this.sawBytes = false; // any byte of the response yet?
    this.line = ''; // the line being read, when split across reads
    this.headBytes = 0;
    this.status = 0;
    this.headers = null; // lower-case names, as Node's http gives them
    this.keepAlive = true;
    this.chunked = false;
    this.remaining = 0;
    this.parts.length = 0;
  }

  // Resolves to { status, headers, body (a Buffer) }.
  send(request) {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject, retried: false });
      if (!this.flushing) {
        this.flushing = true;
        queueMicrotask(() => this.flush());
      }
    });
  }

  // Writes everything queued, in one write.
  flush() {
    this.flushing = false;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    if (this.socket === null) this.connect();
    for (const r of batch) this.inflight.push(r);
    // The idle connection is unref'd (see complete()); while a request is out
    // it must hold the process, or waiting on GET /next would let it exit.
    this.socket.ref();
    this.socket.write(batch.length === 1 ? batch[0].request : Buffer.concat(batch.map((r) => r.request)));
  }

  connect() {
    const socket = net.connect({ host: HOST, port: PORT, noDelay: true });
    // Events of a connection already dropped are ignored.
    socket.on('data', (chunk) => socket === this.socket && this.onData(chunk));
    socket.on('end', () => socket === this.socket && this.onClosed(null));
    socket.on('close', () => socket === this.socket && this.onClosed(null));
    socket.on('error', (err) => socket === this.socket && this.onClosed(err));
    this.socket = socket;
    this.resetResponse();
  }

  drop() {
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) socket.destroy();
  }

  onData(chunk) {
    let i = 0;
    while (i < chunk.length) {
      if (this.inflight.length === 0) {
        this.drop(); // bytes nobody asked for: the stream is out of step
        return;
      }
      this.sawBytes = true;
      let end;
      try {
        end = this.parse(chunk, i);
      } catch (err) {
        this.drop();
        this.resend(err);
        return;
      }
      if (end < 0) return;
      this.complete();
      if (this.socket === null) return; // dropped: the rest of this read is void
      i = end;
    }
  }

  // Consumes a read from `i` on; returns where the response ended in it, or
  // -1 if more is to come.
  parse(chunk, i) {
    const end = chunk.length;
    while (i < end) {
      if (this.state === DATA) {
        const n = Math.min(this.remaining, end - i);
        this.parts.push(n === end && i === 0 ? chunk : chunk.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) {
          if (!this.chunked) return i;
          this.state = CHUNK_SIZE;
        }
        continue;
      }
      const lf = chunk.indexOf(10, i);
      if (lf < 0) {
        this.line += chunk.latin1Slice(i, end);
        if (this.line.length > MAX_HEAD_BYTES) throw protocolError(`a line over ${MAX_HEAD_BYTES} bytes`);
        return -1;
      }
      let line;
      if (this.line === '') {
        line = chunk.latin1Slice(i, lf > i && chunk[lf - 1] === 13 ? lf - 1 : lf);
      } else {
        line = this.line + chunk.latin1Slice(i, lf); // the rest of a line split across reads
        this.line = '';
        if (line.endsWith('\r')) line = line.slice(0, -1);
      }
      if (line.length > MAX_HEAD_BYTES) throw protocolError(`a line over ${MAX_HEAD_BYTES} bytes`);
      i = lf + 1;
      if (this.onLine(line)) return i;
    }
    return -1;
  }

  // Returns true when the line ends the response.
  onLine(line) {
    if (this.state === CHUNK_SIZE) {
      if (line === '' && this.parts.length > 0) return false; // the CRLF after a chunk's data
      const size = line.replace(/;.*/, '').trim(); // chunk extensions are ignored
      if (!/^[0-9a-fA-F]{1,12}$/.test(size)) throw protocolError(`chunk size ${JSON.stringify(size.slice(0, 100))}`);
      this.remaining = parseInt(size, 16);
      this.state = this.remaining === 0 ? TRAILER : DATA;
      return false;
    }
    if (this.state === TRAILER) return line === ''; // trailer fields are ignored
    this.headBytes += line.length + 2;
    if (this.headBytes > MAX_HEAD_BYTES) throw protocolError(`headers over ${MAX_HEAD_BYTES} bytes`);
    if (this.state === STATUS) {
      const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(line);
      if (m === null) throw protocolError(`status line ${JSON.stringify(line.slice(0, 100))}`);
      this.status = Number(m[2]);
      this.keepAlive = m[1] === '1'; // HTTP/1.0 closes unless asked to keep alive
      this.headers = {};
      this.state = HEADER;
      return false;
    }
    if (line === '') return this.startBody();
    const colon = line.indexOf(':');
    if (colon <= 0) throw protocolError(`header line ${JSON.stringify(line.slice(0, 100))}`);
    // Bounds first, then one slice: cheaper than slice().trim().
    let from = colon + 1;
    let to = line.length;
    while (from < to && isBlank(line.charCodeAt(from))) from++;
    while (to > from && isBlank(line.charCodeAt(to - 1))) to--;
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(from, to);
    const h = this.headers;
    const prev = h[name];
    h[name] = typeof prev === 'string' ? `${prev}, ${value}` : value; // repeated: joined, as Node's http does
    return false;
  }

  // After the headers: returns true if there is no body to read.
  startBody() {
    if (this.status < 200) {
      this.resetResponse(); // an interim 1xx response: the real one follows
      this.sawBytes = true;
      return false;
    }
    const h = this.headers;
    const connection = h.connection || '';
    this.keepAlive = this.keepAlive ? !/close/i.test(connection) : /keep-alive/i.test(connection);
    if (this.status === 204 || this.status === 304) return true;
    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    this.state = DATA;
    if (te !== undefined && /(?:^|,)\s*chunked\s*$/i.test(te)) {
      this.chunked = true;
      this.state = CHUNK_SIZE;
    } else if (te === undefined && cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) throw protocolError(`Content-Length ${JSON.stringify(cl.slice(0, 100))}`);
      this.remaining = Number(cl);
      return this.remaining === 0;
    } else {
      this.remaining = Infinity; // no framing: the body ends with the connection
      this.keepAlive = false;
    }
    return false;
  }

  // The response at the head is complete: hand it over.
  complete() {
    const parts = this.parts;
    const body = parts.length === 0 ? EMPTY : parts.length === 1 ? parts[0] : Buffer.concat(parts);
    const res = { status: this.status, headers: this.headers, body };
    const { resolve } = this.inflight.shift();
    const keepAlive = this.keepAlive;
    this.resetResponse();
    // Drop the connection if the server asked to, or answered before taking
    // all of the request (a 413 to a body too large): anything further on it
    // would be out of step. What is still out goes again on a new one.
    const socket = this.socket;
    if (socket !== null && (!keepAlive || socket.writableLength > 0)) {
      this.drop();
      this.resend(null);
    }
    if (this.socket !== null && this.inflight.length === 0 && this.queue.length === 0) {
      this.socket.unref(); // an idle connection never holds the process
    }
    resolve(res);
  }

  // The connection ended (err null) or failed.
  onClosed(err) {
    if (err === null && this.inflight.length > 0 && this.state === DATA && this.remaining === Infinity) {
      this.complete(); // a body framed by the connection's end
      return;
    }
    this.drop();
    this.resend(err);
  }

  // The connection is gone. The request cut off mid-answer fails; the others
  // saw nothing of their answers (say, an idle connection the server dropped
  // as we reused it), so they go once more on a new connection.
  resend(err) {
    const out = this.inflight;
    this.inflight = [];
    const again = [];
    out.forEach((r, k) => {
      const cutOff = k === 0 && this.sawBytes;
      if (!cutOff && !r.retried) {
        r.retried = true;
        again.push(r);
        return;
      }
      let e = err;
      if (e === null) {
        e = new Error(`the Runtime API closed the connection ${cutOff ? 'mid-response' : 'without answering'}`);
        e.code = 'ECONNRESET';
      }
      r.reject(e);
    });
    this.resetResponse();
    if (again.length > 0) {
      this.queue = again.concat(this.queue);
      this.flush();
    }
  }
}

const connection = new RuntimeConnection();

// Posts `body` (a string) as JSON; head and body go out in one buffer, and
// Content-Length counts the body's UTF-8 bytes. `nextFollows`: a GET /next
// goes right behind this post on the same connection. wisp then holds the
// post's answer until the next event and sends both together, so the
// process wakes once per invocation, not twice.
function post(urlPath, body, errorType, via = connection, nextFollows = false) {
  // The path holds a request id from the server: nothing may break the line.
  if (/[^\x21-\x7e]/.test(urlPath)) return Promise.reject(new Error(`bad Runtime API path ${JSON.stringify(urlPath)}`));
  const length = Buffer.byteLength(body);
  let head = `POST ${urlPath} HTTP/1.1\r\nHost: ${API}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n`;
  if (errorType !== undefined) head += `Lambda-Runtime-Function-Error-Type: ${headerSafe(errorType)}\r\n`;
  if (nextFollows) head += 'Wisp-Next-Follows: 1\r\n';
  head += '\r\n';
  const request = Buffer.allocUnsafe(head.length + length);
  request.latin1Write(head, 0);
  request.utf8Write(body, head.length);
  return via.send(request);
}

// A header value keeps printable ASCII only (a CR or LF would end it early).
function headerSafe(s) {
  return String(s).replace(/[^\t\x20-\x7e]/g, '') || 'Unknown';
}

// ---------------------------------------------------------------- logging --
// console.* writes one line per call, prefixed like Lambda's:
//   <ISO time>\t<request id>\t<LEVEL>\t<util.format(args)>
// A multi-line message stays a single write (Lambda's own stdout logger would
// also turn '\n' into '\r'; we keep the newlines). Streams follow Node's own
// console: log/info/debug -> stdout, warn/error/trace/fatal -> stderr.
// Outside an invocation the request id is the string "undefined", as on
// Lambda; after a response it stays the last request's id (also as Lambda).
let currentRequestId = 'undefined';

// LoggingConfig's LogFormat JSON (AWS_LAMBDA_LOG_FORMAT): each line is a
// JSON record, and ApplicationLogLevel (AWS_LAMBDA_LOG_LEVEL) drops the
// levels below it.
const JSON_LOGS = process.env.AWS_LAMBDA_LOG_FORMAT === 'JSON';
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const MIN_LEVEL = JSON_LOGS
  ? Math.max(0, LEVELS.indexOf((process.env.AWS_LAMBDA_LOG_LEVEL || 'INFO').toUpperCase()))
  : 0;

function writeLog(stream, level, message) {
  if (!JSON_LOGS) {
    stream.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}\n`);
    return;
  }
  if (LEVELS.indexOf(level) < MIN_LEVEL) return;
  const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId, message };
  stream.write(JSON.stringify(record) + '\n');
}

function patchConsole() {
  const make = (stream, level) =>
    function lambdaLog() {
      writeLog(stream, level, util.format.apply(null, arguments));
    };
  console.log = make(process.stdout, 'INFO');
  console.info = make(process.stdout, 'INFO');
  console.debug = make(process.stdout, 'DEBUG');
  console.warn = make(process.stderr, 'WARN');
  console.error = make(process.stderr, 'ERROR');
  // Lambda's console.trace logs the message at TRACE level, without a stack.
  console.trace = make(process.stderr, 'TRACE');
  console.fatal = make(process.stderr, 'FATAL');
}

// ----------------------------------------------------------------- errors --
function isErrorLike(e) {
  return e instanceof Error || util.types.isNativeError(e) ||
    (e !== null && typeof e === 'object' && typeof e.name === 'string' && typeof e.message === 'string');
}

// The document posted to /error: errorType is the error's name (or, for a
// thrown non-Error, its typeof, as Lambda does), the stack split into lines.
function errorDocument(err) {
  try {
    if (isErrorLike(err)) {
      return {
        errorType: String(err.name),
        errorMessage: String(err.message),
        [TRACE_KEY]: typeof err.stack === 'string' ? err.stack.split('\n') : [],
      };
    }
    return { errorType: typeof err, errorMessage: String(err), [TRACE_KEY]: [] };
  } catch (_) {
    return { errorType: 'handled', errorMessage: 'the error could not be inspected', [TRACE_KEY]: [] };
  }
}

// The log line's JSON: like the posted document, plus the error's own
// enumerable properties, with the stack under "stack" (Lambda's format).
function logError(label, err) {
  let json;
  try {
    if (isErrorLike(err)) {
      const doc = Object.assign({ errorType: err.name, errorMessage: err.message, code: err.code }, err);
      if (typeof err.stack === 'string') doc.stack = err.stack.split('\n');
      json = JSON.stringify(doc);
    } else {
      json = JSON.stringify(err === undefined ? null : err);
    }
  } catch (_) {
    json = JSON.stringify(errorDocument(err));
  }
  writeLog(process.stderr, 'ERROR', `${label} \t${json}`);
}

// Like `err.name = name`, but not enumerable, so it stays out of logged JSON.
function setName(err, name) {
  Object.defineProperty(err, 'name', { value: name, writable: true, configurable: true });
}

// A runtime-level error ("Runtime.ImportModuleError", ...) wrapping `cause`.
// Its stack keeps the cause's location and frames, which is what the user
// needs, rather than this file's.
function runtimeError(type, message, cause) {
  const err = new Error(message);
  setName(err, type);
  const lines = [`${type}: ${message}`];
  if (cause && typeof cause.stack === 'string') {
    const causeLines = cause.stack.split('\n');
    // A SyntaxError's stack starts with "file:line" of the offending code.
    if (cause instanceof SyntaxError && /:\d+$/.test(causeLines[0])) lines.push(causeLines[0]);
    for (const l of causeLines) if (/^\s+at /.test(l)) lines.push(l);
  }
  err.stack = lines.join('\n');
  return err;
}

// ---------------------------------------------------------------- loading --
// _HANDLER is "[dir/]module.fn[.nested]": the module name ends at the first
// dot after the last slash; the rest is a property path into its exports.
async function loadHandler(spec) {
  const slash = spec.lastIndexOf('/');
  const dir = path.resolve(TASK_ROOT, spec.slice(0, slash + 1));
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) {
    throw runtimeError('Runtime.MalformedHandlerName', `Bad handler ${spec}`);
  }
  const moduleName = rest.slice(0, dot);

  let exported;
  try {
    exported = await loadModule(dir, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw runtimeError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw runtimeError('Runtime.ImportModuleError', `${e.name}: ${e.message}`, e);
    }
    throw e; // an error thrown by the module's own top-level code
  }

  let fn = exported;
  for (const key of rest.slice(dot + 1).split('.')) fn = fn == null ? undefined : fn[key];
  if (fn === undefined) {
    throw runtimeError('Runtime.HandlerNotFound', `${spec} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw runtimeError('Runtime.HandlerNotFound', `${spec} is not a function`);
  }
  return fn;
}

// Lambda's lookup order: <name>.js, <name>.mjs, <name>.cjs in the handler's
// directory, then Node's own resolution (a directory with index.js, or a
// package under node_modules). .mjs, and .js under a package.json with
// "type": "module", go through import(); everything else through require().
async function loadModule(dir, name) {
  const base = path.join(dir, name);
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = base + ext;
    if (!isFile(file)) continue;
    if (ext === '.mjs' || (ext === '.js' && packageTypeIsModule(dir))) {
      return import(pathToFileURL(file).href);
    }
    return requireOrImport(file);
  }
  return requireOrImport(require.resolve(name, { paths: [dir] }));
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

// The nearest package.json decides, as in Node's own module resolution.
function packageTypeIsModule(dir) {
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (isFile(file)) {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

// require() refuses some ES modules (ERR_REQUIRE_ESM; or, where Node can
// require ESM, ERR_REQUIRE_ASYNC_MODULE for top-level await): import those.
async function requireOrImport(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      return import(pathToFileURL(file).href);
    }
    throw e;
  }
}

// ------------------------------------------------------------- invocation --
// Completion hook for "the event loop has nothing left to do": Lambda posts a
// handler's callback result only once the loop is empty (unless
// context.callbackWaitsForEmptyEventLoop = false), and posts null when the
// loop empties before the handler finished at all. 'beforeExit' is exactly
// that moment.
let onEmptyLoop = null;
process.on('beforeExit', () => {
  const f = onEmptyLoop;
  onEmptyLoop = null;
  if (f) f();
});

const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY_SIZE = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

function parseHeaderJson(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch (_) {
    return undefined;
  }
}

// The context object's members about the invocation and the function.
function contextOf(headers, requestId) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
  return {
    functionName: FUNCTION_NAME,
    functionVersion: FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: MEMORY_SIZE,
    awsRequestId: requestId,
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    identity: parseHeaderJson(headers['lambda-runtime-cognito-identity']),
    clientContext: parseHeaderJson(headers['lambda-runtime-client-context']),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

// ------------------------------------------------------ response streaming --
// A handler wrapped in awslambda.streamifyResponse gets (event, stream,
// context) and writes its result to the stream; each chunk goes to the
// Runtime API as it is written, in a chunked post with
// Lambda-Runtime-Function-Response-Mode: streaming, on a connection of
// its own. An error after the first write goes in the post's trailers.

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HTTP_INTEGRATION = 'application/vnd.awslambda.http-integration-response';
const streamAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function streamifyResponse(handler, options) {
  if (typeof handler !== 'function') throw new TypeError('streamifyResponse takes a handler function');
  handler[STREAMING] = 'response';
  if (options && options.highWaterMark) handler.highWaterMark = options.highWaterMark;
  return handler;
}

class HttpResponseStream {
  // The status, headers and cookies of an HTTP response, then its body.
  static from(stream, prelude) {
    stream.setContentType(HTTP_INTEGRATION);
    stream.write(JSON.stringify(prelude || {}));
    stream.write(new Uint8Array(8));
    return stream;
  }
}

globalThis.awslambda = { streamifyResponse, HttpResponseStream };

// The stream a streaming handler writes to, and a promise of the Runtime
// API's answer once it has ended.
function responseStream(requestId, highWaterMark) {
  let request = null;
  let contentType = 'application/octet-stream';
  let failure = null;
  let answered;
  const answer = new Promise((resolve, reject) => { answered = { resolve, reject }; });
  const open = () => {
    if (request !== null) return request;
    request = http.request({
      host: HOST,
      port: PORT,
      method: 'POST',
      path: `${BASE}/invocation/${requestId}/response`,
      agent: streamAgent,
      headers: {
        'Content-Type': contentType,
        'Transfer-Encoding': 'chunked',
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
      },
    });
    request.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => answered.resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    request.on('error', (e) => answered.reject(e));
    return request;
  };
  const stream = new Writable({
    highWaterMark,
    write(chunk, _encoding, callback) {
      open().write(chunk, callback);
    },
    final(callback) {
      const req = open();
      if (failure !== null) {
        req.addTrailers({
          'Lambda-Runtime-Function-Error-Type': headerSafe(failure.errorType),
          'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(failure)).toString('base64'),
        });
      }
      req.end(callback);
    },
  });
  stream.setContentType = (type) => {
    if (request !== null) throw new Error('the content type is set before the first write');
    contentType = String(type);
  };
  // Ends the stream with `err` in its trailers.
  stream.fail = (err) => {
    failure = errorDocument(err);
    if (!stream.writableEnded) stream.end();
    else if (request === null) open().end();
  };
  return [stream, answer];
}

// Runs a streaming handler to its end; resolves once the Runtime API has
// the whole stream.
async function invokeStreaming(handler, event, headers, requestId) {
  const [stream, answer] = responseStream(requestId, handler.highWaterMark);
  const context = contextOf(headers, requestId);
  context.callbackWaitsForEmptyEventLoop = false;
  try {
    await handler(event, stream, context);
    // A handler that returned without ending its stream is done with it.
    if (!stream.writableEnded) stream.end();
  } catch (err) {
    logError('Invoke Error', err);
    stream.fail(err);
  }
  await answer;
}

// Runs one invocation; resolves to [failed, value] exactly once.
// Handler styles, as in Lambda's Node 20 runtime: the handler always gets
// (event, context, callback); if it returns a thenable, that settles the
// invocation; otherwise callback(err, result) or context.done/succeed/fail.
function invoke(handler, event, headers, requestId) {
  return new Promise((resolve) => {
    let finished = false;
    let waitForEmptyLoop = true;
    const finish = (failed, value) => {
      if (finished) return;
      finished = true;
      onEmptyLoop = null;
      resolve([failed, value]);
    };
    const done = (err, result) => {
      if (err !== undefined && err !== null) finish(true, err);
      else finish(false, result);
    };
    const callback = (err, result) => {
      if (err !== undefined && err !== null) finish(true, err);
      else if (!waitForEmptyLoop) finish(false, result);
      else onEmptyLoop = () => finish(false, result);
    };
    const context = Object.defineProperties(contextOf(headers, requestId), {
      callbackWaitsForEmptyEventLoop: {
        get() { return waitForEmptyLoop; },
        set(v) { waitForEmptyLoop = v; },
        enumerable: true,
      },
    });
    context.done = done;
    context.succeed = (result) => done(null, result);
    // fail() without an error still fails, with the string 'handled'.
    context.fail = (err) => done(err === undefined || err === null ? 'handled' : err);
    // Default outcome if the loop drains and nothing completed: null.
    onEmptyLoop = () => finish(false, null);
    let ret;
    try {
      ret = handler(event, context, callback);
    } catch (e) {
      finish(true, e);
      return;
    }
    if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && typeof ret.then === 'function') {
      ret.then(
        (result) => finish(false, result),
        (err) => finish(true, err === undefined || err === null ? 'handled' : err),
      );
    }
  });
}

// Posts an invocation's error; a GET /next follows it.
async function postInvocationError(requestId, err) {
  logError('Invoke Error', err);
  const doc = errorDocument(err);
  await post(`${BASE}/invocation/${requestId}/error`, JSON.stringify(doc), doc.errorType, connection, true);
}

// The request whose handler is running, for the fatal-error hooks.
let inFlight = null;

async function runLoop(handler) {
  let next = connection.send(NEXT_REQUEST);
  for (;;) {
    const res = await next;
    if (res.status !== 200) throw new Error(`GET /next answered ${res.status}: ${res.body}`);
    const h = res.headers;
    const requestId = h['lambda-runtime-aws-request-id'];
    currentRequestId = requestId;
    inFlight = requestId;
    if (h['lambda-runtime-trace-id']) env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
    else delete env._X_AMZN_TRACE_ID;

    let failed;
    let value;
    let event;
    try {
      event = JSON.parse(res.body.toString('utf8'));
    } catch (e) {
      [failed, value] = [true, e]; // the event body was not JSON
    }
    if (!failed && handler[STREAMING] === 'response') {
      // A failed post means the Runtime API is gone: the loop ends.
      await invokeStreaming(handler, event, h, requestId);
      if (dying) return;
      inFlight = null;
      next = connection.send(NEXT_REQUEST);
      continue;
    }
    if (!failed) {
      try {
        [failed, value] = await invoke(handler, event, h, requestId);
      } catch (e) {
        [failed, value] = [true, e];
      }
    }
    let body;
    if (!failed) {
      try {
        body = JSON.stringify(value === undefined ? null : value);
        if (body === undefined) body = 'null'; // a function or symbol result
      } catch (e) {
        [failed, value] = [true, e]; // e.g. a circular structure
      }
    }
    // A fatal hook is already reporting this invocation; let it win.
    if (dying) return;
    // 202 expected; a 413 (response too large) is recorded by the server and
    // we simply go on to the next event.
    // The GET /next goes out with the result, in the same write (both are
    // queued in this tick); the post's answer comes with the next event.
    const posted = failed
      ? postInvocationError(requestId, value)
      : post(`${BASE}/invocation/${requestId}/response`, body, undefined, connection, true);
    next = connection.send(NEXT_REQUEST);
    next.catch(() => {}); // a failure surfaces where it is awaited
    inFlight = null; // answered: a crash from here on is not this invocation's
    await posted;
  }
}

// ----------------------------------------------------------- fatal errors --
// Exits after reporting: during an invocation, as that invocation's error;
// during init, as an init error.
let dying = false;
let initDone = false;

async function fatal(label, err, code) {
  if (dying) return;
  dying = true;
  logError(label, err);
  const doc = errorDocument(err);
  // On a connection of its own: the main one may hold a GET /next that the
  // server answers only with an event.
  const via = new RuntimeConnection();
  try {
    if (inFlight !== null) {
      await post(`${BASE}/invocation/${inFlight}/error`, JSON.stringify(doc), doc.errorType, via);
    } else if (!initDone) {
      await post(`${BASE}/init/error`, JSON.stringify(doc), doc.errorType, via);
    }
  } catch (_) {
    // The Runtime API is gone; nothing more to report to.
  }
  process.exit(code);
}

class UnhandledPromiseRejection extends Error {
  constructor(reason) {
    super(isErrorLike(reason) ? `${reason.name}: ${reason.message}` : String(reason));
    setName(this, 'Runtime.UnhandledPromiseRejection');
    if (isErrorLike(reason) && typeof reason.stack === 'string') {
      this.stack = `${this.name}: ${reason.stack}`;
    }
  }
}

process.on('uncaughtException', (err) => {
  fatal('Uncaught Exception', err, 129);
});
process.on('unhandledRejection', (reason) => {
  fatal('Unhandled Promise Rejection', new UnhandledPromiseRejection(reason), 128);
});

// ------------------------------------------------------------------- main --
async function main() {
  patchConsole();
  let handler;
  try {
    if (!env._HANDLER) throw runtimeError('Runtime.NoHandler', 'the _HANDLER variable is not set');
    handler = await loadHandler(env._HANDLER);
  } catch (err) {
    await fatal('Uncaught Exception', err, 1);
    return;
  }
  initDone = true;
  try {
    await runLoop(handler);
  } catch (err) {
    // The Runtime API failed us (connection refused or reset, bad status).
    writeLog(process.stderr, 'ERROR', `wisp bootstrap: runtime API error: ${err && err.message}`);
    process.exit(2);
  }
}

main();
