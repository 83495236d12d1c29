// An SQS consumer for wisp's event source mapping tests. Each record's
// body says what to do: `fail` always fails (reported in
// batchItemFailures), `failonce` fails on its first receive, `throw`
// fails the whole invocation; anything else is processed. In a FIFO
// batch, a failure also fails the rest of its group, as AWS asks.
exports.handler = async (event) => {
  const failures = [];
  const failedGroups = new Set();
  for (const r of event.Records) {
    const group = r.attributes.MessageGroupId;
    const first = r.attributes.ApproximateReceiveCount === '1';
    if (r.body === 'throw') throw new Error('the batch fails');
    const fails = r.body === 'fail' || (r.body.startsWith('failonce') && first)
      || (group !== undefined && failedGroups.has(group));
    if (fails) {
      if (group !== undefined) failedGroups.add(group);
      failures.push({ itemIdentifier: r.messageId });
      continue;
    }
    console.log('SQS ' + JSON.stringify(r));
  }
  return { batchItemFailures: failures };
};
