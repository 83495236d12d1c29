// Logs how long each SQS message took from its sender (the body holds the
// send time, ms since the epoch, fractional) to this function.
exports.handler = async (event) => {
  const now = performance.timeOrigin + performance.now();
  for (const r of event.Records) {
    const m = JSON.parse(r.body);
    console.log('LAT ' + (now - m.t).toFixed(3) + ' ' + m.i);
  }
};
