//! Function URLs: a function (or one of its aliases) served over HTTP at
//! an address of its own, `http://<url-id>.lambda-url.<region>.localhost:<port>/`
//! on wisp's gateway, with Lambda's payload format 2.0, an auth type
//! (`NONE`, or `AWS_IAM`: SigV4 with wisp's credentials), CORS, and
//! buffered or streamed responses. Kept as a function setting per
//! qualifier, in Lambda's own field names.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The setting kind that holds a function's URLs.
pub const SETTING: &str = "url";
/// What follows a URL id in its host name.
pub const HOST_MARK: &str = ".lambda-url.";
const ID_LEN: usize = 32;

/// A function URL's configuration, as CreateFunctionUrlConfig takes it
/// and GetFunctionUrlConfig shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UrlConfig {
    pub url_id: String,
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub invoke_mode: String,
    pub creation_time: String,
    pub last_modified_time: String,
}

/// Cross-origin resource sharing, as Lambda takes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

impl Cors {
    /// Lambda's bounds on each field.
    pub fn validate(&self) -> Result<(), String> {
        let list = |name: &str, items: &Option<Vec<String>>, count: usize, len: usize| {
            let Some(items) = items else {
                return Ok(());
            };
            if items.len() > count {
                return Err(format!("Cors.{name} holds at most {count} items"));
            }
            match items.iter().find(|i| i.is_empty() || i.len() > len) {
                Some(bad) => Err(format!(
                    "1 validation error detected: Value '{bad}' at 'cors.{}' failed to satisfy constraint: Member must have length between 1 and {len}",
                    lower_first(name)
                )),
                None => Ok(()),
            }
        };
        list("AllowHeaders", &self.allow_headers, 100, 1024)?;
        list("AllowMethods", &self.allow_methods, 6, 6)?;
        list("AllowOrigins", &self.allow_origins, 100, 253)?;
        list("ExposeHeaders", &self.expose_headers, 100, 1024)?;
        if let Some(methods) = &self.allow_methods {
            let known = ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"];
            if let Some(bad) = methods
                .iter()
                .find(|m| !known.contains(&m.to_ascii_uppercase().as_str()))
            {
                return Err(format!(
                    "Cors.AllowMethods: '{bad}' is not an HTTP method Lambda allows ({})",
                    known.join(", ")
                ));
            }
        }
        if let Some(age) = self.max_age {
            if !(0..=86_400).contains(&age) {
                return Err(format!(
                    "1 validation error detected: Value '{age}' at 'cors.maxAge' failed to satisfy constraint: Member must have value less than or equal to 86400"
                ));
            }
        }
        Ok(())
    }

    /// The origin to allow for a request from `origin`, if any.
    pub fn allowed_origin(&self, origin: &str) -> Option<String> {
        let origins = self.allow_origins.as_ref()?;
        if origins.iter().any(|o| o == "*") {
            return Some(match self.allow_credentials {
                Some(true) => origin.to_string(),
                _ => "*".to_string(),
            });
        }
        origins
            .iter()
            .find(|o| o.eq_ignore_ascii_case(origin))
            .map(|_| origin.to_string())
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `NONE` or `AWS_IAM`.
pub fn check_auth_type(t: &str) -> Result<(), String> {
    match t {
        "NONE" | "AWS_IAM" => Ok(()),
        other => Err(format!(
            "1 validation error detected: Value '{other}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"
        )),
    }
}

/// `BUFFERED` or `RESPONSE_STREAM`.
pub fn check_invoke_mode(m: &str) -> Result<(), String> {
    match m {
        "BUFFERED" | "RESPONSE_STREAM" => Ok(()),
        other => Err(format!(
            "1 validation error detected: Value '{other}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]"
        )),
    }
}

/// A new URL id: 32 lowercase letters and digits, as Lambda's.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The URL id a request's host names, if it is a function URL's.
pub fn id_of_host(host: &str) -> Option<&str> {
    let (id, _) = host.split_once(HOST_MARK)?;
    (id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(id)
}

/// A URL's address on the gateway at `gateway_url` (`http://host:port`).
pub fn address(id: &str, region: &str, gateway_url: &str) -> String {
    let port = gateway_url
        .rsplit_once(':')
        .map(|(_, p)| p.trim_end_matches('/'))
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("80");
    format!("http://{id}{HOST_MARK}{region}.localhost:{port}/")
}

/// What the gateway needs to serve one URL.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionUrl {
    pub function: String,
    /// An alias, or `None` for `$LATEST`.
    pub qualifier: Option<String>,
    pub config: UrlConfig,
}

impl FunctionUrl {
    pub fn iam(&self) -> bool {
        self.config.auth_type == "AWS_IAM"
    }

    pub fn streams(&self) -> bool {
        self.config.invoke_mode == "RESPONSE_STREAM"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hosts() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        let host = format!("{id}.lambda-url.us-east-1.localhost:7311");
        assert_eq!(id_of_host(&host), Some(id.as_str()));
        assert_eq!(id_of_host("localhost:7311"), None);
        assert_eq!(id_of_host("short.lambda-url.us-east-1.localhost"), None);
        assert_eq!(
            address(&id, "us-east-1", "http://127.0.0.1:7311"),
            format!("http://{id}.lambda-url.us-east-1.localhost:7311/")
        );
    }

    #[test]
    fn cors_is_bounded_and_matches_origins() {
        let cors = Cors {
            allow_origins: Some(vec!["https://shop.example".into()]),
            allow_methods: Some(vec!["GET".into(), "POST".into()]),
            max_age: Some(300),
            ..Cors::default()
        };
        cors.validate().unwrap();
        assert_eq!(
            cors.allowed_origin("https://shop.example").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(cors.allowed_origin("https://evil.example"), None);
        let any = Cors {
            allow_origins: Some(vec!["*".into()]),
            ..Cors::default()
        };
        assert_eq!(any.allowed_origin("https://x").as_deref(), Some("*"));
        for bad in [
            Cors {
                max_age: Some(90_000),
                ..Cors::default()
            },
            Cors {
                allow_methods: Some(vec!["BREW".into()]),
                ..Cors::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(check_auth_type("AWS_IAM").is_ok() && check_auth_type("IAM").is_err());
        assert!(check_invoke_mode("RESPONSE_STREAM").is_ok() && check_invoke_mode("x").is_err());
    }
}
