//! Every bound wisp enforces on outside input, in one place.
//!
//! Each limit is enforced where the input enters (gateway, API, manifest
//! loader, zip reader, runtime) and tested at max and max+1.

use std::time::Duration;

/// Largest synchronous invoke payload and response (Lambda: 6 MB).
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest asynchronous invoke payload (Lambda: 256 KB).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest request body the gateway passes to a function.
pub const MAX_GATEWAY_BODY_BYTES: usize = MAX_SYNC_PAYLOAD_BYTES;
/// Most request headers the listeners accept before answering 431.
pub const MAX_HEADER_COUNT: usize = 100;
/// Largest request head (request line and headers) before 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Longest a client may take to send a request's head (request line and
/// headers), from its first byte. Slower clients are disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may sit with no request in progress (a new one
/// before its first byte, a kept-alive one between requests).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request body must arrive within this time after its head...
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// ...plus one second for every this many bytes received, so a large
/// upload on a slow link passes and a trickle does not hold a connection.
pub const BODY_MIN_BYTES_PER_SEC: u64 = 64 * 1024;
/// Open connections each listener holds; past them a new connection is
/// answered 503 and closed, and the open ones carry on.
pub const MAX_GATEWAY_CONNECTIONS: usize = 8192;
pub const MAX_API_CONNECTIONS: usize = 1024;
/// Largest control-plane request body (a base64 zip inside JSON).
pub const MAX_API_BODY_BYTES: usize = 70 * 1024 * 1024;
/// Largest zip accepted by CreateFunction / UpdateFunctionCode (Lambda: 50 MB).
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;
/// Largest total size of a zip's entries once unpacked (Lambda: 250 MB).
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;
/// Most entries in a code zip.
pub const MAX_ZIP_ENTRIES: usize = 10_000;
/// Largest `wisp.toml`.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Most functions and routes in one manifest.
pub const MAX_MANIFEST_FUNCTIONS: usize = 1000;
pub const MAX_MANIFEST_ROUTES: usize = 10_000;
/// Longest function or alias name (Lambda: 64).
pub const MAX_NAME_LEN: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Largest environment, keys plus values (Lambda: 4 KB).
pub const MAX_ENVIRONMENT_BYTES: usize = 4 * 1024;
/// Memory bounds for a function, in MiB, and the default.
pub const MIN_MEMORY_MB: u32 = 16;
pub const MAX_MEMORY_MB: u32 = 10_240;
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Timeout bounds for a function, in seconds, and the default (Lambda's).
pub const MIN_TIMEOUT_SECS: u64 = 1;
pub const MAX_TIMEOUT_SECS: u64 = 900;
pub const DEFAULT_TIMEOUT_SECS: u64 = 3;
/// Guest output kept per invocation; past it the rest is dropped with a marker.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 256 * 1024;
/// Longest single log line kept; longer lines are cut.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
/// Longest error message kept from a function (a thrown error's message,
/// a trap's); longer ones are cut on a character boundary.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2048;
/// Bytes of an invocation's log returned by Invoke with `LogType=Tail`
/// (Lambda: the last 4 KB).
pub const LOG_TAIL_BYTES: usize = 4096;
/// Runtime API connections one worker's process may hold open at once.
pub const MAX_RUNTIME_API_CONNECTIONS: usize = 64;
/// Most entries of `allowed_outbound_hosts`.
pub const MAX_OUTBOUND_HOSTS: usize = 100;
/// Largest `instance_reuse` count.
pub const MAX_INSTANCE_REUSE: u32 = 10_000;
/// Most provisioned workers per function version.
pub const MAX_PROVISIONED_CONCURRENCY: u32 = 1000;
/// Largest rate or burst of a route's rate limit (requests).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
/// Most distinct clients a keyed rate limit tracks before idle ones are dropped.
pub const MAX_RATE_LIMIT_KEYS: usize = 100_000;
/// Longest a route may cache a response.
pub const MAX_CACHE_TTL_SECS: u64 = 3600;
/// Most headers a route's cache key may name.
pub const MAX_CACHE_KEY_HEADERS: usize = 10;
/// Bytes of responses the gateway cache holds in all.
pub const MAX_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest single response the gateway caches.
pub const MAX_CACHE_ENTRY_BYTES: usize = 1024 * 1024;
/// How long records and logs are kept by default.
pub const DEFAULT_RETENTION_SECS: u64 = 14 * 24 * 3600;
/// How long a closed workflow execution (and its history) is kept, as
/// Step Functions keeps them: 90 days.
pub const EXECUTION_RETENTION_SECS: u64 = 90 * 24 * 3600;
/// Most items one list call returns.
pub const MAX_LIST_ITEMS: usize = 1000;
/// Allowed clock skew of a signed API request (AWS: 15 minutes).
pub const MAX_SIGNATURE_SKEW_SECS: i64 = 15 * 60;
/// Most records or log lines buffered for the store writer before
/// completions wait for it.
pub const RECORD_QUEUE_DEPTH: usize = 16 * 1024;

/// Lambda's bounds of MaximumRetryAttempts and MaximumEventAgeInSeconds.
pub const MAX_ASYNC_RETRIES: u32 = 2;
pub const MIN_EVENT_AGE_SECS: u64 = 60;
pub const MAX_EVENT_AGE_SECS: u64 = 21_600;
/// The longest an idempotency key is remembered.
pub const MAX_IDEMPOTENCY_TTL_SECS: u64 = 7 * 24 * 3600;
/// Idempotency keys longer than this are refused.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Most functions loaded into memory when the server starts (their
/// `$LATEST` and aliased versions); the rest load on their first call.
pub const MAX_PRELOADED_FUNCTIONS: usize = 2000;

// The longest bodies must fit in their time: at the minimum rate, a
// maximal API body earns its time on top of the base.
const _: () = assert!(HEADER_READ_TIMEOUT.as_secs() < IDLE_TIMEOUT.as_secs());
const _: () = assert!(BODY_MIN_BYTES_PER_SEC > 0);
const _: () = assert!(MAX_ASYNC_PAYLOAD_BYTES <= MAX_SYNC_PAYLOAD_BYTES);
const _: () = assert!(MAX_ZIP_BYTES < MAX_API_BODY_BYTES);
const _: () = assert!(MAX_API_CONNECTIONS <= MAX_GATEWAY_CONNECTIONS);
