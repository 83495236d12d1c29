//! Functions, their immutable versions and aliases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;

/// The name of the mutable version every function has.
pub const LATEST: &str = "$LATEST";

/// Which runtime runs a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// A wasi:http component on wasmtime.
    Wasm,
    /// A process speaking the Lambda Runtime API (`nodejs20.x`, `python3.12`, `provided.al2023`...).
    Process,
}

/// The runtime names wisp knows, as Lambda spells them, plus `wasm`.
pub const RUNTIMES: &[&str] = &[
    "wasm",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "python3.11",
    "python3.12",
    "python3.13",
    "provided",
    "provided.al2",
    "provided.al2023",
];

/// The environment variables Lambda sets itself: a function may not set
/// them (LANG, PATH, LD_LIBRARY_PATH, TZ and the like it may).
pub const RESERVED_ENVIRONMENT: [&str; 18] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

impl RuntimeKind {
    /// Classifies a runtime name; `None` when wisp does not know it.
    pub fn of(runtime: &str) -> Option<RuntimeKind> {
        match runtime {
            "wasm" => Some(RuntimeKind::Wasm),
            r if RUNTIMES.contains(&r) => Some(RuntimeKind::Process),
            _ => None,
        }
    }
}

/// The settings of one function version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub runtime: String,
    /// For `wasm`, the component file inside the code zip; for process
    /// runtimes, `file.function`.
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_ms: u64,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Outbound HTTP destinations a wasm guest may call (`https://api.example.com`,
    /// `http://127.0.0.1:8080`, `https://*.example.com`); everything else is denied.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Opt-in: serve up to N requests from one wasm instance (weaker isolation).
    #[serde(default)]
    pub instance_reuse: u32,
    #[serde(default)]
    pub role: String,
    /// LoggingConfig: LogFormat (Text or JSON) and, with JSON, the
    /// application's and the platform's log levels.
    #[serde(default, skip_serializing_if = "LoggingConfig::is_default")]
    pub logging: LoggingConfig,
    /// Layer versions, in the order they are laid over each other (at
    /// most five).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
}

/// A layer version a function uses: its ARN and its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub arn: String,
    pub code_sha256: String,
    pub code_size: u64,
}

/// The most layers a function may use (Lambda's).
pub const MAX_LAYERS: usize = 5;

/// How a function's logs are written (Lambda's LoggingConfig).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    /// JSON, or plain text when false.
    #[serde(default)]
    pub json: bool,
    /// TRACE, DEBUG, INFO, WARN, ERROR or FATAL (JSON only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_level: Option<String>,
    /// DEBUG, INFO or WARN (JSON only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_level: Option<String>,
}

impl LoggingConfig {
    fn is_default(&self) -> bool {
        *self == LoggingConfig::default()
    }

    /// Reads Lambda's LoggingConfig; a bad value is AWS's message.
    pub fn from_aws(v: &serde_json::Value) -> Result<LoggingConfig, String> {
        let json = match v["LogFormat"].as_str() {
            None | Some("Text") => false,
            Some("JSON") => true,
            Some(other) => return Err(format!("LogFormat must be Text or JSON, not {other}")),
        };
        let level = |field: &str, allowed: &[&str]| -> Result<Option<String>, String> {
            match v[field].as_str() {
                None => Ok(None),
                Some(l) if allowed.contains(&l) => Ok(Some(l.to_string())),
                Some(l) => Err(format!(
                    "{field} must be one of {}, not {l}",
                    allowed.join(", ")
                )),
            }
        };
        let application_level = level(
            "ApplicationLogLevel",
            &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
        )?;
        let system_level = level("SystemLogLevel", &["DEBUG", "INFO", "WARN"])?;
        if !json && (application_level.is_some() || system_level.is_some()) {
            return Err(
                "ApplicationLogLevel and SystemLogLevel are only allowed when LogFormat is JSON"
                    .into(),
            );
        }
        Ok(LoggingConfig {
            json,
            application_level,
            system_level,
        })
    }

