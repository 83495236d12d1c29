//! Traffic control in front of functions: per-route token buckets (so a
//! downstream system never sees more than `rate + burst` in a second) and a
//! response cache for GET and HEAD.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use wisp_core::limits::{MAX_CACHE_BYTES, MAX_CACHE_ENTRY_BYTES, MAX_RATE_LIMIT_KEYS};
use wisp_core::route::{CachePolicy, RateKey, RateLimit, Route};
use wisp_core::runtime::{full_body, Body, BoxError};

/// Identifies a route across route-table swaps.
pub(crate) fn route_id(route: &Route) -> String {
    format!("{} {}", route.method, route.path)
}

/// One route's bucket(s), on a clock that tests can move.
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    config: RateLimit,
    clock: C,
    buckets: RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<C::Instant>>,
}

impl Limiter {
    fn new(config: &RateLimit) -> Limiter {
        Limiter::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    fn with_clock(config: &RateLimit, clock: C) -> Limiter<C> {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(config.rate).unwrap_or(one))
            .allow_burst(NonZeroU32::new(config.burst).unwrap_or(one));
        Limiter {
            config: config.clone(),
            buckets: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// `Err(wait)` when the caller must wait before trying again.
    pub(crate) fn check(&self, headers: &HeaderMap, client_ip: &str) -> Result<(), Duration> {
        let key = match &self.config.per {
            RateKey::Route => String::new(),
            RateKey::Ip => client_ip.to_string(),
            RateKey::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        };
        if self.buckets.len() > MAX_RATE_LIMIT_KEYS {
            // Buckets back at full capacity hold nothing worth keeping.
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The rate limiters of the current route table, kept across swaps when a
/// route's limit is unchanged (a redeploy does not refill the buckets).
pub(crate) fn limiters(
    routes: &[Route],
    previous: &HashMap<String, Arc<Limiter>>,
) -> HashMap<String, Arc<Limiter>> {
    let mut out = HashMap::new();
    for route in routes {
        if let Some(config) = &route.rate_limit {
            let id = route_id(route);
            let limiter = match previous.get(&id) {
                Some(l) if l.config == *config => l.clone(),
                _ => Arc::new(Limiter::new(config)),
            };
            out.insert(id, limiter);
        }
    }
    out
}

/// A 429 with `Retry-After`, in API Gateway's body shape.
pub(crate) fn too_many_requests(wait: Duration) -> Response<Body> {
    let mut r = crate::error_response(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", None);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

/// A response kept by the cache.
pub(crate) struct Cached {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    expires: Instant,
}

impl Cached {
    fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        (self.body.len() + headers + 64).min(u32::MAX as usize) as u32
    }

    pub(crate) fn response(&self, head_only: bool) -> Response<Body> {
        let body = if head_only {
            Bytes::new()
        } else {
            self.body.clone()
        };
        let mut r = Response::new(full_body(body));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r.headers_mut()
            .insert("x-wisp-cache", HeaderValue::from_static("hit"));
        r
    }
}

/// Responses by route, method, path, query and the headers the route names.
pub(crate) struct ResponseCache {
    entries: moka::sync::Cache<String, Arc<Cached>>,
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Arc<Cached>,
        now: Instant,
    ) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(now))
    }
}

impl Default for ResponseCache {
    fn default() -> Self {
        ResponseCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHE_BYTES)
                .weigher(|_, v: &Arc<Cached>| v.weight())
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

/// The cache key of a request on a caching route; `None` when the request
/// is not cacheable (not GET or HEAD, or the client says `no-cache`).
pub(crate) fn cache_key(
    route: &Route,
    policy: &CachePolicy,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Option<String> {
    if *method != Method::GET && *method != Method::HEAD {
        return None;
    }
    let client_says_no = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache") || v.contains("no-store"));
    if client_says_no {
        return None;
    }
    // HEAD is answered from the GET entry.
    let mut key = format!("{}\n{}", route_id(route), uri.path());
    key.push('\n');
    key.push_str(uri.query().unwrap_or(""));
    for name in &policy.key_headers {
        key.push('\n');
        key.push_str(name);
        key.push('=');
        for v in headers.get_all(name.as_str()) {
            key.push_str(&String::from_utf8_lossy(v.as_bytes()));
            key.push(',');
        }
    }
    Some(key)
}

/// Whether a function's response may be cached: a 200 that does not say
/// `no-store`, `private` or `no-cache`, with a known small body.
fn storable(response: &Response<Body>) -> bool {
    let forbidden = response
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("no-store") || v.contains("private") || v.contains("no-cache"));
    let too_big = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_CACHE_ENTRY_BYTES);
    response.status() == StatusCode::OK && !forbidden && !too_big
}

impl ResponseCache {
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.entries.get(key)
    }

    /// Passes a fresh response through, keeping a copy when it may be
    /// cached. The body is read up to the entry limit; a larger one streams
    /// on uncached.
    pub(crate) async fn store(
        &self,
        key: String,
        ttl: Duration,
        response: Response<Body>,
        head_only: bool,
    ) -> Response<Body> {
        use http_body_util::BodyExt;
        let mark = |mut r: Response<Body>| {
            r.headers_mut()
                .insert("x-wisp-cache", HeaderValue::from_static("miss"));
            r
        };
        if !storable(&response) {
            return mark(response);
        }
        let (parts, mut body) = response.into_parts();
        let mut buf = bytes::BytesMut::new();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                        if buf.len() > MAX_CACHE_ENTRY_BYTES {
                            let rest = Prefixed {
                                prefix: Some(buf.freeze()),
                                rest: body,
                            };
                            return mark(Response::from_parts(parts, BodyExt::boxed_unsync(rest)));
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed; not cached");
                    let failed = Prefixed {
                        prefix: Some(buf.freeze()),
                        rest: full_body(Bytes::new()),
                    };
                    return mark(Response::from_parts(parts, BodyExt::boxed_unsync(failed)));
                }
                None => break,
            }
        }
        let body = buf.freeze();
        let mut headers = parts.headers.clone();
        headers.remove(wisp_core::headers::REQUEST_ID);
        if !head_only {
            self.entries.insert(
                key,
                Arc::new(Cached {
                    status: parts.status,
                    headers,
                    body: body.clone(),
                    expires: Instant::now() + ttl,
                }),
            );
        }
        mark(Response::from_parts(parts, full_body(body)))
    }
}

