//! Event buses as EventBridge has them: buses, rules (an event pattern),
//! targets, and PutEvents. An accepted event is matched at once against
//! its bus's rules (an index keyed on `source` and `detail-type` keeps
//! that from growing with the number of rules), and one delivery per
//! matched rule and target is stored durably, on a queue wisp keeps for
//! itself, before PutEvents answers. Deliverers take them from there to
//! the targets, each on its own, retried with backoff by the target's
//! RetryPolicy and dead-lettered when it runs out. Schedules (EventBridge
//! Scheduler's, and rules' `ScheduleExpression`) fire from durable timers
//! into the same deliveries.

pub mod archive;
pub mod deliver;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod http;
pub use wisp_core::schedule as expression;
pub mod index;
pub mod model;
pub mod scheduler;
pub mod tail;

pub use engine::Events;
pub use error::EventsError;
