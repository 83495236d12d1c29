//! SQS semantics: messages and their attributes, digests, limits, and
//! the queue engine over a `QueueStore`. Sits above `dispatch`, below
//! `aws`; never parses HTTP.

pub mod attributes;
pub mod engine;
pub mod error;
pub mod mappings;
pub mod message;

pub use engine::{Message, Queue, QueueStats, ReceiveOptions, SendEntry, SendResult, Sqs};
pub use error::SqsError;
pub use mappings::{MappingChange, MappingConfig, MappingError, MappingStats, Mappings};
