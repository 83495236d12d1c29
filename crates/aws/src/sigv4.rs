//! AWS Signature Version 4: signing (for the CLI) and verifying (for the
//! API), one implementation for both so they cannot drift apart.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// A key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a request was not authenticated; each maps to AWS's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Malformed(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    BadSignature,
    #[error("Signature expired: {0} is now earlier or later than the allowed 15 minutes from the server's time.")]
    Expired(String),
}

impl AuthError {
    /// AWS's name for this error (the `x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Malformed(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::BadSignature | AuthError::Expired(_) => "InvalidSignatureException",
        }
    }
}

/// RFC 3986 unreserved characters stay; everything else is escaped.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const STRICT_PATH: &AsciiSet = &STRICT.remove(b'/');

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical query string: every key and value decoded, re-encoded
/// strictly, and sorted.
fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', "%20"))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                utf8_percent_encode(&decode(k), STRICT).to_string(),
                utf8_percent_encode(&decode(v), STRICT).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The canonical request. `raw_path` is the path as sent (percent-encoded);
/// like botocore for every service but S3, it is encoded once more.
fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    signed_headers: &[&str],
    payload_hash: &str,
) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| canonical_header_value(v.as_bytes()))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        utf8_percent_encode(path, STRICT_PATH),
        canonical_query(raw_query),
        signed_headers.join(";"),
    )
}

fn signature(secret: &str, amz_date: &str, scope: &str, canonical: &str) -> String {
    let mut parts = scope.split('/');
    let (date, region, service) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// `20261123T154500Z` for a Unix time in seconds.
pub fn amz_date(unix_secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_default()
}

fn parse_amz_date(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Signs a request: sets `x-amz-date`, `x-amz-content-sha256` and
/// `authorization`. `headers` must already hold `host`.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    credentials: &Credentials,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    region: &str,
    service: &str,
    unix_secs: i64,
) {
    let date = amz_date(unix_secs);
    let payload_hash = sha256_hex(body);
    headers.insert(
        "x-amz-date",
        date.parse().expect("digits and letters are a valid header"),
    );
    headers.insert(
        "x-amz-content-sha256",
        payload_hash.parse().expect("hex is a valid header"),
    );
    let mut signed: Vec<&str> = vec!["host", "x-amz-content-sha256", "x-amz-date"];
    signed.sort_unstable();
    let canonical = canonical_request(method, raw_path, raw_query, headers, &signed, &payload_hash);
    let scope = format!("{}/{region}/{service}/aws4_request", &date[..8]);
    let sig = signature(&credentials.secret_access_key, &date, &scope, &canonical);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        credentials.access_key_id,
        signed.join(";")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        auth.parse().expect("ASCII is a valid header"),
    );
}

/// What a verified request was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// Checks a request's SigV4 `Authorization` header against `credentials`.
pub fn verify(
    credentials: &Credentials,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_unix_secs: i64,
) -> Result<Verified, AuthError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not ASCII".into()))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        AuthError::Malformed("Authorization header must use AWS4-HMAC-SHA256".into())
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut given_signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            given_signature = Some(v);
        }
    }
    let missing = |what: &str| {
        AuthError::Malformed(format!("Authorization header requires '{what}' parameter"))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let given_signature = given_signature.ok_or_else(|| missing("Signature"))?;

    let (access_key_id, scope) = credential.split_once('/').ok_or_else(|| {
        AuthError::Malformed("Credential must be KEY/DATE/REGION/SERVICE/aws4_request".into())
    })?;
    let scope_parts: Vec<&str> = scope.split('/').collect();
    if scope_parts.len() != 4 || scope_parts[3] != "aws4_request" {
        return Err(AuthError::Malformed(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request".into(),
        ));
    }
    if access_key_id != credentials.access_key_id {
        return Err(AuthError::UnknownKey);
    }
    let date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Malformed("the request has no X-Amz-Date header".into()))?;
    let signed_at = parse_amz_date(date).ok_or_else(|| {
        AuthError::Malformed(format!(
            "X-Amz-Date `{date}` is not in the form 20261123T154500Z"
        ))
    })?;
    if (now_unix_secs - signed_at).abs() > wisp_core::limits::MAX_SIGNATURE_SKEW_SECS {
        return Err(AuthError::Expired(date.to_string()));
    }
    if !date.starts_with(scope_parts[0]) {
        return Err(AuthError::BadSignature);
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(AuthError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    let payload_hash = sha256_hex(body);
    let canonical = canonical_request(method, raw_path, raw_query, headers, &signed, &payload_hash);
    let expected = signature(&credentials.secret_access_key, date, scope, &canonical);
    let equal = expected.len() == given_signature.len()
        && expected
            .bytes()
            .zip(given_signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !equal {
        return Err(AuthError::BadSignature);
    }
    Ok(Verified {
        access_key_id: access_key_id.to_string(),
        region: scope_parts[1].to_string(),
        service: scope_parts[2].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    /// The "get-vanilla" case of AWS's SigV4 test suite.
    #[test]
    fn matches_the_aws_test_suite_vanilla_get() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let canonical = canonical_request(
            "GET",
            "/",
            "",
            &headers,
            &["host", "x-amz-date"],
            &sha256_hex(b""),
        );
        let sig = signature(
            &creds().secret_access_key,
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical,
        );
        assert_eq!(
            sig,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn signed_requests_verify_and_tampering_fails() {
        let now = 1_790_000_000;
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:9070".parse().unwrap());
        let path = "/2015-03-31/functions/f%3A1/invocations";
        sign(
            &creds(),
            "POST",
            path,
            "Qualifier=live&a=b%20c",
            &mut headers,
            b"{}",
            "us-east-1",
            "lambda",
            now,
        );
        let ok = verify(
            &creds(),
            "POST",
            path,
            "a=b%20c&Qualifier=live",
            &headers,
            b"{}",
            now + 60,
        );
        assert_eq!(ok.unwrap().region, "us-east-1");
        assert_eq!(
            verify(&creds(), "POST", path, "", &headers, b"{}", now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(
                &creds(),
                "POST",
                path,
                "a=b%20c&Qualifier=live",
                &headers,
                b"{ }",
                now
            ),
            Err(AuthError::BadSignature)
        );
        let other = Credentials {
            secret_access_key: "nope".into(),
            ..creds()
        };
        assert_eq!(
            verify(
                &other,
                "POST",
                path,
                "a=b%20c&Qualifier=live",
                &headers,
                b"{}",
                now
            ),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            verify(
                &creds(),
                "POST",
                path,
                "a=b%20c&Qualifier=live",
                &headers,
                b"{}",
                now + 3600
            ),
            Err(AuthError::Expired(_))
        ));
        let stranger = Credentials {
            access_key_id: "OTHER".into(),
            ..creds()
        };
        assert_eq!(
            verify(&stranger, "POST", path, "", &headers, b"{}", now),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&creds(), "POST", path, "", &HeaderMap::new(), b"", now),
            Err(AuthError::Missing)
        );
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics_on_junk_headers(auth in "\\PC{0,200}", date in "\\PC{0,30}") {
            let mut headers = HeaderMap::new();
            if let Ok(v) = auth.parse() { headers.insert("authorization", v); }
            if let Ok(v) = date.parse() { headers.insert("x-amz-date", v); }
            headers.insert("host", "h".parse().unwrap());
            let _ = verify(&creds(), "GET", "/", "", &headers, b"", 0);
        }
    }
}
