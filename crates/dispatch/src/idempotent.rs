//! Idempotent invocation: a key runs its function once; every later call
//! with the key, including one that arrives while the first is running,
//! gets the first call's stored result. A failed run is not stored, so a
//! retry of it runs again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use wisp_core::idempotency::{IdempotencyConfig, JsonPath};
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime::{collect_limited, full_body, Body};
use wisp_core::Cause;
use wisp_core::{FunctionVersion, InvokeError};
use wisp_store::{setting_kinds, Claim, KeyOutcome, StoreError};

use crate::{refused, Dispatched, Dispatcher, Permit};

/// How often a waiting duplicate looks at the store, besides being woken
/// by the run it waits for.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// A stored result: the function's raw response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Base64.
    pub body: String,
    pub version: String,
}

impl StoredResponse {
    pub fn new(status: u16, headers: &http::HeaderMap, body: &[u8], version: &str) -> Self {
        StoredResponse {
            status,
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            body: base64::engine::general_purpose::STANDARD.encode(body),
            version: version.to_string(),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .unwrap_or_default()
    }

    fn to_response(&self) -> http::Response<Body> {
        let mut builder = http::Response::builder().status(self.status);
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder
            .body(full_body(Bytes::from(self.body())))
            .unwrap_or_else(|_| http::Response::new(full_body(Bytes::new())))
    }
}

/// Wakes the calls waiting on a key when its run ends.
#[derive(Default)]
pub(crate) struct Waiters {
    by_key: Mutex<HashMap<(String, String), Arc<Notify>>>,
}

impl Waiters {
    fn get(&self, function: &str, key: &str) -> Arc<Notify> {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((function.to_string(), key.to_string()))
            .or_default()
            .clone()
    }

    pub(crate) fn wake(&self, function: &str, key: &str) {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.remove(&(function.to_string(), key.to_string())) {
            n.notify_waiters();
        }
    }
}

/// The setting that holds a function's idempotency config:
/// `{"key": "$.path", "ttl_secs": N}`.
pub fn config_from_setting(v: &serde_json::Value) -> IdempotencyConfig {
    let mut c = IdempotencyConfig {
        key_path: v["key"].as_str().and_then(|p| JsonPath::parse(p).ok()),
        ..IdempotencyConfig::default()
    };
    if let Some(ttl) = v["ttl_secs"].as_u64().filter(|t| *t > 0) {
        c.ttl = Duration::from_secs(ttl);
    }
    c
}

impl Dispatcher {
    /// A function's idempotency settings (cached until `forget`).
    pub async fn idempotency(&self, function: &str) -> Result<Arc<IdempotencyConfig>, StoreError> {
        if let Some(c) = self
            .idempotency
            .lock()
            .ok()
            .and_then(|m| m.get(function).cloned())
        {
            return Ok(c);
        }
        let config = self
            .store
            .get_setting(function, setting_kinds::IDEMPOTENCY, "")
            .await?
            .map(|v| config_from_setting(&v))
            .unwrap_or_default();
        let config = Arc::new(config);
        if let Ok(mut m) = self.idempotency.lock() {
            m.insert(function.to_string(), config.clone());
        }
        Ok(config)
    }

    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// Invokes `version` once per `key`: the first call runs it, the others
    /// get its stored response (`replayed` set) or, while it runs, wait.
    pub async fn invoke_once(
        &self,
        version: &FunctionVersion,
        request: http::Request<Body>,
        trigger: &str,
        key: &str,
        ttl: Duration,
        request_id: String,
    ) -> Dispatched {
        let function = version.function.clone();
        // A duplicate waits at most as long as the run it waits for may take.
        let patience = Duration::from_millis(version.config.timeout_ms) + Duration::from_secs(10);
        let started = tokio::time::Instant::now();
        loop {
            let notify = self.waiters.get(&function, key);
            let notified = notify.notified();
            let now = self.now_ms();
            // The slot comes first: a key is only claimed by a call that
            // runs now, so a crash never leaves it held by one that was
            // merely throttled. A throttled call still gets a finished
            // call's result.
            let permit = match self.admit(&function) {
                Ok(permit) => permit,
                Err(error) => {
                    return match self.store.key_holder(&function, key, now).await {
                        Ok(Some(Claim::Done {
                            request_id: first,
                            result,
                        })) => replay(first, version, &result),
                        _ => refused(&request_id, version, error),
                    }
                }
            };
            let claim = self
                .store
                .claim_key(
                    &function,
                    key,
                    &request_id,
                    now,
                    now + ttl.as_millis() as i64,
                )
                .await;
            match claim {
                Err(e) => {
                    return refused(&request_id, version, InvokeError::platform(e.to_string()))
                }
                Ok(Claim::Done {
                    request_id: first,
                    result,
                }) => return replay(first, version, &result),
                Ok(Claim::Running { .. }) if started.elapsed() < patience => {
                    drop(permit);
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(WAIT_POLL) => {}
                    }
                }
                Ok(Claim::Running { request_id: first }) => {
                    return refused(
                        &request_id,
                        version,
                        InvokeError::new(
                            Cause::Conflict,
                            format!("the call {first} with this idempotency key is still running"),
                        ),
                    )
                }
                Ok(Claim::Interrupted { request_id: first }) => {
                    return refused(
                        &request_id,
                        version,
                        InvokeError::new(
                            Cause::Conflict,
                            format!(
                                "the call {first} with this idempotency key was running when the server \
                                 stopped; whether it took effect is unknown, so it is not run again \
                                 until the key expires"
                            ),
                        ),
                    )
                }
                Ok(Claim::Claimed) => {
                    return self
                        .run_claimed(version, request, trigger, (key, ttl), request_id, permit)
                        .await
                }
            }
        }
    }

