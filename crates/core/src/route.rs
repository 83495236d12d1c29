//! Gateway route patterns (`/basket/{id}`, `/files/{proxy+}`) and the table
//! that picks the most specific match, the way API Gateway does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path, one or more segments. Only last.
    Greedy(String),
}

/// A parsed route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    segments: Vec<Segment>,
}

impl RoutePattern {
    /// Parses `/a/{b}/{rest+}`; the error says what is wrong and how to write it.
    pub fn parse(path: &str) -> Result<RoutePattern, String> {
        if !path.starts_with('/') {
            return Err(format!("route path `{path}` must start with `/`"));
        }
        if path.len() > 1024 {
            return Err("route path is longer than 1024 characters".into());
        }
        let mut segments = Vec::new();
        let mut names = Vec::new();
        let parts: Vec<&str> = path[1..].split('/').collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                if i + 1 == count && count == 1 {
                    break; // the root path `/`
                }
                return Err(format!("route path `{path}` has an empty segment"));
            }
            let segment = if let Some(inner) = part.strip_prefix('{') {
                let Some(inner) = inner.strip_suffix('}') else {
                    return Err(format!(
                        "segment `{part}` in `{path}` opens `{{` without closing it"
                    ));
                };
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!(
                        "parameter `{part}` in `{path}` needs a name of letters, digits, `_` or `-`"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice in `{path}`"));
                }
                names.push(name);
                if greedy {
                    if i + 1 != count {
                        return Err(format!(
                            "greedy parameter `{part}` must be the last segment of `{path}`"
                        ));
                    }
                    Segment::Greedy(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                }
            } else {
                if part.contains(['{', '}']) {
                    return Err(format!(
                        "segment `{part}` in `{path}` mixes text and a parameter; a parameter is a whole segment like `{{id}}`"
                    ));
                }
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        Ok(RoutePattern {
            text: path.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a request path (already percent-decoded per segment by the
    /// caller or not; parameters are returned as they appear).
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let path = path.strip_prefix('/')?;
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        let mut params = BTreeMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.insert(name.clone(), (*part).to_string());
                }
                Segment::Greedy(name) => {
                    let rest = parts.get(i..)?.join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    params.insert(name.clone(), rest);
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// The path with parameter names erased: `/a/{x}` and `/a/{y}` are the same route.
    fn shape(&self) -> Vec<&str> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(lit) => lit.as_str(),
                Segment::Param(_) => "{}",
                Segment::Greedy(_) => "{+}",
            })
            .collect()
    }

    /// Sort key: literal beats parameter beats greedy, segment by segment.
    fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
                Segment::Greedy(_) => 1,
            })
            .collect()
    }
}

/// HTTP methods a route may name; `ANY` matches all.
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY",
];

/// Which API Gateway event a Lambda (process) function behind a route
/// receives; wasm components get the HTTP request itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormat {
    /// HTTP API payload format 1.0 (the REST API proxy event).
    #[serde(rename = "1.0")]
    V1,
    /// HTTP API payload format 2.0, the default.
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

impl PayloadFormat {
    pub fn parse(s: &str) -> Result<PayloadFormat, String> {
        match s {
            "1.0" => Ok(PayloadFormat::V1),
            "2.0" => Ok(PayloadFormat::V2),
            other => Err(format!(
                "payload_format `{other}` is not one of \"1.0\", \"2.0\""
            )),
        }
    }
}

/// Whose requests share a rate limit's bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// One bucket for the whole route.
    #[default]
    Route,
    /// One bucket per client address.
    Ip,
    /// One bucket per value of this request header (lowercase).
    Header(String),
}

impl RateKey {
    /// Reads `route`, `ip` or `header:NAME`.
    pub fn parse(s: &str) -> Result<RateKey, String> {
        match s {
            "route" => Ok(RateKey::Route),
            "ip" => Ok(RateKey::Ip),
            other => match other.strip_prefix("header:") {
                Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                    Ok(RateKey::Header(h.to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "`{other}` is not a rate limit key; use \"route\", \"ip\" or \"header:NAME\""
                )),
            },
        }
    }
}

/// A token bucket per route (API Gateway's throttling): `rate` requests a
/// second on average, `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub rate: u32,
    pub burst: u32,
    #[serde(default)]
    pub per: RateKey,
}

impl RateLimit {
    pub fn validate(&self) -> Result<(), String> {
        if self.rate == 0 || self.burst == 0 {
            return Err("rate_limit needs rate and burst of at least 1".into());
        }
        if self.rate > limits::MAX_RATE_LIMIT || self.burst > limits::MAX_RATE_LIMIT {
            return Err(format!(
                "rate_limit rate and burst are at most {}",
                limits::MAX_RATE_LIMIT
            ));
        }
        Ok(())
    }
}

/// A response cache for GET and HEAD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePolicy {
    pub ttl_ms: u64,
    /// Request headers (lowercase) that vary the cached response.
    #[serde(default)]
    pub key_headers: Vec<String>,
}

/// A route as stored and sent over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
    #[serde(default)]
    pub payload_format: PayloadFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
}

