// The effect the async load script counts: one line per run, appended to
// a file that outlives a killed server.
const fs = require('fs');

exports.handler = async (event) => {
  fs.appendFileSync(process.env.EFFECT_FILE, `${event.id}\n`);
  return 'ok';
};
