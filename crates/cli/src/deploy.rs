//! `wisp deploy`: read `wisp.toml`, build what needs building, upload each
//! function through the Lambda API and the app's routes through `/wisp/v1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value};
use wisp_core::codezip;
use wisp_core::manifest::{self, Manifest, ManifestFunction};

use crate::client::{segment, ApiFailure, Client};

/// Reads and validates `DIR/wisp.toml`.
pub fn load_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("wisp.toml");
    let meta =
        std::fs::metadata(&path).with_context(|| format!("no wisp.toml in {}", dir.display()))?;
    if meta.len() > wisp_core::limits::MAX_MANIFEST_BYTES as u64 {
        bail!(
            "{} is larger than {} bytes",
            path.display(),
            wisp_core::limits::MAX_MANIFEST_BYTES
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    manifest::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Builds a cargo crate for wasm32-wasip2, showing cargo's progress, and
/// returns the component it produced.
fn build_crate(dir: &Path, function: &str) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} is not a cargo crate (no Cargo.toml); wasm functions are built from a crate, or name a prebuilt `component`", dir.display());
    }
    eprintln!(
        "  building {function} from {} for wasm32-wasip2",
        dir.display()
    );
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .output()
        .context("cannot run cargo; is Rust installed? (`rustup target add wasm32-wasip2` is needed too)")?;
    if !output.status.success() {
        bail!("building {function} failed (see cargo's output above); if the target is missing run `rustup target add wasm32-wasip2`");
    }
    let mut wasm = None;
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" {
            if let Some(files) = msg["filenames"].as_array() {
                for f in files.iter().filter_map(Value::as_str) {
                    if f.ends_with(".wasm")
                        && msg["manifest_path"].as_str().map(Path::new)
                            == Some(manifest.canonicalize()?.as_path())
                    {
                        wasm = Some(PathBuf::from(f));
                    }
                }
            }
        }
    }
    wasm.with_context(|| {
        format!(
            "cargo built {} but produced no .wasm; is it a `cdylib` crate?",
            dir.display()
        )
    })
}

/// Zips a process function's source dir as Lambda expects it: paths
/// relative to the dir, file modes kept (an executable `bootstrap` stays
/// executable), bounded like an upload.
fn zip_dir(root: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let kind = e.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() || kind.is_symlink() {
                files.push(path);
            }
            if files.len() > wisp_core::limits::MAX_ZIP_ENTRIES {
                bail!(
                    "{} holds more than {} files",
                    root.display(),
                    wisp_core::limits::MAX_ZIP_ENTRIES
                );
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    let mut total: u64 = 0;
    for path in files {
        let name = path
            .strip_prefix(root)
            .expect("walked under root")
            .to_string_lossy()
            .replace('\\', "/");
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        total += meta.len();
        if total > wisp_core::limits::MAX_UNZIPPED_BYTES {
            bail!(
                "{} is larger than {} bytes unpacked",
                root.display(),
                wisp_core::limits::MAX_UNZIPPED_BYTES
            );
        }
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(meta.permissions().mode() & 0o777);
        writer.start_file(name, options)?;
        writer.write_all(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )?;
    }
    writer.finish()?;
    Ok(out.into_inner())
}

/// The zip to upload for one function.
fn package(dir: &Path, f: &ManifestFunction) -> anyhow::Result<Vec<u8>> {
    if wisp_core::RuntimeKind::of(&f.config.runtime) == Some(wisp_core::RuntimeKind::Process) {
        let source = f
            .source
            .as_ref()
            .with_context(|| format!("function `{}` has no `source`", f.name))?;
        eprintln!("  packaging {} from {}", f.name, dir.join(source).display());
        return zip_dir(&dir.join(source));
    }
    let wasm_path = match (&f.component, &f.source) {
        (Some(c), _) => dir.join(c),
        (None, Some(s)) => build_crate(&dir.join(s), &f.name)?,
        (None, None) => bail!("function `{}` has no code", f.name),
    };
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    Ok(codezip::single_file(&f.config.handler, &wasm))
}

fn config_body(f: &ManifestFunction) -> Value {
    let c = &f.config;
    json!({
        "Runtime": c.runtime,
        "Handler": c.handler,
        "Role": "arn:aws:iam::000000000000:role/wisp",
        "Description": c.description,
        "Timeout": c.timeout_ms.div_ceil(1000),
        "MemorySize": c.memory_mb,
        "Environment": { "Variables": c.environment },
        "LoggingConfig": c.logging.to_aws(""),
        "Layers": f.layers,
        "WispConfig": {
            "AllowedOutboundHosts": c.allowed_outbound_hosts,
            "InstanceReuse": c.instance_reuse,
            "TimeoutMs": c.timeout_ms,
        },
    })
}

/// Makes the server's reserved and provisioned concurrency what the
/// manifest says (absent keys remove them).
async fn apply_concurrency(
    client: &Client,
    path: &str,
    f: &ManifestFunction,
) -> anyhow::Result<()> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let concurrency = format!("/2017-10-31/functions/{name}/concurrency");
    match f.reserved_concurrency {
        Some(n) => client
            .call(
                "PUT",
                &concurrency,
                Some(&json!({ "ReservedConcurrentExecutions": n })),
            )
            .await
            .map(|_| ()),
        None => client.call("DELETE", &concurrency, None).await.map(|_| ()),
    }
    .with_context(|| format!("while setting the reserved concurrency of `{}`", f.name))?;
    client
        .call(
            "PUT",
            &format!("/wisp/v1/functions/{name}/provisioned-concurrency"),
            Some(&json!({ "count": f.provisioned_concurrency.unwrap_or(0) })),
        )
        .await
        .with_context(|| format!("while setting the provisioned concurrency of `{}`", f.name))?;
    Ok(())
}

