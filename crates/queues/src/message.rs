//! A message as SQS takes it: body characters, attributes and their
//! limits, and the MD5 digests AWS returns (`MD5OfMessageBody`,
//! `MD5OfMessageAttributes`), which SDKs that check them recompute: they
//! must be byte for byte what AWS computes.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

/// Most message attributes on one message (SQS: 10).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// Longest attribute name (SQS: 256 characters).
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 256;
/// Longest attribute data type (SQS: 256 characters).
pub const MAX_DATA_TYPE_LEN: usize = 256;

/// One message attribute: its data type (`String`, `Number`, `Binary`,
/// optionally with a custom suffix such as `Number.int`) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub data_type: String,
    pub value: AttributeValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    String(String),
    Binary(Vec<u8>),
}

/// Why a message was refused, with SQS's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MessageError {
    /// `InvalidMessageContents`, `InvalidParameterValue`, ...
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> MessageError {
    MessageError {
        code,
        message: message.into(),
    }
}

/// The hex MD5 of a body, as `MD5OfMessageBody`.
pub fn md5_of_body(body: &str) -> String {
    hex::encode(Md5::digest(body.as_bytes()))
}

/// `MD5OfMessageAttributes`: over the attributes in name order, each as
/// its name, data type, a transport byte (1 string, 2 binary) and value,
/// every variable part prefixed with its length as 4 big-endian bytes.
/// None when there are no attributes (SQS then omits the field).
pub fn md5_of_attributes(attributes: &BTreeMap<String, MessageAttribute>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut md5 = Md5::new();
    for (name, attribute) in attributes {
        put_value(&mut md5, name.as_bytes());
        put_value(&mut md5, attribute.data_type.as_bytes());
        match &attribute.value {
            AttributeValue::String(s) => {
                md5.update([1u8]);
                put_value(&mut md5, s.as_bytes());
            }
            AttributeValue::Binary(b) => {
                md5.update([2u8]);
                put_value(&mut md5, b);
            }
        }
    }
    Some(hex::encode(md5.finalize()))
}

/// A variable part: its length as 4 big-endian bytes, then the bytes.
fn put_value(md5: &mut Md5, bytes: &[u8]) {
    md5.update((bytes.len() as u32).to_be_bytes());
    md5.update(bytes);
}

/// Whether `c` may be in a message body (or a string attribute): SQS takes
/// `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`.
pub fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Checks a body's characters (InvalidMessageContents past them).
pub fn check_body(body: &str) -> Result<(), MessageError> {
    if body.is_empty() {
        return Err(invalid(
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
        ));
    }
    match body.chars().position(|c| !allowed_char(c)) {
        None => Ok(()),
        Some(at) => Err(invalid(
            "InvalidMessageContents",
            format!("Invalid characters found. The message body has a character outside the allowed set at position {at}."),
        )),
    }
}

/// Checks message attributes against SQS's rules: at most 10, names of
/// `A-Za-z0-9_-.` that do not start with `AWS.` or `Amazon.`, start or
/// end with `.` or hold `..`, a data type of String, Number or Binary (with
/// an optional custom suffix), a value of that kind, numbers that parse.
pub fn check_attributes(
    attributes: &BTreeMap<String, MessageAttribute>,
) -> Result<(), MessageError> {
    if attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(invalid(
            "InvalidParameterValue",
            format!(
                "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
                attributes.len()
            ),
        ));
    }
    for (name, attribute) in attributes {
        check_name(name)?;
        check_attribute(name, attribute)?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), MessageError> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "InvalidParameterValue",
            format!("Message (user) attribute '{name}' has an invalid name: names are up to {MAX_ATTRIBUTE_NAME_LEN} of A-Z, a-z, 0-9, underscore, hyphen and period, do not start with AWS. or Amazon., start or end with a period, or hold two periods in a row."),
        ))
    }
}

