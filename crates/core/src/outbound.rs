//! The allow-list for a wasm guest's outbound HTTP: `scheme://host[:port]`,
//! where host may be `*` or `*.suffix` and port may be `*`.

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OutboundRule {
    pub fn parse(text: &str) -> Result<OutboundRule, String> {
        let hint = "write it as scheme://host[:port], e.g. `https://api.example.com` or `http://127.0.0.1:8080`";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("allowed outbound host `{text}` has no scheme; {hint}"))?;
        if !matches!(scheme, "http" | "https" | "*") {
            return Err(format!(
                "allowed outbound host `{text}`: scheme must be http, https or *"
            ));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() {
            return Err(format!(
                "allowed outbound host `{text}` must not have a path; {hint}"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("allowed outbound host `{text}`: bad port `{port}`"))?;
                (host, Some(port))
            }
            _ => (rest, default_port(scheme)),
        };
        if host.is_empty() {
            return Err(format!(
                "allowed outbound host `{text}` has no host; {hint}"
            ));
        }
        Ok(OutboundRule {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let port = port.or_else(|| default_port(scheme));
        let scheme_ok = self.scheme == "*" || self.scheme == scheme;
        let host = host.to_ascii_lowercase();
        let host_ok = self.host == "*"
            || self.host == host
            || self
                .host
                .strip_prefix("*.")
                .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")));
        let port_ok = self.port.is_none() || self.port == port;
        scheme_ok && host_ok && port_ok
    }
}

/// A function's whole allow-list.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    rules: Vec<OutboundRule>,
}

impl OutboundPolicy {
    pub fn new(entries: &[String]) -> Result<OutboundPolicy, String> {
        let rules = entries
            .iter()
            .map(|e| OutboundRule::parse(e))
            .collect::<Result<_, _>>()?;
        Ok(OutboundPolicy { rules })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.rules.iter().any(|r| r.allows(scheme, host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_scheme_host_and_port() {
        let p = OutboundPolicy::new(&[
            "http://127.0.0.1:8080".into(),
            "https://*.example.com".into(),
            "*://any.test:*".into(),
        ])
        .unwrap();
        assert!(p.allows("http", "127.0.0.1", Some(8080)));
        assert!(!p.allows("http", "127.0.0.1", Some(8081)));
        assert!(!p.allows("https", "127.0.0.1", Some(8080)));
        assert!(p.allows("https", "api.example.com", None));
        assert!(p.allows("https", "API.Example.com", Some(443)));
        assert!(!p.allows("https", "example.com", None));
        assert!(!p.allows("https", "evil-example.com", None));
        assert!(p.allows("http", "any.test", Some(1234)));
        assert!(!OutboundPolicy::default().allows("http", "localhost", None));
    }

    #[test]
    fn bad_rules_are_explained() {
        assert!(OutboundRule::parse("example.com")
            .unwrap_err()
            .contains("no scheme"));
        assert!(OutboundRule::parse("ftp://x").is_err());
        assert!(OutboundRule::parse("http://x/path").is_err());
        assert!(OutboundRule::parse("http://x:99999").is_err());
        assert!(OutboundRule::parse("http://").is_err());
    }
}
