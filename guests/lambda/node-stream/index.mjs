// A streaming handler as AWS documents them: awslambda.streamifyResponse,
// and HttpResponseStream.from for a function behind HTTP. `gate`: a URL to
// fetch between the first chunk and the rest, so a test can hold the
// function until it has read that chunk.
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.http || event.requestContext) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { 'content-type': 'text/plain', 'x-streamed': 'yes' },
      cookies: ['flavour=oat'],
    });
  } else if (event.contentType) {
    responseStream.setContentType(event.contentType);
  }
  responseStream.write('first;');
  const gate = event.gate || (event.queryStringParameters || {}).gate;
  if (gate) {
    const answer = await fetch(gate);
    responseStream.write(`gate:${await answer.text()};`);
  }
  if (event.fail) throw new TypeError('broke midway');
  if (event.pipe) {
    await pipeline(Readable.from(['piped;', 'more;']), responseStream);
    return;
  }
  responseStream.write(`request:${context.awsRequestId};`);
  responseStream.end('last');
});
