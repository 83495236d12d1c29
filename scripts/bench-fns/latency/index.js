// Logs how long each SQS message or bus event took from its sender (the
// body, or the event's detail, holds the send time, ms since the epoch,
// fractional) to this function.
exports.handler = async (event) => {
  const now = performance.timeOrigin + performance.now();
  const sent = event.Records ? event.Records.map((r) => JSON.parse(r.body)) : [event.detail];
  for (const m of sent) {
    console.log('LAT ' + (now - m.t).toFixed(3) + ' ' + m.i);
  }
};