/// A body that yields `prefix` and then whatever `rest` still has.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(limit: Option<RateLimit>) -> Route {
        Route {
            method: "GET".into(),
            path: "/x".into(),
            function: "f".into(),
            payload_format: Default::default(),
            rate_limit: limit,
            cache: None,
        }
    }

    #[test]
    fn a_burst_passes_then_the_bucket_refuses_with_a_wait() {
        let config = RateLimit {
            rate: 1,
            burst: 3,
            per: RateKey::Route,
        };
        let l = Limiter::new(&config);
        let h = HeaderMap::new();
        for _ in 0..3 {
            assert!(l.check(&h, "1.1.1.1").is_ok());
        }
        let wait = l.check(&h, "1.1.1.1").unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
    }

    /// The refill at its bound, on a clock the test moves: rate 2/s
    /// means a token every 500 ms, and not a millisecond sooner.
    #[test]
    fn the_bucket_refills_at_its_rate() {
        let clock = governor::clock::FakeRelativeClock::default();
        let config = RateLimit {
            rate: 2,
            burst: 3,
            per: RateKey::Route,
        };
        let l = Limiter::with_clock(&config, clock.clone());
        let h = HeaderMap::new();
        for _ in 0..3 {
            assert!(l.check(&h, "ip").is_ok());
        }
        assert_eq!(l.check(&h, "ip"), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(499));
        assert_eq!(l.check(&h, "ip"), Err(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        assert!(l.check(&h, "ip").is_ok());
        assert!(l.check(&h, "ip").is_err());
        // A full second refills two, not the burst.
        clock.advance(Duration::from_secs(1));
        assert!(l.check(&h, "ip").is_ok());
        assert!(l.check(&h, "ip").is_ok());
        assert!(l.check(&h, "ip").is_err());
    }

    #[test]
    fn keys_get_their_own_buckets() {
        let config = RateLimit {
            rate: 1,
            burst: 1,
            per: RateKey::Header("x-api-key".into()),
        };
        let l = Limiter::new(&config);
        let mut a = HeaderMap::new();
        a.insert("x-api-key", HeaderValue::from_static("a"));
        let mut b = HeaderMap::new();
        b.insert("x-api-key", HeaderValue::from_static("b"));
        assert!(l.check(&a, "ip").is_ok());
        assert!(l.check(&a, "ip").is_err());
        assert!(l.check(&b, "ip").is_ok());
        let by_ip = Limiter::new(&RateLimit {
            rate: 1,
            burst: 1,
            per: RateKey::Ip,
        });
        assert!(by_ip.check(&a, "1.1.1.1").is_ok());
        assert!(by_ip.check(&a, "2.2.2.2").is_ok());
        assert!(by_ip.check(&a, "1.1.1.1").is_err());
    }

    #[test]
    fn unchanged_limits_keep_their_buckets_across_route_swaps() {
        let config = RateLimit {
            rate: 1,
            burst: 1,
            per: RateKey::Route,
        };
        let first = limiters(&[route(Some(config.clone()))], &HashMap::new());
        let again = limiters(&[route(Some(config))], &first);
        assert!(Arc::ptr_eq(&first["GET /x"], &again["GET /x"]));
        let changed = limiters(
            &[route(Some(RateLimit {
                rate: 2,
                burst: 1,
                per: RateKey::Route,
            }))],
            &again,
        );
        assert!(!Arc::ptr_eq(&again["GET /x"], &changed["GET /x"]));
    }

    #[test]
    fn cache_keys_cover_path_query_and_named_headers() {
        let r = route(None);
        let policy = CachePolicy {
            ttl_ms: 1000,
            key_headers: vec!["accept-language".into()],
        };
        let uri: http::Uri = "/x?a=1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static("de"));
        let k1 = cache_key(&r, &policy, &Method::GET, &uri, &h).unwrap();
        h.insert("accept-language", HeaderValue::from_static("fr"));
        let k2 = cache_key(&r, &policy, &Method::GET, &uri, &h).unwrap();
        assert_ne!(k1, k2);
        assert_eq!(cache_key(&r, &policy, &Method::HEAD, &uri, &h), Some(k2));
        assert!(cache_key(&r, &policy, &Method::POST, &uri, &h).is_none());
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        assert!(cache_key(&r, &policy, &Method::GET, &uri, &h).is_none());
    }
}