    async fn run_claimed(
        &self,
        version: &FunctionVersion,
        request: http::Request<Body>,
        trigger: &str,
        (key, ttl): (&str, Duration),
        request_id: String,
        permit: Permit,
    ) -> Dispatched {
        let mut dispatched = self
            .invoke_admitted(version, request, trigger, request_id.clone(), permit)
            .await;
        let mut stored = None;
        dispatched.response = match dispatched.response {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                match collect_limited(body, MAX_SYNC_PAYLOAD_BYTES).await {
                    Ok(bytes) => {
                        if !parts.status.is_server_error() {
                            stored = Some(StoredResponse::new(
                                parts.status.as_u16(),
                                &parts.headers,
                                &bytes,
                                &dispatched.version,
                            ));
                        }
                        Ok(http::Response::from_parts(parts, full_body(bytes)))
                    }
                    Err(e) => Err(InvokeError::new(
                        Cause::BadResponse,
                        format!("the function's response failed: {e}"),
                    )),
                }
            }
            Err(e) => Err(e),
        };
        let outcome = match &stored {
            Some(s) => KeyOutcome::Done {
                result: serde_json::to_vec(s).unwrap_or_default(),
                expires_ms: self.now_ms() + ttl.as_millis() as i64,
            },
            None => KeyOutcome::Release,
        };
        if let Err(e) = self
            .store
            .finish_key(&version.function, key, &request_id, outcome)
            .await
        {
            tracing::warn!(function = %version.function, error = %e, "cannot store the idempotent result");
        }
        self.waiters.wake(&version.function, key);
        dispatched
    }
}

fn replay(first: String, version: &FunctionVersion, result: &[u8]) -> Dispatched {
    let (_, record) = tokio::sync::oneshot::channel();
    let response = serde_json::from_slice::<StoredResponse>(result)
        .map(|s| (s.version.clone(), s.to_response()))
        .map_err(|e| InvokeError::platform(format!("corrupt stored result: {e}")));
    let (executed, response) = match response {
        Ok((v, r)) => (v, Ok(r)),
        Err(e) => (version.version.clone(), Err(e)),
    };
    Dispatched {
        request_id: first,
        version: executed,
        response,
        record,
        replayed: true,
    }
}
