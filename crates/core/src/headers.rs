//! The headers wisp adds to requests and responses, as ready names: a
//! name given as a string is parsed, and a custom one copied to the heap,
//! on every insert.

use http::HeaderName;

/// The invocation's request id, on the request to the function and on
/// the response to the caller.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-wisp-request-id");
/// The route a gateway request matched, as written in the manifest.
pub const ROUTE: HeaderName = HeaderName::from_static("x-wisp-route");
/// The caller's address, appended by the gateway.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The caller's idempotency key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(crate::idempotency::HEADER);
/// Set on a response that replays an earlier call with the same
/// idempotency key (or, for an Event invoke, that queued nothing new).
pub const IDEMPOTENT_REPLAY: HeaderName = HeaderName::from_static("x-wisp-idempotent-replay");
