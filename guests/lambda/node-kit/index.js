// A Node function with one behaviour per `event.action`, for wisp's tests.
const started = Date.now();
let calls = 0;

exports.handler = async (event, context) => {
  calls += 1;
  // Behind the gateway the event is API Gateway's; `?action=` picks then.
  const query = (event && event.queryStringParameters) || {};
  // An async destination record carries the event it is about.
  const action = (event && event.action) || query.action
    || (event && event.requestPayload !== undefined ? 'destination' : null)
    || (event && event.requestContext ? 'http' : 'echo');
  switch (action) {
    case 'echo':
      return {
        event,
        calls,
        pid: process.pid,
        requestId: context.awsRequestId,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        memoryLimitInMB: context.memoryLimitInMB,
        invokedFunctionArn: context.invokedFunctionArn,
        remaining: context.getRemainingTimeInMillis(),
        region: process.env.AWS_REGION,
        handler: process.env._HANDLER,
        taskRoot: process.env.LAMBDA_TASK_ROOT,
        stage: process.env.STAGE,
        clientContext: context.clientContext,
        runtimeApi: process.env.AWS_LAMBDA_RUNTIME_API,
      };
    case 'env': {
      const names = ['AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_LAMBDA_LOG_GROUP_NAME', 'TZ', 'LANG',
        'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_VERSION',
        'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_INITIALIZATION_TYPE', 'LAMBDA_TASK_ROOT',
        'LAMBDA_RUNTIME_DIR', '_HANDLER', '_X_AMZN_TRACE_ID', 'AWS_REGION', 'STAGE'];
      return Object.fromEntries(names.map((n) => [n, process.env[n] ?? null]));
    }
    case 'log':
      console.log('hello from node', event.n);
      console.error('to stderr');
      return 'logged';
    case 'destination':
      console.log('DESTINATION ' + JSON.stringify(event));
      return 'noted';
    case 'sleep':
      await new Promise((r) => setTimeout(r, event.ms));
      return 'slept';
    case 'mark':
      // Leaves a mark of this run, then runs on: a run to cut off.
      require('fs').appendFileSync(event.file, `${event.n}\n`);
      await new Promise((r) => setTimeout(r, event.ms));
      return 'marked';
    case 'spin':
      for (;;) {}
    case 'throw':
      throw new TypeError('bad input: ' + (event.what || query.what));
    case 'crash':
      setTimeout(() => process.exit(3), 1);
      await new Promise((r) => setTimeout(r, 1000));
      return 'unreachable';
    case 'oom': {
      const keep = [];
      for (;;) keep.push(Buffer.alloc(1024 * 1024, 1));
    }
    case 'child':
      // A grandchild that would outlive a careless kill.
      require('child_process').spawn('sleep', ['600'], { stdio: 'ignore' });
      for (;;) {}
    case 'big':
      return 'x'.repeat(event.bytes);
    case 'http':
      return {
        statusCode: 201,
        headers: { 'content-type': 'application/json', 'x-kit': 'node' },
        cookies: ['a=1', 'b=2'],
        body: JSON.stringify({
          method: event.requestContext && event.requestContext.http
            ? event.requestContext.http.method : event.httpMethod,
          path: event.rawPath || event.path,
          query: event.queryStringParameters,
          params: event.pathParameters,
          body: event.body,
          isBase64Encoded: event.isBase64Encoded,
          version: event.version,
        }),
      };
    case 'plain':
      return { hello: 'world' };
    case 'poll':
      // Polls someone's Runtime API for the next event: another
      // function's must refuse.
      return new Promise((resolve) => {
        const req = require('http').get(`http://${event.target}/2018-06-01/runtime/invocation/next`, (res) => {
          let body = '';
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.setTimeout(3000, () => { req.destroy(); resolve({ status: 'timeout' }); });
        req.on('error', (e) => resolve({ status: 'error', error: e.message }));
      });
    default:
      throw new Error('unknown action ' + action);
  }
};

exports.callback = (event, context, callback) => {
  if (event.fail) {
    callback(new Error('callback failed'));
  } else {
    callback(null, { via: 'callback', uptimeMs: Date.now() - started });
  }
};
