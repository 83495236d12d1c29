//! SQS semantics: messages and their attributes, digests, limits; later
//! the queue engine and event source mappings (issue 24). Sits above
//! `dispatch`, below `aws`; never parses HTTP.

pub mod attributes;
pub mod message;
