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

const http = require('http');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const env = process.env;
const API = env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const HOST = API.slice(0, API.lastIndexOf(':'));
const PORT = API.slice(API.lastIndexOf(':') + 1);
const BASE = '/2018-06-01/runtime';
const NEXT_PATH = `${BASE}/invocation/next`;
const TASK_ROOT = env.LAMBDA_TASK_ROOT || process.cwd();
// Lambda's Node runtime names the stack array "trace" in error documents
// (Python's uses "stackTrace"); keep the field name in one place.
const TRACE_KEY = 'trace';

// One kept-alive connection to the Runtime API. Idle agent sockets are
// unref'd, so they never keep the event loop alive on their own; that matters
// for the 'beforeExit' logic below.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// If the server dropped the kept connection while it sat idle, the request
// fails on the reused socket before the server saw it: retry once on a fresh
// connection (Node flags exactly this case with req.reusedSocket).
function request(method, urlPath, body, headers, retried) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { agent, host: HOST, port: PORT, method, path: urlPath, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
          resolve({ status: res.statusCode, headers: res.headers, body: buf.toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', (err) => {
      if (!retried && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        resolve(request(method, urlPath, body, headers, true));
      } else {
        reject(err);
      }
    });
    req.end(body);
  });
}

function post(urlPath, body, errorType) {
  const headers = {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  };
  // Node refuses header values with control or non-latin1 characters.
  if (errorType !== undefined) headers['Lambda-Runtime-Function-Error-Type'] = headerSafe(errorType);
  return request('POST', urlPath, body, headers);
}

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
