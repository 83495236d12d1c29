//! End-to-end tests: the real `wisp` binary on port 0 with a temp data dir,
//! driven over HTTP and through its CLI, with guests built from `guests/`.

mod harness;

mod api;
mod apigw;
mod cluster;
mod events;
mod gateway;
mod hostile;
mod lifecycle;
mod process;
mod queue;
mod sdk;
mod sqs;
mod workflows;
