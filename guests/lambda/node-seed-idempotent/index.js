// Verbatim from ../shared/seeds/000: in-memory idempotency, unchanged.
let processed = new Set();
exports.handler = async (event) => {
  if (processed.has(event.transactionId)) {
    return 'Already processed';
  }
  processed.add(event.transactionId);
  // Process transaction
};