impl Route {
    pub fn validate(&self) -> Result<RoutePattern, String> {
        if !METHODS.contains(&self.method.as_str()) {
            return Err(format!(
                "method `{}` is not one of {}",
                self.method,
                METHODS.join(", ")
            ));
        }
        crate::function::validate_name(&self.function)?;
        if let Some(r) = &self.rate_limit {
            r.validate()?;
        }
        if let Some(c) = &self.cache {
            if c.ttl_ms == 0 || c.ttl_ms > limits::MAX_CACHE_TTL_SECS * 1000 {
                return Err(format!(
                    "cache_ttl must be between 1ms and {}s",
                    limits::MAX_CACHE_TTL_SECS
                ));
            }
            if c.key_headers.len() > limits::MAX_CACHE_KEY_HEADERS {
                return Err(format!(
                    "at most {} cache_key_headers",
                    limits::MAX_CACHE_KEY_HEADERS
                ));
            }
        }
        RoutePattern::parse(&self.path)
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    Found {
        route: &'a Route,
        params: BTreeMap<String, String>,
    },
    /// The path exists under other methods.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

/// All routes of the gateway, most specific first.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<(RoutePattern, Route)>,
}

impl RouteTable {
    /// Builds the table; fails on an invalid route or a duplicate method+path.
    pub fn new(routes: Vec<Route>) -> Result<RouteTable, String> {
        let mut entries = Vec::with_capacity(routes.len());
        for route in routes {
            let pattern = route.validate()?;
            if entries.iter().any(|(p, r): &(RoutePattern, Route)| {
                p.shape() == pattern.shape() && r.method == route.method
            }) {
                return Err(format!(
                    "route {} {} is defined twice",
                    route.method, route.path
                ));
            }
            entries.push((pattern, route));
        }
        entries.sort_by(|(a, ra), (b, rb)| {
            b.specificity()
                .cmp(&a.specificity())
                .then_with(|| (ra.method == "ANY").cmp(&(rb.method == "ANY")))
        });
        Ok(RouteTable { entries })
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.entries.iter().map(|(_, r)| r)
    }

    pub fn lookup(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let mut allowed = Vec::new();
        for (pattern, route) in &self.entries {
            let Some(params) = pattern.matches(path) else {
                continue;
            };
            let method_ok = route.method == "ANY"
                || route.method == method
                || (method == "HEAD" && route.method == "GET");
            if method_ok {
                return RouteMatch::Found { route, params };
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed { allowed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, function: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            function: function.into(),
            payload_format: Default::default(),
            rate_limit: None,
            cache: None,
        }
    }

    #[test]
    fn parses_and_rejects_patterns() {
        assert!(RoutePattern::parse("/").is_ok());
        assert!(RoutePattern::parse("/a/{id}/{rest+}").is_ok());
        assert!(RoutePattern::parse("a").is_err());
        assert!(RoutePattern::parse("/a//b").is_err());
        assert!(RoutePattern::parse("/{rest+}/x").is_err());
        assert!(RoutePattern::parse("/{id}/{id}").is_err());
        assert!(RoutePattern::parse("/x{id}").is_err());
        assert!(RoutePattern::parse("/{id").is_err());
        assert!(RoutePattern::parse("/{}").is_err());
    }

    #[test]
    fn matches_params_and_greedy() {
        let p = RoutePattern::parse("/basket/{id}").unwrap();
        assert_eq!(p.matches("/basket/42").unwrap()["id"], "42");
        assert!(p.matches("/basket").is_none());
        assert!(p.matches("/basket/42/x").is_none());
        assert!(p.matches("/basket/").is_none());
        let g = RoutePattern::parse("/files/{proxy+}").unwrap();
        assert_eq!(g.matches("/files/a/b/c").unwrap()["proxy"], "a/b/c");
        assert!(g.matches("/files").is_none());
        assert!(RoutePattern::parse("/").unwrap().matches("/").is_some());
    }

    #[test]
    fn most_specific_route_wins_and_405_lists_methods() {
        let table = RouteTable::new(vec![
            route("ANY", "/{proxy+}", "catchall"),
            route("GET", "/basket/{id}", "get"),
            route("GET", "/basket/special", "special"),
            route("POST", "/basket/{id}", "post"),
        ])
        .unwrap();
        let found = |m, p| match table.lookup(m, p) {
            RouteMatch::Found { route, .. } => route.function.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(found("GET", "/basket/special"), "special");
        assert_eq!(found("GET", "/basket/7"), "get");
        assert_eq!(found("POST", "/basket/7"), "post");
        assert_eq!(found("HEAD", "/basket/7"), "get");
        assert_eq!(found("DELETE", "/basket/7"), "catchall");
        assert_eq!(found("GET", "/other"), "catchall");

        let table = RouteTable::new(vec![route("GET", "/only", "f")]).unwrap();
        assert_eq!(
            table.lookup("POST", "/only"),
            RouteMatch::MethodNotAllowed {
                allowed: vec!["GET".into()]
            }
        );
        assert_eq!(table.lookup("GET", "/nope"), RouteMatch::NotFound);
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let err = RouteTable::new(vec![
            route("GET", "/a/{x}", "f"),
            route("GET", "/a/{y}", "g"),
        ])
        .unwrap_err();
        assert!(err.contains("defined twice"));
    }

    proptest::proptest! {
        #[test]
        fn pattern_parse_and_match_never_panic(p in "[/a-z{}+]{0,30}", path in "[/a-z]{0,30}") {
            if let Ok(pattern) = RoutePattern::parse(&p) {
                let _ = pattern.matches(&path);
            }
        }
    }
}