    /// As Lambda shows it in a function's configuration.
    pub fn to_aws(&self, function: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "LogFormat": if self.json { "JSON" } else { "Text" },
            "LogGroup": format!("/aws/lambda/{function}"),
        });
        if self.json {
            v["ApplicationLogLevel"] =
                serde_json::json!(self.application_level.as_deref().unwrap_or("INFO"));
            v["SystemLogLevel"] = serde_json::json!(self.system_level.as_deref().unwrap_or("INFO"));
        }
        v
    }
}

impl FunctionConfig {
    /// A config with Lambda's defaults for the given runtime and handler.
    pub fn new(runtime: &str, handler: &str) -> Self {
        FunctionConfig {
            runtime: runtime.to_string(),
            handler: handler.to_string(),
            memory_mb: limits::DEFAULT_MEMORY_MB,
            timeout_ms: limits::DEFAULT_TIMEOUT_SECS * 1000,
            environment: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            description: String::new(),
            instance_reuse: 0,
            role: String::new(),
            logging: LoggingConfig::default(),
            layers: Vec::new(),
        }
    }

    /// Checks every field against its limit; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.len() > MAX_LAYERS {
            return Err(format!("a function uses at most {MAX_LAYERS} layers"));
        }
        if !self.layers.is_empty() && self.runtime == "wasm" {
            return Err("layers are for Lambda runtimes (Node, Python, provided); a wasm component carries what it needs".into());
        }
        if RuntimeKind::of(&self.runtime).is_none() {
            return Err(format!(
                "runtime `{}` is not supported; use one of {}",
                self.runtime,
                RUNTIMES.join(", ")
            ));
        }
        if self.handler.is_empty() || self.handler.len() > 128 {
            return Err("handler must be 1 to 128 characters".into());
        }
        crate::bounds::MEMORY_MB.check("MemorySize", self.memory_mb.into())?;
        let secs = i64::try_from(self.timeout_ms.div_ceil(1000)).unwrap_or(i64::MAX);
        crate::bounds::TIMEOUT_SECS.check("Timeout", secs)?;
        let env_bytes: usize = self
            .environment
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if env_bytes > limits::MAX_ENVIRONMENT_BYTES {
            return Err(format!(
                "environment is {env_bytes} bytes; the limit is {}",
                limits::MAX_ENVIRONMENT_BYTES
            ));
        }
        let reserved: Vec<&str> = self
            .environment
            .keys()
            .map(String::as_str)
            .filter(|k| RESERVED_ENVIRONMENT.contains(k))
            .collect();
        if !reserved.is_empty() {
            return Err(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
                reserved.join(", ")
            ));
        }
        for key in self.environment.keys() {
            let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "environment variable name `{key}` must start with a letter and hold only letters, digits and _"
                ));
            }
        }
        if self.allowed_outbound_hosts.len() > limits::MAX_OUTBOUND_HOSTS {
            return Err(format!(
                "at most {} allowed_outbound_hosts",
                limits::MAX_OUTBOUND_HOSTS
            ));
        }
        for host in &self.allowed_outbound_hosts {
            crate::outbound::OutboundRule::parse(host)?;
        }
        if self.description.len() > limits::MAX_DESCRIPTION_LEN {
            return Err(format!(
                "description is longer than {} characters",
                limits::MAX_DESCRIPTION_LEN
            ));
        }
        if self.instance_reuse > limits::MAX_INSTANCE_REUSE {
            return Err(format!(
                "instance_reuse is at most {}",
                limits::MAX_INSTANCE_REUSE
            ));
        }
        Ok(())
    }
}

/// One immutable version of a function (or its mutable `$LATEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    pub function: String,
    /// `$LATEST` or a published number.
    pub version: String,
    pub config: FunctionConfig,
    /// sha256 (hex) of the code zip as uploaded.
    pub code_sha256: String,
    pub code_size: u64,
    /// sha256 (hex) of the runnable artifact in the zip (the `.wasm` for wasm).
    pub artifact_sha256: String,
    /// Milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Changes on every update; used for optimistic concurrency like Lambda's RevisionId.
    pub revision_id: String,
}

