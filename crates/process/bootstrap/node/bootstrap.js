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
// A small HTTP/1.1 client on one kept-alive TCP connection. Node's http
// module costs a few hundred microseconds per call, more than wisp's whole
// per-invocation budget; this one costs a few tens. One request is on the
// wire at a time (a second one waits its turn), each goes out in a single
// write, and a response is framed by Content-Length, chunked encoding, or the
// end of the connection.

const MAX_HEAD_BYTES = 64 * 1024; // status line + headers; also caps a chunk-size or trailer line
const CRLF2 = Buffer.from('\r\n\r\n');
const EMPTY = Buffer.alloc(0);
// GET /next never changes: encode it once.
const NEXT_REQUEST = Buffer.from(`GET ${NEXT_PATH} HTTP/1.1\r\nHost: ${API}\r\n\r\n`, 'latin1');

// Where the response parser is.
const HEAD = 0; // before the end of the header block
const LENGTH = 1; // in a body of Content-Length bytes
const CHUNK_SIZE = 2; // reading a chunk-size line
const CHUNK_DATA = 3; // in a chunk's data
const CHUNK_END = 4; // reading the CRLF after a chunk's data
const TRAILER = 5; // reading trailer lines, up to an empty one
const TO_EOF = 6; // in a body that ends when the connection does

function protocolError(message) {
  const err = new Error(`bad response from the Runtime API: ${message}`);
  err.code = 'EPROTO';
  return err;
}

class RuntimeConnection {
  constructor() {
    this.socket = null;
    this.waiting = []; // [request, resolve, reject] behind the one on the wire (rare)
    // The request on the wire; busy until its response completes or fails.
    this.busy = false;
    this.request = null;
    this.resolve = null;
    this.reject = null;
    this.retried = false;
    this.resetResponse();
  }

  // Resolves to { status, headers (lower-case names), body (a Buffer) }.
  send(request) {
    return new Promise((resolve, reject) => {
      if (this.busy) this.waiting.push([request, resolve, reject]);
      else this.start(request, resolve, reject);
    });
  }

  start(request, resolve, reject) {
    this.busy = true;
    this.request = request;
    this.resolve = resolve;
    this.reject = reject;
    this.retried = false;
    this.write();
  }

  write() {
    if (this.socket === null) this.connect();
    this.resetResponse();
    // An idle connection is unref'd (see done()): while a request is out, it
    // must keep the process alive, or a pending GET /next would let it exit.
    this.socket.ref();
    this.socket.write(this.request);
  }

  connect() {
    const socket = net.connect({ host: HOST, port: PORT, noDelay: true });
    // Events from a connection we already dropped are ignored.
    socket.on('data', (chunk) => {
      if (socket === this.socket) this.onData(chunk);
    });
    socket.on('end', () => {
      if (socket === this.socket) this.onClosed(null);
    });
    socket.on('error', (err) => {
      if (socket === this.socket) this.onClosed(err);
    });
    socket.on('close', () => {
      if (socket === this.socket) this.onClosed(null);
    });
    this.socket = socket;
  }

