//! `wisp.toml`: parsing, validation and diagnostics that point at
//! file:line:col with a hint.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::async_invoke::Destination;
use crate::bounds;
use crate::function::{validate_name, FunctionConfig, RuntimeKind};
use crate::idempotency::{IdempotencyConfig, JsonPath};
use crate::limits;
use crate::route::{CachePolicy, PayloadFormat, RateKey, RateLimit, Route, RouteTable};

mod events;
mod queues;

pub use events::{
    ManifestBus, ManifestRetry, ManifestRule, ManifestSchedule, ManifestTarget, TargetRef,
};
pub use queues::{ManifestQueue, ManifestTrigger};

/// A problem in a manifest, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The offending source line, for display.
    pub source_line: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        write!(f, "\n  --> {}:{}:{}", self.file, self.line, self.column)?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            write!(f, "\n{:gutter$} |", "")?;
            write!(f, "\n{} | {}", self.line, self.source_line)?;
            write!(
                f,
                "\n{:gutter$} | {:>col$}",
                "",
                "^",
                col = self.column.max(1)
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// A function as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFunction {
    pub name: String,
    pub config: FunctionConfig,
    /// A directory: a cargo crate (wasm) or code to zip (process runtimes). Relative to the manifest.
    pub source: Option<String>,
    /// A prebuilt component file (wasm only). Relative to the manifest.
    pub component: Option<String>,
    /// Reserved concurrency: at most this many at once, held out of the
    /// account's pool (0 disables the function). `None`: no reservation.
    pub reserved_concurrency: Option<u32>,
    /// Workers (or prepared instances) kept ready. `None`: none.
    pub provisioned_concurrency: Option<u32>,
    /// Async invocation settings (`async = {...}`); `None`: Lambda's defaults.
    pub async_policy: Option<ManifestAsync>,
    /// `idempotency_key` / `idempotency_ttl`; `None`: only the header.
    pub idempotency: Option<IdempotencyConfig>,
    /// Its function URL (`url = { auth = "NONE", ... }`), if any.
    pub url: Option<ManifestUrl>,
    /// Layer version ARNs (`layers = ["arn:aws:lambda:...:layer:NAME:N"]`).
    pub layers: Vec<String>,
}

/// `url = { auth, invoke_mode, cors = { allow_origins, ... } }`: Lambda's
/// CreateFunctionUrlConfig fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    /// `BUFFERED` or `RESPONSE_STREAM`.
    pub invoke_mode: String,
    /// Lambda's `Cors` object, as JSON.
    pub cors: Option<String>,
}

/// `async = { max_retries, max_event_age, on_success, on_failure }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestAsync {
    pub max_retries: Option<u32>,
    pub max_event_age_secs: Option<u64>,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub app: String,
    pub functions: Vec<ManifestFunction>,
    pub routes: Vec<Route>,
    /// Queues, dead-letter queues first.
    pub queues: Vec<ManifestQueue>,
    pub triggers: Vec<ManifestTrigger>,
    pub buses: Vec<ManifestBus>,
    pub rules: Vec<ManifestRule>,
    pub schedules: Vec<ManifestSchedule>,
    pub workflows: Vec<ManifestWorkflow>,
}

/// A state machine: its definition's file (relative to the manifest)
/// and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestWorkflow {
    pub name: String,
    pub definition: String,
    /// STANDARD or EXPRESS.
    pub kind: String,
    /// Endpoints its HTTP tasks may call (deny by default).
    pub allowed_outbound_hosts: Vec<String>,
    /// What an EXPRESS workflow logs of its executions: ALL, ERROR,
    /// FATAL or OFF (the default), with their input and output unless
    /// `log_execution_data` is false.
    pub logging: String,
    pub log_execution_data: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: RawApp,
    #[serde(default)]
    function: BTreeMap<String, Spanned<RawFunction>>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    queue: BTreeMap<String, Spanned<queues::RawQueue>>,
    #[serde(default)]
    trigger: Vec<queues::RawTrigger>,
    #[serde(default)]
    bus: BTreeMap<String, Spanned<events::RawBus>>,
    #[serde(default)]
    rule: Vec<events::RawRule>,
    #[serde(default)]
    schedule: Vec<events::RawSchedule>,
    #[serde(default)]
    workflow: BTreeMap<String, Spanned<RawWorkflow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    definition: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    logging: Option<Spanned<String>>,
    log_execution_data: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    runtime: Spanned<String>,
    source: Option<Spanned<String>>,
    component: Option<Spanned<String>>,
    handler: Option<Spanned<String>>,
    memory_mb: Option<Spanned<u32>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    description: Option<String>,
    instance_reuse: Option<Spanned<u32>>,
    reserved_concurrency: Option<Spanned<u32>>,
    provisioned_concurrency: Option<Spanned<u32>>,
    #[serde(rename = "async")]
    async_policy: Option<Spanned<RawAsync>>,
    idempotency_key: Option<Spanned<String>>,
    idempotency_ttl: Option<Spanned<String>>,
    /// LoggingConfig: `log_format = "json"`, `log_level = "warn"`.
    log_format: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    url: Option<Spanned<RawUrl>>,
    #[serde(default)]
    layers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrl {
    auth: Option<String>,
    invoke_mode: Option<String>,
    cors: Option<RawCors>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allow_credentials: Option<bool>,
    allow_headers: Option<Vec<String>>,
    allow_methods: Option<Vec<String>>,
    allow_origins: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age: Option<i64>,
}

