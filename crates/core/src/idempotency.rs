//! Idempotency keys: where a call's key comes from (a header, or a JSONPath
//! into its payload) and how long it is remembered. Pure.

use std::time::Duration;

use serde_json::Value;

use crate::limits::{MAX_IDEMPOTENCY_KEY_BYTES, MAX_IDEMPOTENCY_TTL_SECS};

/// The header that carries a caller's idempotency key.
pub const HEADER: &str = "x-wisp-idempotency-key";

/// A function's idempotency settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// Where in the payload the key is, if anywhere.
    pub key_path: Option<JsonPath>,
    /// How long a completed call's result is replayed.
    pub ttl: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            key_path: None,
            ttl: Duration::from_secs(3600),
        }
    }
}

impl IdempotencyConfig {
    pub fn check_ttl(ttl: Duration) -> Result<(), String> {
        if ttl.is_zero() || ttl.as_secs() > MAX_IDEMPOTENCY_TTL_SECS {
            return Err(format!(
                "the idempotency TTL must be between 1s and {MAX_IDEMPOTENCY_TTL_SECS}s"
            ));
        }
        Ok(())
    }

    /// The key of a call: the header when the caller sent one, else the
    /// value at `key_path` in a JSON payload. A string is the key as is;
    /// any other value is its compact JSON.
    pub fn key(&self, header: Option<&str>, payload: &[u8]) -> Result<Option<String>, String> {
        let key = match (header, &self.key_path) {
            (Some(h), _) if !h.is_empty() => Some(h.to_string()),
            (_, Some(path)) => serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| path.find(&v).cloned())
                .filter(|v| !v.is_null())
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }),
            _ => None,
        };
        match key {
            Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_BYTES => Err(format!(
                "the idempotency key is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
                k.len()
            )),
            other => Ok(other),
        }
    }
}

/// A JSONPath of member names and array indexes: `$.order.id`,
/// `$.items[0].sku`, `$["odd key"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Member(String),
    Index(usize),
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| {
            format!("JSONPath `{text}`: {why} (write it like `$.order.id` or `$.items[0].sku`)")
        };
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| bad("must start with `$`"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() || name == "*" {
                    return Err(bad("a member name is missing after `.`"));
                }
                steps.push(Step::Member(name.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").ok_or_else(|| bad("`[\"` is not closed"))?;
                steps.push(Step::Member(r[..end].to_string()));
                rest = &r[end + 2..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("`[` is not closed"))?;
                let index = r[..end]
                    .parse()
                    .map_err(|_| bad("only plain array indexes are supported in `[...]`"))?;
                steps.push(Step::Index(index));
                rest = &r[end + 1..];
            } else {
                return Err(bad("expected `.` or `[` "));
            }
        }
        if steps.is_empty() {
            return Err(bad("names no member"));
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn find<'a>(&self, mut v: &'a Value) -> Option<&'a Value> {
        for step in &self.steps {
            v = match step {
                Step::Member(name) => v.get(name)?,
                Step::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_find_members_and_indexes() {
        let v = json!({ "order": { "id": "o-1", "items": [{ "sku": 7 }] }, "odd key": true });
        let find = |p: &str| JsonPath::parse(p).unwrap().find(&v).cloned();
        assert_eq!(find("$.order.id"), Some(json!("o-1")));
        assert_eq!(find("$.order.items[0].sku"), Some(json!(7)));
        assert_eq!(find("$[\"odd key\"]"), Some(json!(true)));
        assert_eq!(find("$.order.missing"), None);
        assert_eq!(find("$.order.items[3]"), None);
        for bad in ["order.id", "$", "$.", "$.a[x]", "$.a[0", "$..a", "$.*"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_wins_over_the_payload() {
        let config = IdempotencyConfig {
            key_path: Some(JsonPath::parse("$.transactionId").unwrap()),
            ..IdempotencyConfig::default()
        };
        let payload = br#"{"transactionId":"t-9","n":{"a":1}}"#;
        assert_eq!(config.key(None, payload), Ok(Some("t-9".into())));
        assert_eq!(config.key(Some("h-1"), payload), Ok(Some("h-1".into())));
        assert_eq!(config.key(None, b"not json"), Ok(None));
        assert_eq!(config.key(None, br#"{"transactionId":null}"#), Ok(None));
        let object = IdempotencyConfig {
            key_path: Some(JsonPath::parse("$.n").unwrap()),
            ..IdempotencyConfig::default()
        };
        assert_eq!(object.key(None, payload), Ok(Some(r#"{"a":1}"#.into())));
        assert_eq!(IdempotencyConfig::default().key(None, payload), Ok(None));
        assert!(config.key(Some(&"k".repeat(300)), payload).is_err());
    }
}