/// A named pointer at a version, optionally sending a share of calls to a
/// second version (Lambda's weighted alias, for canary releases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub revision_id: String,
    /// `AdditionalVersionWeights`: at most one other version and the share
    /// (0.0 to 1.0) of invocations it gets.
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

/// Checks a function or alias name: 1-64 of letters, digits, `-` and `_`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > limits::MAX_NAME_LEN {
        return Err(format!(
            "name `{name}` must be 1 to {} characters",
            limits::MAX_NAME_LEN
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "name `{name}` may hold only letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Checks an alias name: a name that does not look like a version number.
pub fn validate_alias_name(name: &str) -> Result<(), String> {
    validate_name(name)?;
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("alias name `{name}` cannot be a number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("basket-2_x").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_alias_name("live").is_ok());
        assert!(validate_alias_name("12").is_err());
    }

    #[test]
    fn config_limits_hold_at_the_edges() {
        let mut c = FunctionConfig::new("wasm", "hello.wasm");
        assert!(c.validate().is_ok());
        c.memory_mb = limits::MAX_MEMORY_MB;
        assert!(c.validate().is_ok());
        c.memory_mb = limits::MAX_MEMORY_MB + 1;
        assert!(c.validate().is_err());
        c.memory_mb = 128;
        c.timeout_ms = limits::MAX_TIMEOUT_SECS * 1000;
        assert!(c.validate().is_ok());
        c.timeout_ms += 1000;
        assert!(c.validate().is_err());
        c.timeout_ms = 1000;
        c.runtime = "cobol".into();
        assert!(c.validate().unwrap_err().contains("not supported"));
        c.runtime = "wasm".into();
        c.environment.insert("1BAD".into(), "x".into());
        assert!(c.validate().is_err());
        c.environment.clear();
        c.environment.insert("AWS_REGION".into(), "x".into());
        c.environment.insert("TZ".into(), "Europe/Berlin".into());
        let refused = c.validate().unwrap_err();
        assert!(
            refused.ends_with("Reserved keys used in this request: AWS_REGION"),
            "{refused}"
        );
        c.environment.remove("AWS_REGION");
        assert!(c.validate().is_ok(), "TZ is the function's to set");
        c.environment.clear();
        c.environment
            .insert("K".into(), "v".repeat(limits::MAX_ENVIRONMENT_BYTES - 1));
        assert!(c.validate().is_ok());
        c.environment
            .insert("K".into(), "v".repeat(limits::MAX_ENVIRONMENT_BYTES));
        assert!(c.validate().is_err());
    }

    #[test]
    fn logging_config_as_lambda_takes_it() {
        let json = LoggingConfig::from_aws(
            &serde_json::json!({"LogFormat": "JSON", "ApplicationLogLevel": "WARN"}),
        )
        .unwrap();
        assert!(json.json);
        assert_eq!(json.application_level.as_deref(), Some("WARN"));
        let shown = json.to_aws("f");
        assert_eq!(
            (shown["LogGroup"].as_str(), shown["SystemLogLevel"].as_str()),
            (Some("/aws/lambda/f"), Some("INFO"))
        );
        assert!(LoggingConfig::from_aws(&serde_json::json!({"LogFormat": "XML"})).is_err());
        assert!(
            LoggingConfig::from_aws(&serde_json::json!({"ApplicationLogLevel": "WARN"})).is_err()
        );
        assert!(LoggingConfig::from_aws(
            &serde_json::json!({"LogFormat": "JSON", "SystemLogLevel": "ERROR"})
        )
        .is_err());
        assert_eq!(
            LoggingConfig::from_aws(&serde_json::json!({})).unwrap(),
            LoggingConfig::default()
        );
    }
}
