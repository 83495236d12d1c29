// An ordinary Lambda handler for API Gateway (payload format 2.0), unchanged.
exports.handler = async (event, context) => {
  const name = (event.queryStringParameters && event.queryStringParameters.name) || 'world';
  console.log(`greeting ${name}`);
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: `Hello, ${name}!`, requestId: context.awsRequestId }),
  };
};
