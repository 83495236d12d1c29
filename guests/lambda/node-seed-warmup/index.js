// Verbatim from ../shared/seeds/000: a keep-warm check, unchanged.
exports.handler = async (event, context) => {
  if (event.source === 'serverless-plugin-warmup') {
    return 'Lambda is warm';
  }
  // Function code here
};