/// A `url` table as Lambda's fields, checked as Lambda checks them.
fn url_of(raw: &RawUrl) -> Result<ManifestUrl, String> {
    let auth_type = raw.auth.as_deref().unwrap_or("NONE").to_ascii_uppercase();
    crate::function_url::check_auth_type(&auth_type)
        .map_err(|_| format!("url.auth is \"NONE\" or \"AWS_IAM\", not \"{auth_type}\""))?;
    let invoke_mode = raw
        .invoke_mode
        .as_deref()
        .unwrap_or("BUFFERED")
        .to_ascii_uppercase();
    crate::function_url::check_invoke_mode(&invoke_mode).map_err(|_| {
        format!("url.invoke_mode is \"BUFFERED\" or \"RESPONSE_STREAM\", not \"{invoke_mode}\"")
    })?;
    let cors = match &raw.cors {
        None => None,
        Some(c) => {
            let cors = crate::function_url::Cors {
                allow_credentials: c.allow_credentials,
                allow_headers: c.allow_headers.clone(),
                allow_methods: c.allow_methods.clone(),
                allow_origins: c.allow_origins.clone(),
                expose_headers: c.expose_headers.clone(),
                max_age: c.max_age,
            };
            cors.validate()?;
            Some(serde_json::to_string(&cors).map_err(|e| e.to_string())?)
        }
    };
    Ok(ManifestUrl {
        auth_type,
        invoke_mode,
        cors,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsync {
    max_retries: Option<u32>,
    max_event_age: Option<String>,
    on_success: Option<String>,
    on_failure: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: Spanned<String>,
    path: Spanned<String>,
    function: Spanned<String>,
    payload_format: Option<Spanned<String>>,
    rate_limit: Option<Spanned<RawRateLimit>>,
    cache_ttl: Option<Spanned<String>>,
    #[serde(default)]
    cache_key_headers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: u32,
    burst: u32,
    per: Option<String>,
}

/// Parses and validates `text`, read from `file` (used in messages only).
pub fn parse(file: &str, text: &str) -> Result<Manifest, ManifestError> {
    let locate = |span: Range<usize>, message: String, hint: Option<String>| {
        locate(file, text, span.start, message, hint)
    };
    if text.len() > limits::MAX_MANIFEST_BYTES {
        return Err(locate(
            0..0,
            format!(
                "manifest is {} bytes; the limit is {}",
                text.len(),
                limits::MAX_MANIFEST_BYTES
            ),
            Some("split the app into several manifests".into()),
        ));
    }
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let hint = hint_for(&message);
        locate(span, message, hint)
    })?;

    validate_name(raw.app.name.get_ref())
        .map_err(|m| locate(raw.app.name.span(), format!("app {m}"), None))?;

    if raw.function.len() > limits::MAX_MANIFEST_FUNCTIONS {
        return Err(locate(
            0..0,
            format!("more than {} functions", limits::MAX_MANIFEST_FUNCTIONS),
            None,
        ));
    }
    let mut functions = Vec::new();
    for (name, spanned) in raw.function {
        let span = spanned.span();
        let f = spanned.into_inner();
        validate_name(&name).map_err(|m| {
            locate(
                span.clone(),
                format!("function {m}"),
                Some("rename the [function.NAME] table".into()),
            )
        })?;
        functions.push(function(&name, f, span, &locate)?);
    }

    if raw.route.len() > limits::MAX_MANIFEST_ROUTES {
        return Err(locate(
            0..0,
            format!("more than {} routes", limits::MAX_MANIFEST_ROUTES),
            None,
        ));
    }
    let mut routes = Vec::new();
    for r in raw.route {
        let payload_format = match &r.payload_format {
            Some(p) => PayloadFormat::parse(p.get_ref()).map_err(|m| {
                locate(
                    p.span(),
                    m,
                    Some(
                        "Lambda functions get payload format 2.0 unless a route says \"1.0\""
                            .into(),
                    ),
                )
            })?,
            None => PayloadFormat::default(),
        };
        let rate_limit = match &r.rate_limit {
            Some(spanned) => {
                let raw = spanned.get_ref();
                let limit = RateLimit {
                    rate: raw.rate,
                    burst: raw.burst,
                    per: match &raw.per {
                        Some(p) => {
                            RateKey::parse(p).map_err(|m| locate(spanned.span(), m, None))?
                        }
                        None => RateKey::Route,
                    },
                };
                limit.validate().map_err(|m| {
                    locate(
                        spanned.span(),
                        m,
                        Some("for example `rate_limit = { rate = 50, burst = 100 }`".into()),
                    )
                })?;
                Some(limit)
            }
            None => None,
        };
        let cache = match &r.cache_ttl {
            Some(t) => {
                let ttl =
                    crate::duration::parse(t.get_ref()).map_err(|m| locate(t.span(), m, None))?;
                Some(CachePolicy {
                    ttl_ms: ttl.as_millis() as u64,
                    key_headers: r
                        .cache_key_headers
                        .iter()
                        .map(|h| h.get_ref().to_ascii_lowercase())
                        .collect(),
                })
            }
            None if !r.cache_key_headers.is_empty() => {
                return Err(locate(
                    r.cache_key_headers[0].span(),
                    "`cache_key_headers` needs `cache_ttl`".into(),
                    Some("add `cache_ttl = \"10s\"` to cache this route".into()),
                ))
            }
            None => None,
        };
        let route = Route {
            method: r.method.get_ref().to_ascii_uppercase(),
            path: r.path.get_ref().clone(),
            function: r.function.get_ref().clone(),
            payload_format,
            rate_limit,
            cache,
        };
        if let Err(m) = route.validate() {
            let span = r
                .cache_ttl
                .as_ref()
                .map(|t| t.span())
                .unwrap_or_else(|| r.path.span());
            if m.contains("cache") {
                return Err(locate(span, m, None));
            }
        }
        if !functions.iter().any(|f| f.name == route.function) {
            let known: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
            return Err(locate(
                r.function.span(),
                format!("route points at unknown function `{}`", route.function),
                Some(if known.is_empty() {
                    "declare it in a [function.NAME] table".into()
                } else {
                    format!("functions in this manifest: {}", known.join(", "))
                }),
            ));
        }
        if let Err(m) = RouteTable::new(vec![route.clone()]) {
            let span = if m.starts_with("method") {
                r.method.span()
            } else {
                r.path.span()
            };
            return Err(locate(span, m, None));
        }
        routes.push((route, r.path.span()));
    }
    if let Err(m) = RouteTable::new(routes.iter().map(|(r, _)| r.clone()).collect()) {
        let span = routes
            .iter()
            .rev()
            .find(|(r, _)| m.contains(&r.path))
            .map(|(_, s)| s.clone())
            .unwrap_or(0..0);
        return Err(locate(span, m, None));
    }

    let mut declared = Vec::new();
    for (name, spanned) in raw.queue {
        let span = spanned.span();
        declared.push((
            queues::queue(&name, spanned.into_inner(), span.clone(), &locate)?,
            span,
        ));
    }
    let queues = queues::order_dead_letters(declared, &locate)?;
    let names: Vec<String> = functions.iter().map(|f| f.name.clone()).collect();
    let triggers = raw
        .trigger
        .into_iter()
        .map(|t| queues::trigger(t, &queues, &names, &locate))
        .collect::<Result<Vec<_>, _>>()?;

    let mut buses = Vec::new();
    for (name, spanned) in raw.bus {
        let span = spanned.span();
        buses.push(events::bus(&name, spanned.into_inner(), span, &locate)?);
    }
    let queue_names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    let bus_names: Vec<String> = buses.iter().map(|b| b.name.clone()).collect();
    let declared = events::Declared {
        functions: &names,
        queues: &queue_names,
        buses: &bus_names,
    };
    let mut rules: Vec<ManifestRule> = Vec::new();
    for r in raw.rule {
        let span = r.name_span();
        let rule = events::rule(r, &declared, &locate)?;
        if rules
            .iter()
            .any(|have| have.bus == rule.bus && have.name == rule.name)
        {
            return Err(locate(
                span,
                format!(
                    "rule `{}` is declared twice on bus `{}`",
                    rule.name, rule.bus
                ),
                None,
            ));
        }
        rules.push(rule);
    }
    let mut schedules: Vec<ManifestSchedule> = Vec::new();
    for (i, s) in raw.schedule.into_iter().enumerate() {
        let span = s.expression_span();
        let schedule = events::schedule(s, i, &declared, &locate)?;
        if schedules.iter().any(|have| have.name == schedule.name) {
            return Err(locate(
                span,
                format!("two schedules are named `{}`", schedule.name),
                Some("give one a `name`".into()),
            ));
        }
        schedules.push(schedule);
    }

    let mut workflows = Vec::new();
    for (name, spanned) in raw.workflow {
        let span = spanned.span();
        let w = spanned.into_inner();
        let ok = !name.is_empty()
            && name.chars().count() <= 80
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !ok {
            return Err(locate(
                span,
                format!("workflow `{name}`: names are 1 to 80 of A-Z, a-z, 0-9, - and _"),
                None,
            ));
        }
        let file = w.definition.get_ref();
        if ![".json", ".yaml", ".yml"].iter().any(|e| file.ends_with(e)) {
            return Err(locate(
                w.definition.span(),
                format!(
                    "definition `{file}`: an Amazon States Language file ending in .json, .yaml or .yml"
                ),
                Some("export it from Workflow Studio as JSON or YAML".into()),
            ));
        }
        let kind = match &w.kind {
            None => "STANDARD".to_string(),
            Some(k) if k.get_ref() == "STANDARD" || k.get_ref() == "EXPRESS" => k.get_ref().clone(),
            Some(k) => {
                return Err(locate(
                    k.span(),
                    format!("type `{}` is STANDARD or EXPRESS", k.get_ref()),
                    None,
                ))
            }
        };
        for host in &w.allowed_outbound_hosts {
            crate::outbound::OutboundRule::parse(host.get_ref())
                .map_err(|m| locate(host.span(), m, None))?;
        }
        let logging = match &w.logging {
            None => "OFF".to_string(),
            Some(l) if ["ALL", "ERROR", "FATAL", "OFF"].contains(&l.get_ref().as_str()) => {
                l.get_ref().clone()
            }
            Some(l) => {
                return Err(locate(
                    l.span(),
                    format!("logging `{}` is ALL, ERROR, FATAL or OFF", l.get_ref()),
                    None,
                ))
            }
        };
        workflows.push(ManifestWorkflow {
            name,
            definition: w.definition.into_inner(),
            kind,
            allowed_outbound_hosts: w
                .allowed_outbound_hosts
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            logging,
            log_execution_data: w.log_execution_data.unwrap_or(true),
        });
    }

    Ok(Manifest {
        app: raw.app.name.into_inner(),
        functions,
        routes: routes.into_iter().map(|(r, _)| r).collect(),
        queues,
        triggers,
        buses,
        rules,
        schedules,
        workflows,
    })
}

fn function(
    name: &str,
    f: RawFunction,
    span: Range<usize>,
    locate: &dyn Fn(Range<usize>, String, Option<String>) -> ManifestError,
) -> Result<ManifestFunction, ManifestError> {
    let runtime = f.runtime.get_ref().clone();
    let kind = RuntimeKind::of(&runtime).ok_or_else(|| {
        locate(
            f.runtime.span(),
            format!("unknown runtime `{runtime}`"),
            Some(format!(
                "use one of {}",
                crate::function::RUNTIMES.join(", ")
            )),
        )
    })?;
    let source = f.source.as_ref().map(|s| s.get_ref().clone());
    let component = f.component.as_ref().map(|s| s.get_ref().clone());
    let handler = match kind {
        RuntimeKind::Wasm => {
            match (&f.source, &f.component) {
                (Some(_), Some(c)) => {
                    return Err(locate(
                        c.span(),
                        format!("function `{name}` has both `source` and `component`"),
                        Some("keep `source` to build a crate, or `component` for a prebuilt .wasm".into()),
                    ))
                }
                (None, None) => {
                    return Err(locate(
                        span,
                        format!("wasm function `{name}` needs `source` or `component`"),
                        Some("`source = \"functions/NAME\"` (a cargo crate) or `component = \"NAME.wasm\"`".into()),
                    ))
                }
                _ => {}
            }
            if let Some(h) = &f.handler {
                return Err(locate(
                    h.span(),
                    "`handler` is for process runtimes; a wasm function's handler is its component"
                        .into(),
                    Some("remove `handler`".into()),
                ));
            }
            let file = component.clone().unwrap_or_else(|| format!("{name}.wasm"));
            std::path::Path::new(&file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(file)
        }
        RuntimeKind::Process => {
            if let Some(c) = &f.component {
                return Err(locate(
                    c.span(),
                    "`component` is only for runtime = \"wasm\"".into(),
                    Some("use `source` for the code directory".into()),
                ));
            }
            if f.source.is_none() {
                return Err(locate(
                    span,
                    format!("function `{name}` needs `source`, the directory holding its code"),
                    None,
                ));
            }
            match &f.handler {
                Some(h) => h.get_ref().clone(),
                None => {
                    return Err(locate(
                        span,
                        format!("function `{name}` needs a `handler`"),
                        Some("for example `handler = \"index.handler\"`".into()),
                    ))
                }
            }
        }
    };
    let mut config = FunctionConfig::new(&runtime, &handler);
    if let Some(m) = &f.memory_mb {
        config.memory_mb = *m.get_ref();
        bounds::MEMORY_MB
            .check("memory_mb", config.memory_mb.into())
            .map_err(|e| locate(m.span(), e, None))?;
    }
    if let Some(t) = &f.timeout {
        let d = crate::duration::parse(t.get_ref()).map_err(|m| locate(t.span(), m, None))?;
        let secs = i64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        bounds::TIMEOUT_SECS
            .check("timeout in seconds", secs)
            .map_err(|e| {
                locate(
                    t.span(),
                    e,
                    Some("for example `timeout = \"30s\"`".to_string()),
                )
            })?;
        config.timeout_ms = d.as_millis() as u64;
    }
    for host in &f.allowed_outbound_hosts {
        crate::outbound::OutboundRule::parse(host.get_ref())
            .map_err(|m| locate(host.span(), m, None))?;
    }
    if let Some(n) = &f.instance_reuse {
        if kind != RuntimeKind::Wasm {
            return Err(locate(
                n.span(),
                "`instance_reuse` is only for wasm functions".into(),
                None,
            ));
        }
        config.instance_reuse = *n.get_ref();
    }
    config.environment = f.environment;
    config.allowed_outbound_hosts = f
        .allowed_outbound_hosts
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    config.description = f.description.unwrap_or_default();
    if f.log_format.is_some() || f.log_level.is_some() {
        let format = f
            .log_format
            .as_ref()
            .map(|s| s.get_ref().to_ascii_lowercase());
        let mut aws = serde_json::json!({
            "LogFormat": if format.as_deref() == Some("json") { "JSON" } else { "Text" },
        });
        if let Some(l) = &f.log_level {
            aws["ApplicationLogLevel"] = serde_json::json!(l.get_ref().to_ascii_uppercase());
        }
        let at = f
            .log_level
            .as_ref()
            .or(f.log_format.as_ref())
            .map_or(span.clone(), |s| s.span());
        if format
            .as_deref()
            .is_some_and(|f| f != "json" && f != "text")
        {
            return Err(locate(
                at,
                "log_format is \"text\" or \"json\"".into(),
                None,
            ));
        }
        config.logging = crate::function::LoggingConfig::from_aws(&aws)
            .map_err(|m| locate(at, format!("function `{name}`: {m}"), None))?;
    }
    config
        .validate()
        .map_err(|m| locate(span, format!("function `{name}`: {m}"), None))?;
    let reserved = f.reserved_concurrency.as_ref().map(|r| *r.get_ref());
    if let (Some(p), Some(r)) = (&f.provisioned_concurrency, reserved) {
        if *p.get_ref() > r {
            return Err(locate(
                p.span(),
                format!(
                    "provisioned_concurrency = {} is more than reserved_concurrency = {r}",
                    p.get_ref()
                ),
                Some("provisioned workers count against the reservation".into()),
            ));
        }
    }
    if let Some(p) = &f.provisioned_concurrency {
        if *p.get_ref() > limits::MAX_PROVISIONED_CONCURRENCY {
            return Err(locate(
                p.span(),
                format!("provisioned_concurrency = {} is too many", p.get_ref()),
                Some(format!("at most {}", limits::MAX_PROVISIONED_CONCURRENCY)),
            ));
        }
    }
    let async_policy = match &f.async_policy {
        Some(a) => Some(async_policy(a.get_ref()).map_err(|m| {
            locate(
                a.span(),
                m,
                Some("for example `async = { max_retries = 1, max_event_age = \"1h\", on_failure = \"failed\" }`".into()),
            )
        })?),
        None => None,
    };
    let idempotency = match (&f.idempotency_key, &f.idempotency_ttl) {
        (None, None) => None,
        (key, ttl) => {
            let mut config = IdempotencyConfig::default();
            if let Some(k) = key {
                config.key_path =
                    Some(JsonPath::parse(k.get_ref()).map_err(|m| locate(k.span(), m, None))?);
            }
            if let Some(t) = ttl {
                let d = crate::duration::parse(t.get_ref())
                    .and_then(|d| IdempotencyConfig::check_ttl(d).map(|_| d))
                    .map_err(|m| locate(t.span(), m, None))?;
                config.ttl = d;
            }
            Some(config)
        }
    };
    let url = match &f.url {
        None => None,
        Some(u) => Some(
            url_of(u.get_ref())
                .map_err(|m| locate(u.span(), format!("function `{name}`: {m}"), None))?,
        ),
    };
    if f.layers.len() > crate::function::MAX_LAYERS {
        return Err(locate(
            f.layers[crate::function::MAX_LAYERS].span(),
            format!(
                "function `{name}` uses at most {} layers",
                crate::function::MAX_LAYERS
            ),
            None,
        ));
    }
    if let Some(bad) = f.layers.iter().find(|l| {
        let parts: Vec<&str> = l.get_ref().split(':').collect();
        !matches!(parts.as_slice(), ["arn", _, "lambda", _, _, "layer", _, v] if v.parse::<u64>().is_ok())
    }) {
        return Err(locate(
            bad.span(),
            format!("`{}` is not a layer version ARN", bad.get_ref()),
            Some("publish the layer (aws lambda publish-layer-version) and give its LayerVersionArn, e.g. arn:aws:lambda:us-east-1:000000000000:layer:shared:1".into()),
        ));
    }
    Ok(ManifestFunction {
        layers: f.layers.into_iter().map(Spanned::into_inner).collect(),
        name: name.to_string(),
        config,
        source,
        component,
        reserved_concurrency: reserved,
        provisioned_concurrency: f.provisioned_concurrency.map(Spanned::into_inner),
        async_policy,
        idempotency,
        url,
    })
}

fn async_policy(raw: &RawAsync) -> Result<ManifestAsync, String> {
    if let Some(n) = raw.max_retries {
        bounds::ASYNC_RETRIES.check("max_retries", n.into())?;
    }
    let max_event_age_secs = match &raw.max_event_age {
        Some(t) => {
            let d = crate::duration::parse(t)?;
            if d.subsec_nanos() != 0 {
                return Err(format!("max_event_age `{t}` must be whole seconds"));
            }
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            Some(bounds::EVENT_AGE_SECS.check("max_event_age in seconds", secs)?)
        }
        None => None,
    };
    let destination = |d: &Option<String>| d.as_deref().map(Destination::parse).transpose();
    Ok(ManifestAsync {
        max_retries: raw.max_retries,
        max_event_age_secs,
        on_success: destination(&raw.on_success)?,
        on_failure: destination(&raw.on_failure)?,
    })
}

fn locate(
    file: &str,
    text: &str,
    offset: usize,
    message: String,
    hint: Option<String>,
) -> ManifestError {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..offset].chars().count() + 1;
    let source_line = text[line_start..].lines().next().unwrap_or("").to_string();
    ManifestError {
        file: file.to_string(),
        line,
        column,
        message,
        hint,
        source_line,
    }
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a
/// "did you mean" hint.
fn hint_for(message: &str) -> Option<String> {
    let unknown = message.strip_prefix("unknown field `")?;
    let (field, rest) = unknown.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let closest = expected
        .iter()
        .map(|e| (edit_distance(field, e), *e))
        .filter(|(d, _)| *d <= 3)
        .min();
    Some(match closest {
        Some((_, name)) => format!("did you mean `{name}`?"),
        None if expected.is_empty() => format!("remove `{field}`"),
        None => format!("remove `{field}`; this table takes {}", expected.join(", ")),
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const GOOD: &str = r#"
[app]
name = "shop"

[function.basket]
runtime = "wasm"
source = "functions/basket"
memory_mb = 64
timeout = "2s"
environment = { STAGE = "dev" }
allowed_outbound_hosts = ["http://127.0.0.1:8080"]

[[route]]
method = "get"
path = "/basket/{id}"
function = "basket"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = parse("wisp.toml", GOOD).unwrap();
        assert_eq!(m.app, "shop");
        let f = &m.functions[0];
        assert_eq!(f.name, "basket");
        assert_eq!(f.config.handler, "basket.wasm");
        assert_eq!(f.config.memory_mb, 64);
        assert_eq!(f.config.timeout_ms, 2000);
        assert_eq!(f.config.environment["STAGE"], "dev");
        assert_eq!(m.routes[0].method, "GET");
    }

    fn err(text: &str) -> String {
        parse("wisp.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_points_at_it_with_a_suggestion() {
        let text = GOOD.replace("memory_mb = 64", "memroy_mb = 64");
        expect![[r#"
            error: unknown field `memroy_mb`, expected one of `runtime`, `source`, `component`, `handler`, `memory_mb`, `timeout`, `environment`, `allowed_outbound_hosts`, `description`, `instance_reuse`, `reserved_concurrency`, `provisioned_concurrency`, `async`, `idempotency_key`, `idempotency_ttl`, `log_format`, `log_level`, `url`, `layers`
              --> wisp.toml:8:1
              |
            8 | memroy_mb = 64
              | ^
              = hint: did you mean `memory_mb`?"#]]
        .assert_eq(&err(&text));
    }

    const QUEUES: &str = r#"
[queue.orders]
visibility_timeout = "30s"
retention = "4d"
dead_letter = { queue = "orders-dlq", max_receive_count = 3 }

[queue.orders-dlq]
retention = "14d"

[queue."ledger.fifo"]
fifo = true
content_based_deduplication = true

[[trigger]]
queue = "orders"
function = "basket"
batch_size = 100
batching_window = "2s"
report_batch_item_failures = true
max_concurrency = 5
filter = { body = { kind = ["order"] } }
"#;

    const EVENTS: &str = r#"
[bus.orders]
description = "what the shop says"

[[rule]]
bus = "orders"
name = "paid"
pattern = { source = ["shop"], detail-type = ["OrderPaid"], detail = { total = [{ numeric = [">", 100] }] } }
targets = [
  { function = "basket" },
  { queue = "orders", input_path = "$.detail", retry = { attempts = 3, max_age = "1h" }, dead_letter = "orders-dlq" },
]

[[rule]]
name = "json"
pattern = '{"source": ["a"]}'
targets = [{ bus = "orders", transformer = { paths = { id = "$.id" }, template = '{"id": <id>}' } }]

[[rule]]
name = "tick"
schedule = "rate(5 minutes)"
targets = [{ function = "basket", input = { kind = "tick" } }]

[[schedule]]
expression = "cron(0 3 * * ? *)"
timezone = "Europe/Berlin"
window = "15m"
function = "basket"

[[schedule]]
name = "ping"
expression = "rate(1 hour)"
bus = "orders"
detail_type = "Ping"
source = "cron"
input = '{"n": 1}'

[workflow.checkout]
definition = "workflows/checkout.asl.json"
type = "EXPRESS"
allowed_outbound_hosts = ["https://api.example.com"]
logging = "ALL"
"#;

    #[test]
    fn buses_rules_and_schedules() {
        let all = format!("{GOOD}{QUEUES}{EVENTS}");
        let m = parse("wisp.toml", &all).unwrap();
        assert_eq!(m.buses[0].name, "orders");
        let paid = &m.rules[0];
        assert_eq!((paid.bus.as_str(), paid.name.as_str()), ("orders", "paid"));
        assert_eq!(
            paid.pattern.as_deref(),
            Some(
                r#"{"detail":{"total":[{"numeric":[">",100]}]},"detail-type":["OrderPaid"],"source":["shop"]}"#
            )
        );
        assert_eq!(paid.targets[0].id, "function-basket");
        assert_eq!(paid.targets[1].to, TargetRef::Queue("orders".into()));
        assert_eq!(paid.targets[1].retry.attempts, Some(3));
        assert_eq!(paid.targets[1].retry.max_age_secs, Some(3600));
        assert_eq!(
            paid.targets[1].retry.dead_letter.as_deref(),
            Some("orders-dlq")
        );
        assert_eq!(m.rules[1].bus, "default");
        assert_eq!(m.rules[1].pattern.as_deref(), Some(r#"{"source":["a"]}"#));
        assert!(m.rules[1].targets[0].transformer.is_some());
        assert_eq!(m.rules[2].schedule.as_deref(), Some("rate(5 minutes)"));
        assert_eq!(
            m.rules[2].targets[0].input.as_deref(),
            Some(r#"{"kind":"tick"}"#)
        );
        let nightly = &m.schedules[0];
        assert_eq!(nightly.name, "basket-1");
        assert_eq!(nightly.window_minutes, Some(15));
        assert_eq!(nightly.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(m.schedules[1].to, TargetRef::Bus("orders".into()));
        assert_eq!(
            m.workflows,
            [ManifestWorkflow {
                name: "checkout".into(),
                definition: "workflows/checkout.asl.json".into(),
                kind: "EXPRESS".into(),
                allowed_outbound_hosts: vec!["https://api.example.com".into()],
                logging: "ALL".into(),
                log_execution_data: true,
            }]
        );

        let bad = |from: &str, to: &str| err(&all.replace(from, to));
        assert!(bad(
            "bus = \"orders\"\nname = \"paid\"",
            "bus = \"nobus\"\nname = \"paid\""
        )
        .contains("undeclared bus `nobus`"));
        assert!(
            bad("{ function = \"basket\" },", "{ function = \"nobody\" },")
                .contains("`nobody` is not declared")
        );
        assert!(bad(
            "detail-type = [\"OrderPaid\"]",
            "detail-type = \"OrderPaid\""
        )
        .contains("pattern:"));
        assert!(bad("rate(5 minutes)", "rate(5 minute)").contains("plural"));
        assert!(bad("cron(0 3 * * ? *)", "cron(0 3 * * * *)").contains("must be ?"));
        assert!(bad("Europe/Berlin", "Europe/Atlantis").contains("not a known time zone"));
        assert!(bad("window = \"15m\"", "window = \"90s\"").contains("whole minutes"));
        assert!(bad("detail_type = \"Ping\"\n", "").contains("detail_type"));
        assert!(
            bad("dead_letter = \"orders-dlq\"", "dead_letter = \"nope\"")
                .contains("undeclared queue `nope`")
        );
        assert!(bad(
            "{ function = \"basket\" },",
            "{ function = \"basket\", queue = \"orders\" },"
        )
        .contains("exactly one"));
        assert!(bad(
            "name = \"tick\"\nschedule",
            "name = \"tick\"\nbus = \"orders\"\nschedule"
        )
        .contains("only for rules on the default bus"));
    }

    #[test]
    fn queues_and_triggers() {
        let m = parse("wisp.toml", &format!("{GOOD}{QUEUES}")).unwrap();
        let names: Vec<&str> = m.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            ["ledger.fifo", "orders-dlq", "orders"],
            "dead-letter queues first"
        );
        let orders = &m.queues[2];
        assert_eq!(orders.attributes["VisibilityTimeout"], "30");
        assert_eq!(orders.attributes["MessageRetentionPeriod"], "345600");
        assert_eq!(orders.dead_letter, Some(("orders-dlq".into(), 3)));
        assert_eq!(m.queues[0].attributes["FifoQueue"], "true");
        let t = &m.triggers[0];
        assert_eq!((t.batch_size, t.batching_window_secs), (Some(100), Some(2)));
        assert!(t.report_batch_item_failures && t.enabled);
        assert_eq!(t.filter.as_deref(), Some(r#"{"body":{"kind":["order"]}}"#));

        let all = format!("{GOOD}{QUEUES}");
        let bad = |from: &str, to: &str| err(&all.replace(from, to));
        assert!(bad("queue = \"orders-dlq\"", "queue = \"nope\"")
            .contains("undeclared dead-letter queue `nope`"));
        assert!(bad("batching_window = \"2s\"", "batching_window = \"0s\"")
            .contains("needs a batching_window"));
        assert!(bad("max_concurrency = 5", "max_concurrency = 1").contains("from 2 to 1000"));
        assert!(bad(
            "[queue.\"ledger.fifo\"]\nfifo = true",
            "[queue.\"ledger.fifo\"]\nfifo = false"
        )
        .contains("needs `fifo = true`"));
        assert!(bad(
            "visibility_timeout = \"30s\"",
            "visibility_timeout = \"13h\""
        )
        .contains("from 0s to 43200s"));
        assert!(bad(
            "function = \"basket\"\nbatch_size",
            "function = \"nobody\"\nbatch_size"
        )
        .contains("unknown function `nobody`"));
        assert!(bad("kind = [\"order\"]", "kind = \"order\"").contains("filter:"));
        let e = bad("retention = \"4d\"", "retension = \"4d\"");
        assert!(
            e.contains("did you mean `retention`?") && e.contains("wisp.toml:"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let text = GOOD.replace("timeout = \"2s\"", "timeout = \"2\"");
        expect![[r#"
            error: `2` has no unit; write `2s` for seconds or `2ms` for milliseconds
              --> wisp.toml:9:11
              |
            9 | timeout = "2"
              |           ^"#]]
        .assert_eq(&err(&text));
        let text = GOOD.replace("function = \"basket\"", "function = \"baskte\"");
        assert!(err(&text).contains("wisp.toml:16:12"), "{}", err(&text));
        assert!(err(&text).contains("functions in this manifest: basket"));
        let text = GOOD.replace("/basket/{id}", "basket/{id}");
        assert!(err(&text).contains("must start with `/`"));
        let text = GOOD.replace("memory_mb = 64", "memory_mb = 99999");
        assert!(err(&text).contains("memory_mb must be between 16 and 10240; it is 99999"));
    }

    #[test]
    fn async_and_idempotency_settings() {
        let text = GOOD.replace(
            "memory_mb = 64",
            "memory_mb = 64\nasync = { max_retries = 1, max_event_age = \"1h\", on_failure = \"audit:live\" }\nidempotency_key = \"$.order.id\"\nidempotency_ttl = \"10m\"",
        );
        let f = &parse("wisp.toml", &text).unwrap().functions[0];
        let a = f.async_policy.as_ref().unwrap();
        assert_eq!(a.max_retries, Some(1));
        assert_eq!(a.max_event_age_secs, Some(3600));
        assert_eq!(a.on_success, None);
        assert_eq!(
            a.on_failure,
            Some(Destination::Function {
                function: "audit".into(),
                qualifier: Some("live".into())
            })
        );
        let i = f.idempotency.as_ref().unwrap();
        assert_eq!(i.key_path.as_ref().unwrap().as_str(), "$.order.id");
        assert_eq!(i.ttl.as_secs(), 600);

        let bad = |from: &str, to: &str| err(&GOOD.replace(from, to));
        let e = bad("memory_mb = 64", "async = { max_retries = 3 }");
        assert!(
            e.contains("max_retries must be between 0 and 2; it is 3")
                && e.contains("wisp.toml:8:9"),
            "{e}"
        );
        let e = bad("memory_mb = 64", "async = { max_event_age = \"10s\" }");
        assert!(
            e.contains("max_event_age in seconds must be between 60 and 21600; it is 10"),
            "{e}"
        );
        let e = bad(
            "memory_mb = 64",
            "async = { on_failure = \"topic:failed\" }",
        );
        assert!(
            e.contains("topic destinations are not available yet"),
            "{e}"
        );
        let e = bad("memory_mb = 64", "async = { max_retry = 1 }");
        assert!(e.contains("did you mean `max_retries`?"), "{e}");
        let e = bad("memory_mb = 64", "idempotency_key = \"order.id\"");
        assert!(
            e.contains("must start with `$`") && e.contains("wisp.toml:8:19"),
            "{e}"
        );
        let e = bad("memory_mb = 64", "idempotency_ttl = \"0s\"");
        assert!(e.contains("idempotency TTL"), "{e}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("x/wisp.toml", "[app]\nname = \"a\"\n[function.f\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("x/wisp.toml", 3));
    }

    #[test]
    fn log_format_and_level_are_lambdas_logging_config() {
        let with =
            |extra: &str| GOOD.replace("memory_mb = 64", &format!("memory_mb = 64\n{extra}"));
        let m = parse(
            "wisp.toml",
            &with("log_format = \"json\"\nlog_level = \"warn\""),
        )
        .unwrap();
        let logging = &m.functions[0].config.logging;
        assert!(logging.json);
        assert_eq!(logging.application_level.as_deref(), Some("WARN"));
        assert!(err(&with("log_format = \"xml\"")).contains("log_format is"));
        assert!(err(&with("log_level = \"warn\"")).contains("only allowed when LogFormat is JSON"));
        assert!(err(&with("log_format = \"json\"\nlog_level = \"loud\""))
            .contains("ApplicationLogLevel must be one of"));
    }

    #[test]
    fn a_url_is_lambdas_function_url_config() {
        let with =
            |extra: &str| GOOD.replace("memory_mb = 64", &format!("memory_mb = 64\n{extra}"));
        let m = parse(
            "wisp.toml",
            &with("url = { auth = \"aws_iam\", invoke_mode = \"response_stream\", cors = { allow_origins = [\"https://shop.example\"], max_age = 60 } }"),
        )
        .unwrap();
        let url = m.functions[0].url.as_ref().unwrap();
        assert_eq!(
            (url.auth_type.as_str(), url.invoke_mode.as_str()),
            ("AWS_IAM", "RESPONSE_STREAM")
        );
        assert_eq!(
            url.cors.as_deref(),
            Some(r#"{"AllowOrigins":["https://shop.example"],"MaxAge":60}"#)
        );
        let m = parse(
            "wisp.toml",
            &with("layers = [\"arn:aws:lambda:us-east-1:000000000000:layer:shared:3\"]"),
        )
        .unwrap();
        assert_eq!(
            m.functions[0].layers,
            ["arn:aws:lambda:us-east-1:000000000000:layer:shared:3"]
        );
        assert!(err(&with("layers = [\"shared\"]")).contains("is not a layer version ARN"));
        let m = parse("wisp.toml", &with("url = {}")).unwrap();
        assert_eq!(m.functions[0].url.as_ref().unwrap().auth_type, "NONE");
        assert!(err(&with("url = { auth = \"open\" }")).contains("url.auth is"));
        assert!(err(&with("url = { cors = { max_age = 99999 } }")).contains("86400"));
        assert!(err(&with("url = { cors = { origins = [] } }")).contains("unknown field `origins`"));
    }

    #[test]
    fn wasm_needs_exactly_one_code_source() {
        let text = GOOD.replace("source = \"functions/basket\"", "");
        assert!(err(&text).contains("needs `source` or `component`"));
        let text = GOOD.replace(
            "source = \"functions/basket\"",
            "source = \"a\"\ncomponent = \"b.wasm\"",
        );
        assert!(err(&text).contains("both"));
    }

    #[test]
    fn traffic_settings_are_read_and_checked() {
        let with = |extra: &str| {
            GOOD.replace(
                "function = \"basket\"\n",
                &format!("function = \"basket\"\n{extra}\n"),
            )
        };
        let m = parse(
            "wisp.toml",
            &with("rate_limit = { rate = 50, burst = 100, per = \"ip\" }\ncache_ttl = \"10s\"\ncache_key_headers = [\"Accept-Language\"]"),
        )
        .unwrap();
        let r = &m.routes[0];
        assert_eq!(
            r.rate_limit,
            Some(RateLimit {
                rate: 50,
                burst: 100,
                per: RateKey::Ip
            })
        );
        assert_eq!(
            r.cache,
            Some(CachePolicy {
                ttl_ms: 10_000,
                key_headers: vec!["accept-language".into()]
            })
        );
        assert!(err(&with("rate_limit = { rate = 0, burst = 1 }")).contains("at least 1"));
        assert!(err(&with(
            "rate_limit = { rate = 1, burst = 1, per = \"cookie\" }"
        ))
        .contains("not a rate limit key"));
        assert!(err(&with("rate_limit = { rate = 1 }")).contains("burst"));
        assert!(err(&with("cache_key_headers = [\"a\"]")).contains("needs `cache_ttl`"));
        assert!(err(&with("cache_ttl = \"2h\"")).contains("cache_ttl must be between"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(s in "\\PC{0,200}") {
            let _ = parse("wisp.toml", &s);
        }

        #[test]
        fn never_panics_on_mutated_good_input(cut in 0usize..300, insert in "[\\[\\]{}=\"a-z\n ]{0,5}") {
            let mut text = GOOD.to_string();
            let at = cut.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &insert);
            }
            let _ = parse("wisp.toml", &text);
        }
    }
}
