//! The checks every backend passes, one module per concern. Each takes the
//! concern's trait object on a store that holds nothing yet, so the
//! embedded store and the clustered one run exactly the same checks and
//! cannot drift apart. A new stored concept comes with its checks here.

pub mod archives;
pub mod code;
pub mod documents;
pub mod events;
pub mod executions;
pub mod keys;
pub mod queues;
pub mod records;
pub mod registry;
pub mod timers;