/// Makes the function's URL what the manifest says: created, updated, or
/// removed when the manifest has none; prints it.
async fn apply_url(client: &Client, f: &ManifestFunction) -> anyhow::Result<()> {
    let path = format!("/2021-10-31/functions/{}/url", segment(&f.name));
    let existing = client.send("GET", &path, Vec::new(), &[]).await?;
    let exists = existing.status == 200;
    let Some(url) = &f.url else {
        if exists {
            client
                .call("DELETE", &path, None)
                .await
                .with_context(|| format!("while removing the URL of `{}`", f.name))?;
        }
        return Ok(());
    };
    let mut body = json!({ "AuthType": url.auth_type, "InvokeMode": url.invoke_mode });
    body["Cors"] = match &url.cors {
        Some(c) => serde_json::from_str(c)?,
        None => json!({}),
    };
    let reply = client
        .call(if exists { "PUT" } else { "POST" }, &path, Some(&body))
        .await
        .with_context(|| format!("while setting the URL of `{}`", f.name))?;
    let shown: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if let Some(u) = shown["FunctionUrl"].as_str() {
        eprintln!("  url  {u} ({})", url.auth_type);
    }
    Ok(())
}

/// Makes the server's async settings and idempotency config of `$LATEST`
/// what the manifest says (absent keys remove them).
async fn apply_async(client: &Client, path: &str, f: &ManifestFunction) -> anyhow::Result<()> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let config = format!("/2019-09-25/functions/{name}/event-invoke-config");
    match &f.async_policy {
        Some(a) => {
            let dest = |d: &Option<wisp_core::async_invoke::Destination>| match d {
                Some(d) => json!({ "Destination": d.arn("us-east-1") }),
                None => json!({}),
            };
            let mut body = json!({
                "DestinationConfig": { "OnSuccess": dest(&a.on_success), "OnFailure": dest(&a.on_failure) },
            });
            if let Some(n) = a.max_retries {
                body["MaximumRetryAttempts"] = n.into();
            }
            if let Some(n) = a.max_event_age_secs {
                body["MaximumEventAgeInSeconds"] = n.into();
            }
            client.call("PUT", &config, Some(&body)).await.map(|_| ())
        }
        None => match client.call("DELETE", &config, None).await {
            Err(e) if e.downcast_ref::<ApiFailure>().is_some_and(|f| f.status == 404) => Ok(()),
            other => other.map(|_| ()),
        },
    }
    .with_context(|| format!("while setting the async config of `{}`", f.name))?;
    let idempotency = format!("/wisp/v1/functions/{name}/idempotency");
    match &f.idempotency {
        Some(i) => client
            .call(
                "PUT",
                &idempotency,
                Some(&json!({
                    "key": i.key_path.as_ref().map(|p| p.as_str()),
                    "ttl_secs": i.ttl.as_secs(),
                })),
            )
            .await
            .map(|_| ()),
        None => client.call("DELETE", &idempotency, None).await.map(|_| ()),
    }
    .with_context(|| format!("while setting the idempotency of `{}`", f.name))?;
    Ok(())
}