  drop() {
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) socket.destroy();
  }

  resetResponse() {
    this.state = HEAD;
    this.sawBytes = false; // any byte of the response yet?
    this.head = null; // a header block split across reads, so far
    this.status = 0;
    this.headers = null;
    this.keepAlive = true;
    this.body = null; // the Content-Length body, filled in place
    this.filled = 0;
    this.remaining = 0; // of the current chunk
    this.parts = null; // chunked or to-EOF body pieces
    this.line = ''; // a chunk-size or trailer line split across reads
  }

  onData(chunk) {
    if (!this.busy) {
      // Bytes nobody asked for: the stream is out of step; start afresh.
      this.drop();
      return;
    }
    this.sawBytes = true;
    let i;
    try {
      i = this.parse(chunk);
    } catch (err) {
      this.drop();
      this.fail(err);
      return;
    }
    if (i >= 0) this.done(i < chunk.length);
  }

  // Consumes `chunk`; returns where the response ended in it, or -1 if more
  // is to come.
  parse(chunk) {
    const end = chunk.length;
    let i = 0;
    while (i < end || this.state === HEAD && this.head === null && this.status !== 0) {
      switch (this.state) {
        case HEAD: {
          let buf = chunk;
          let from = i;
          let searchFrom = i;
          if (this.head !== null) {
            // Rare: the header block came in pieces; glue them together.
            buf = Buffer.concat([this.head, chunk.subarray(i)]);
            searchFrom = Math.max(0, this.head.length - 3);
            from = 0;
          }
          const k = buf.indexOf(CRLF2, searchFrom);
          if (k < 0) {
            if (buf.length - from > MAX_HEAD_BYTES) throw protocolError(`header block over ${MAX_HEAD_BYTES} bytes`);
            this.head = buf === chunk ? chunk.subarray(i) : buf;
            return -1;
          }
          if (k - from > MAX_HEAD_BYTES) throw protocolError(`header block over ${MAX_HEAD_BYTES} bytes`);
          // Position after the header block, in `chunk`'s terms.
          i = buf === chunk ? k + 4 : k + 4 - this.head.length + i;
          this.head = null;
          if (this.parseHead(buf.latin1Slice(from, k))) return i;
          if (this.state === HEAD) continue; // an interim 1xx response: the real one follows
          if (this.state === LENGTH && end - i >= this.body) {
            // The whole body is in this chunk (the usual case): no copy.
            const n = this.body;
            this.body = chunk.subarray(i, i + n);
            return i + n;
          }
          if (this.state === LENGTH) this.body = Buffer.allocUnsafe(this.body);
          break;
        }
        case LENGTH: {
          const n = Math.min(this.body.length - this.filled, end - i);
          chunk.copy(this.body, this.filled, i, i + n);
          this.filled += n;
          i += n;
          if (this.filled === this.body.length) return i;
          break;
        }
        case CHUNK_SIZE: {
          i = this.takeLine(chunk, i);
          if (i < 0) return -1;
          const size = this.line.replace(/;.*$/, '').trim(); // drop chunk extensions
          this.line = '';
          if (!/^[0-9a-fA-F]{1,12}$/.test(size)) throw protocolError(`bad chunk size ${JSON.stringify(size)}`);
          this.remaining = parseInt(size, 16);
          this.state = this.remaining === 0 ? TRAILER : CHUNK_DATA;
          break;
        }
        case CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i);
          this.parts.push(chunk.subarray(i, i + n));
          this.remaining -= n;
          i += n;
          if (this.remaining === 0) this.state = CHUNK_END;
          break;
        }
        case CHUNK_END:
        case TRAILER: {
          i = this.takeLine(chunk, i);
          if (i < 0) return -1;
          const empty = this.line === '';
          this.line = '';
          if (this.state === CHUNK_END) {
            if (!empty) throw protocolError('chunk data longer than its size');
            this.state = CHUNK_SIZE;
          } else if (empty) {
            return i; // trailer fields, if any, are ignored
          }
          break;
        }
        default: // TO_EOF
          this.parts.push(i === 0 ? chunk : chunk.subarray(i));
          return -1;
      }
    }
    return -1;
  }

  // Appends to this.line up to a LF; returns the index after it, or -1 when
  // the line continues in the next chunk. The line is kept without CR/LF.
  takeLine(chunk, i) {
    const lf = chunk.indexOf(10, i);
    const stop = lf < 0 ? chunk.length : lf;
    this.line += chunk.latin1Slice(i, stop);
    if (this.line.length > MAX_HEAD_BYTES) throw protocolError('line too long');
    if (lf < 0) return -1;
    if (this.line.endsWith('\r')) this.line = this.line.slice(0, -1);
    return lf + 1;
  }

  // Parses a status line and headers; sets up the body. Returns true when the
  // response has no body (it is then complete).
  parseHead(text) {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]);
    if (m === null) throw protocolError(`bad status line ${JSON.stringify(lines[0].slice(0, 100))}`);
    const status = Number(m[2]);
    const headers = {};
    for (let j = 1; j < lines.length; j++) {
      const line = lines[j];
      const colon = line.indexOf(':');
      if (colon <= 0) throw protocolError(`bad header line ${JSON.stringify(line.slice(0, 100))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      // Repeated fields join with ", ", as Node's http does for these names.
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    if (status >= 100 && status < 200 && status !== 101) return false; // state stays HEAD
    this.status = status;
    this.headers = headers;
    const connection = (headers.connection || '').toLowerCase();
    this.keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    if (status === 204 || status === 304) {
      this.body = EMPTY;
      return true;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined) {
      this.parts = [];
      if (/(?:^|,)\s*chunked\s*$/i.test(te)) {
        this.state = CHUNK_SIZE;
      } else {
        this.state = TO_EOF;
        this.keepAlive = false;
      }
      return false;
    }
    const cl = headers['content-length'];
    if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) throw protocolError(`bad Content-Length ${JSON.stringify(cl)}`);
      const n = Number(cl);
      if (n === 0) {
        this.body = EMPTY;
        return true;
      }
      this.state = LENGTH;
      this.body = n; // parse() turns it into the buffer
      return false;
    }
    this.parts = [];
    this.state = TO_EOF;
    this.keepAlive = false;
    return false;
  }

  // The response is complete.
  done(leftover) {
    const parts = this.parts;
    const body = parts === null ? this.body : parts.length === 1 ? parts[0] : Buffer.concat(parts);
    const res = { status: this.status, headers: this.headers, body };
    const resolve = this.resolve;
    // Drop the connection if the server asked to, sent more than the
    // response, or answered before reading all of the request (a 413 to a
    // body too large): what follows on it would be out of step.
    if (!this.keepAlive || leftover || this.socket.writableLength > 0) this.drop();
    this.next();
    resolve(res);
  }

  fail(err) {
    const reject = this.reject;
    this.next();
    reject(err);
  }

  // The request is over: start the next waiting one, or go idle.
  next() {
    this.busy = false;
    this.request = this.resolve = this.reject = null;
    this.resetResponse();
    const w = this.waiting.shift();
    if (w !== undefined) this.start(w[0], w[1], w[2]);
    else if (this.socket !== null) this.socket.unref(); // an idle connection never holds the process
  }

  // The connection ended (err null) or failed.
  onClosed(err) {
    this.drop();
    if (!this.busy) return; // idle: the next request connects anew
    if (err === null && this.state === TO_EOF) {
      this.done(false);
      return;
    }
    // Closed by the peer before any byte of the answer (e.g. an idle
    // connection the server dropped just as we reused it): the request was
    // not served; send it once more on a new connection.
    if (!this.sawBytes && !this.retried) {
      this.retried = true;
      this.write();
      return;
    }
    if (err === null) {
      err = new Error(this.sawBytes
        ? 'the Runtime API closed the connection in the middle of a response'
        : 'the Runtime API closed the connection without answering');
      err.code = 'ECONNRESET';
    }
    this.fail(err);
  }
}

const connection = new RuntimeConnection();

// Writes `body` (a string) after the head in a single buffer; Content-Length
// counts its UTF-8 bytes.
function post(urlPath, body, errorType) {
  // The path carries the request id the server gave us; refuse anything that
  // would break the request line.
  if (/[^\x21-\x7e]/.test(urlPath)) return Promise.reject(new Error(`bad Runtime API path ${JSON.stringify(urlPath)}`));
  const length = Buffer.byteLength(body);
  let head = `POST ${urlPath} HTTP/1.1\r\nHost: ${API}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n`;
  if (errorType !== undefined) head += `Lambda-Runtime-Function-Error-Type: ${headerSafe(errorType)}\r\n`;
  head += '\r\n';
  const request = Buffer.allocUnsafe(head.length + length);
  request.latin1Write(head, 0);
  request.utf8Write(body, head.length);
  return connection.send(request);
}

// A header value keeps printable ASCII only (no CR/LF to split the request).
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

function writeLog(stream, level, message) {
  stream.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}\n`);
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
    const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
    const context = {
      get callbackWaitsForEmptyEventLoop() { return waitForEmptyLoop; },
      set callbackWaitsForEmptyEventLoop(v) { waitForEmptyLoop = v; },
      done,
      succeed: (result) => done(null, result),
      // fail() without an error still fails, with the string 'handled'.
      fail: (err) => done(err === undefined || err === null ? 'handled' : err),
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

async function postInvocationError(requestId, err) {
  logError('Invoke Error', err);
  const doc = errorDocument(err);
  await post(`${BASE}/invocation/${requestId}/error`, JSON.stringify(doc), doc.errorType);
}

// The request whose handler is running, for the fatal-error hooks.
let inFlight = null;

async function runLoop(handler) {
  for (;;) {
    const res = await request('GET', NEXT_PATH, undefined, undefined);
    if (res.status !== 200) throw new Error(`GET /next answered ${res.status}: ${res.body}`);
    const h = res.headers;
    const requestId = h['lambda-runtime-aws-request-id'];
    currentRequestId = requestId;
    inFlight = requestId;
    if (h['lambda-runtime-trace-id']) env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
    else delete env._X_AMZN_TRACE_ID;

    let failed;
    let value;
    try {
      [failed, value] = await invoke(handler, JSON.parse(res.body), h, requestId);
    } catch (e) {
      [failed, value] = [true, e]; // the event body was not JSON
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
    if (failed) await postInvocationError(requestId, value);
    else await post(`${BASE}/invocation/${requestId}/response`, body);
    inFlight = null;
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
  try {
    if (inFlight !== null) {
      await post(`${BASE}/invocation/${inFlight}/error`, JSON.stringify(doc), doc.errorType);
    } else if (!initDone) {
      await post(`${BASE}/init/error`, JSON.stringify(doc), doc.errorType);
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
