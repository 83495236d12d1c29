// Books and cancels the parts of a trip. A real one would call an airline,
// a hotel and a car rental; this one keeps nothing and fails on request
// (an order with `"unavailable": "car"`), to show the saga's compensations.

class Unavailable extends Error {
  constructor(message) {
    super(message);
    this.name = 'Unavailable';
  }
}

exports.reserve = async (event) => {
  const { kind, order } = event;
  const trip = order.trip;
  if (order.unavailable === kind) {
    throw new Unavailable(`no ${kind} available for trip ${trip}`);
  }
  const ref = `${kind}-${trip}-${Math.random().toString(36).slice(2, 8)}`;
  console.log(`reserved ${ref}`);
  return { kind, ref };
};

exports.cancel = async (event) => {
  console.log(`cancelled ${event.ref}`);
  return { cancelled: event.ref };
};