/// Deploys every function and route of the manifest in `dir`.
/// The settable attributes the manifest controls, at SQS's defaults, so
/// a key removed from the manifest is reset on the queue.
const QUEUE_DEFAULTS: [(&str, &str); 6] = [
    ("VisibilityTimeout", "30"),
    ("DelaySeconds", "0"),
    ("MessageRetentionPeriod", "345600"),
    ("ReceiveMessageWaitTimeSeconds", "0"),
    ("MaximumMessageSize", "1048576"),
    ("RedrivePolicy", ""),
];

pub(crate) async fn queue_arn(client: &Client, name: &str) -> anyhow::Result<String> {
    let url = client
        .sqs("GetQueueUrl", &json!({ "QueueName": name }))
        .await?["QueueUrl"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a = client
        .sqs(
            "GetQueueAttributes",
            &json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }),
        )
        .await?;
    Ok(a["Attributes"]["QueueArn"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Creates a queue, or brings an existing one to what the manifest says.
/// Queues left out of the manifest are kept: their messages are data.
async fn apply_queue(client: &Client, q: &manifest::ManifestQueue) -> anyhow::Result<()> {
    let mut attributes: serde_json::Map<String, Value> = QUEUE_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    for (k, v) in &q.attributes {
        attributes.insert(k.clone(), json!(v));
    }
    if let Some((dlq, count)) = &q.dead_letter {
        let arn = queue_arn(client, dlq)
            .await
            .with_context(|| format!("while finding `{}`'s dead-letter queue `{dlq}`", q.name))?;
        attributes.insert(
            "RedrivePolicy".into(),
            json!(json!({ "deadLetterTargetArn": arn, "maxReceiveCount": count }).to_string()),
        );
    }
    match client
        .sqs("GetQueueUrl", &json!({ "QueueName": q.name }))
        .await
    {
        Ok(v) => {
            attributes.remove("FifoQueue");
            client
                .sqs(
                    "SetQueueAttributes",
                    &json!({ "QueueUrl": v["QueueUrl"], "Attributes": attributes }),
                )
                .await
                .with_context(|| format!("while updating queue `{}`", q.name))?;
            eprintln!("  ✓ queue {} updated", q.name);
        }
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|a| a.kind == "QueueDoesNotExist") =>
        {
            if attributes.get("RedrivePolicy") == Some(&json!("")) {
                attributes.remove("RedrivePolicy");
            }
            client
                .sqs(
                    "CreateQueue",
                    &json!({ "QueueName": q.name, "Attributes": attributes }),
                )
                .await
                .with_context(|| format!("while creating queue `{}`", q.name))?;
            eprintln!("  ✓ queue {} created", q.name);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Makes the mappings of the manifest's functions what its triggers say:
/// creates the new ones, updates the kept ones, deletes the others.
async fn apply_triggers(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    const MAPPINGS: &str = "/2015-03-31/event-source-mappings/";
    for f in &manifest.functions {
        let listed = client
            .call(
                "GET",
                &format!("{MAPPINGS}?FunctionName={}", segment(&f.name)),
                None,
            )
            .await?
            .json()?;
        let mut existing: Vec<Value> = listed["EventSourceMappings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in manifest.triggers.iter().filter(|t| t.function == f.name) {
            let arn = queue_arn(client, &t.queue).await?;
            let mut body = json!({
                "BatchSize": t.batch_size.unwrap_or(10),
                "MaximumBatchingWindowInSeconds": t.batching_window_secs.unwrap_or(0),
                "Enabled": t.enabled,
                "FunctionResponseTypes": if t.report_batch_item_failures { vec!["ReportBatchItemFailures"] } else { vec![] },
                "FilterCriteria": { "Filters": t.filter.iter().map(|p| json!({ "Pattern": p })).collect::<Vec<_>>() },
                "ScalingConfig": { "MaximumConcurrency": t.max_concurrency },
            });
            let found = existing
                .iter()
                .position(|m| m["EventSourceArn"].as_str() == Some(arn.as_str()));
            match found {
                Some(i) => {
                    let m = existing.remove(i);
                    let uuid = m["UUID"].as_str().unwrap_or_default();
                    client
                        .call("PUT", &format!("{MAPPINGS}{}", segment(uuid)), Some(&body))
                        .await
                        .with_context(|| {
                            format!("while updating the trigger {} → {}", t.queue, t.function)
                        })?;
                }
                None => {
                    body["EventSourceArn"] = json!(arn);
                    body["FunctionName"] = json!(t.function);
                    client
                        .call("POST", MAPPINGS, Some(&body))
                        .await
                        .with_context(|| {
                            format!("while creating the trigger {} → {}", t.queue, t.function)
                        })?;
                }
            }
            eprintln!("  ✓ trigger {} → {}", t.queue, t.function);
        }
        for gone in existing {
            let uuid = gone["UUID"].as_str().unwrap_or_default();
            client
                .call("DELETE", &format!("{MAPPINGS}{}", segment(uuid)), None)
                .await?;
            eprintln!(
                "  ✓ trigger {} → {} removed",
                gone["EventSourceArn"].as_str().unwrap_or(""),
                f.name
            );
        }
    }
    Ok(())
}

pub async fn deploy(client: &Client, dir: &Path) -> anyhow::Result<Manifest> {
    let manifest = load_manifest(dir)?;
    eprintln!(
        "deploying app `{}` ({} functions, {} routes, {} queues, {} triggers, {} buses, {} rules, {} schedules, {} workflows)",
        manifest.app,
        manifest.functions.len(),
        manifest.routes.len(),
        manifest.queues.len(),
        manifest.triggers.len(),
        manifest.buses.len(),
        manifest.rules.len(),
        manifest.schedules.len(),
        manifest.workflows.len()
    );
    for f in &manifest.functions {
        let started = Instant::now();
        let zip = package(dir, f)?;
        let size = zip.len();
        let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
        let path = format!("/2015-03-31/functions/{}", segment(&f.name));
        let exists = match client.call("GET", &path, None).await {
            Ok(_) => true,
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|a| a.status == 404) =>
            {
                false
            }
            Err(e) => return Err(e),
        };
        eprintln!(
            "  uploading {} ({} KB){}",
            f.name,
            size.div_ceil(1024),
            if exists { ", updating" } else { "" }
        );
        if exists {
            client
                .call(
                    "PUT",
                    &format!("{path}/configuration"),
                    Some(&config_body(f)),
                )
                .await
                .with_context(|| format!("while updating the configuration of `{}`", f.name))?;
            client
                .call(
                    "PUT",
                    &format!("{path}/code"),
                    Some(&json!({ "ZipFile": zip_b64 })),
                )
                .await
                .with_context(|| format!("while updating the code of `{}`", f.name))?;
        } else {
            let mut body = config_body(f);
            body["FunctionName"] = json!(f.name);
            body["Code"] = json!({ "ZipFile": zip_b64 });
            client
                .call("POST", "/2015-03-31/functions", Some(&body))
                .await
                .with_context(|| format!("while creating `{}`", f.name))?;
        }
        apply_concurrency(client, &path, f).await?;
        apply_async(client, &path, f).await?;
        apply_url(client, f).await?;
        eprintln!(
            "  ✓ {} ready in {:.1}s",
            f.name,
            started.elapsed().as_secs_f64()
        );
    }
    for q in &manifest.queues {
        apply_queue(client, q).await?;
    }
    apply_triggers(client, &manifest).await?;
    // Workflows first: rules and schedules may target them.
    crate::deploy_events::apply_workflows(client, dir, &manifest).await?;
    crate::deploy_events::apply(client, &manifest).await?;
    client
        .call(
            "PUT",
            &format!("/wisp/v1/apps/{}/routes", segment(&manifest.app)),
            Some(&json!({ "routes": manifest.routes })),
        )
        .await
        .context("while publishing the app's routes")?;
    Ok(manifest)
}