fn check_attribute(name: &str, attribute: &MessageAttribute) -> Result<(), MessageError> {
    let data_type = attribute.data_type.as_str();
    let base = data_type.split_once('.').map_or(data_type, |(b, _)| b);
    if data_type.len() > MAX_DATA_TYPE_LEN || data_type.ends_with('.') {
        return Err(invalid(
            "InvalidParameterValue",
            format!("The message attribute '{name}' has an invalid data type '{data_type}'."),
        ));
    }
    let empty = || {
        invalid(
            "InvalidParameterValue",
            format!("The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{base}'."),
        )
    };
    match (base, &attribute.value) {
        ("String", AttributeValue::String(s)) => {
            if s.is_empty() {
                return Err(empty());
            }
            if !s.chars().all(allowed_char) {
                return Err(invalid(
                    "InvalidParameterValue",
                    format!("The message attribute '{name}' has a value with characters outside the allowed set."),
                ));
            }
            Ok(())
        }
        ("Number", AttributeValue::String(s)) => {
            if s.is_empty() {
                return Err(empty());
            }
            // SQS takes numbers of up to 38 digits, from -10^128 to 10^126.
            let digits = s.chars().filter(char::is_ascii_digit).count();
            if s.trim().parse::<f64>().is_err() || digits > 38 {
                return Err(invalid(
                    "InvalidParameterValue",
                    format!("Can't cast the value of message (user) attribute '{name}' to a number."),
                ));
            }
            Ok(())
        }
        ("Binary", AttributeValue::Binary(b)) if b.is_empty() => Err(empty()),
        ("Binary", AttributeValue::Binary(_)) => Ok(()),
        ("String" | "Number" | "Binary", _) => Err(invalid(
            "InvalidParameterValue",
            format!("The message attribute '{name}' with type '{base}' must use field '{}'.", if base == "Binary" { "BinaryValue" } else { "StringValue" }),
        )),
        _ => Err(invalid(
            "InvalidParameterValue",
            format!("The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."),
        )),
    }
}

/// The bytes a message counts against `MaximumMessageSize`: its body and
/// every attribute's name, data type and value.
pub fn message_size(body: &str, attributes: &BTreeMap<String, MessageAttribute>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, a)| {
                name.len()
                    + a.data_type.len()
                    + match &a.value {
                        AttributeValue::String(s) => s.len(),
                        AttributeValue::Binary(b) => b.len(),
                    }
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(data_type: &str, value: AttributeValue) -> MessageAttribute {
        MessageAttribute {
            data_type: data_type.into(),
            value,
        }
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::String(v.into())
    }

    /// Vectors computed by moto's SQS (which SDKs' MD5 checks accept)
    /// and by an independent Python transcription of AWS's algorithm.
    #[test]
    fn digests_are_what_aws_computes() {
        assert_eq!(
            md5_of_body("hello wisp é"),
            "3cc3ffbab6560bd06cdd6cfc0a546084"
        );
        let attrs: BTreeMap<String, MessageAttribute> = [
            ("city", attr("String", s("Any City"))),
            ("count", attr("Number", s("42"))),
            (
                "blob",
                attr("Binary", AttributeValue::Binary(vec![0, 1, 255])),
            ),
            ("kind", attr("String.custom", s("ünï"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            md5_of_attributes(&attrs).as_deref(),
            Some("8847bf93d97f57b0552db2921b3ba557")
        );
        let one = [("a".to_string(), attr("String", s("x")))]
            .into_iter()
            .collect();
        assert_eq!(
            md5_of_attributes(&one).as_deref(),
            Some("a512aac9938034acb0b3c3d965944bf1")
        );
        assert_eq!(md5_of_attributes(&BTreeMap::new()), None);
    }

    #[test]
    fn bodies_hold_only_the_allowed_characters() {
        assert!(check_body("ok\t\n\r é 😀").is_ok());
        assert_eq!(
            check_body("bad\u{1}").unwrap_err().code,
            "InvalidMessageContents"
        );
        assert_eq!(
            check_body("bad\u{FFFE}").unwrap_err().code,
            "InvalidMessageContents"
        );
        assert_eq!(check_body("").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn attributes_are_checked_as_sqs_does() {
        let one = |name: &str, a: MessageAttribute| {
            check_attributes(&[(name.to_string(), a)].into_iter().collect())
        };
        assert!(one("order.id", attr("Number.int", s("-12.5e3"))).is_ok());
        assert!(one("b", attr("Binary", AttributeValue::Binary(vec![1]))).is_ok());
        for bad_name in ["AWS.x", "amazon.y", ".a", "a.", "a..b", "a b", ""] {
            assert!(
                one(bad_name, attr("String", s("x"))).is_err(),
                "{bad_name:?}"
            );
        }
        assert!(one(&"n".repeat(256), attr("String", s("x"))).is_ok());
        assert!(one(&"n".repeat(257), attr("String", s("x"))).is_err());
        assert!(one("a", attr("Number", s("twelve"))).is_err());
        assert!(one("a", attr("String", s(""))).is_err());
        assert!(one("a", attr("Decimal", s("1"))).is_err());
        assert!(one("a", attr("String", AttributeValue::Binary(vec![1]))).is_err());
        assert!(one("a", attr("Binary", s("x"))).is_err());
        let ten: BTreeMap<_, _> = (0..10)
            .map(|i| (format!("a{i}"), attr("String", s("x"))))
            .collect();
        assert!(check_attributes(&ten).is_ok());
        let mut eleven = ten.clone();
        eleven.insert("z".into(), attr("String", s("x")));
        assert!(check_attributes(&eleven).is_err());
        assert_eq!(message_size("abc", &ten), 3 + 10 * (2 + 6 + 1));
    }
}
