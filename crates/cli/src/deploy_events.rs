//! `wisp deploy` for the event side of a manifest: buses, rules with
//! their targets, and schedules. What the app declared is made to match:
//! a rule or target the app no longer declares is removed (the app's
//! rules carry a `wisp:app` tag), and its schedules live in a schedule
//! group named after it, so one it dropped is deleted. Buses are kept:
//! other apps may put events on them.

use anyhow::Context;
use serde_json::{json, Value};
use wisp_core::manifest::{
    Manifest, ManifestRetry, ManifestRule, ManifestSchedule, ManifestTarget, TargetRef,
};

use crate::client::{segment, ApiFailure, Client};

/// The tag that marks a rule as an app's.
const APP_TAG: &str = "wisp:app";
/// The role ARN targets carry (wisp does not assume roles).
const ROLE: &str = "arn:aws:iam::000000000000:role/wisp";

fn failed_with(e: &anyhow::Error, kind: &str) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|a| a.kind == kind)
}

/// The ARN a target names, looked up on the server.
async fn arn_of(client: &Client, to: &TargetRef) -> anyhow::Result<String> {
    let arn = match to {
        TargetRef::Function(f) => client
            .call(
                "GET",
                &format!("/2015-03-31/functions/{}", segment(f)),
                None,
            )
            .await?
            .json()?["Configuration"]["FunctionArn"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        TargetRef::Queue(q) => crate::deploy::queue_arn(client, q).await?,
        TargetRef::Bus(b) => client
            .events("DescribeEventBus", &json!({ "Name": b }))
            .await?["Arn"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    Ok(arn)
}

async fn retry_json(
    client: &Client,
    retry: &ManifestRetry,
    target: &mut Value,
) -> anyhow::Result<()> {
    let mut policy = json!({});
    if let Some(a) = retry.attempts {
        policy["MaximumRetryAttempts"] = json!(a);
    }
    if let Some(s) = retry.max_age_secs {
        policy["MaximumEventAgeInSeconds"] = json!(s);
    }
    if policy.as_object().is_some_and(|p| !p.is_empty()) {
        target["RetryPolicy"] = policy;
    }
    if let Some(q) = &retry.dead_letter {
        target["DeadLetterConfig"] = json!({ "Arn": crate::deploy::queue_arn(client, q).await? });
    }
    Ok(())
}

async fn target_json(client: &Client, t: &ManifestTarget) -> anyhow::Result<Value> {
    let mut v = json!({ "Id": t.id, "Arn": arn_of(client, &t.to).await? });
    if let Some(i) = &t.input {
        v["Input"] = json!(i);
    }
    if let Some(p) = &t.input_path {
        v["InputPath"] = json!(p);
    }
    if let Some((paths, template)) = &t.transformer {
        v["InputTransformer"] = json!({ "InputPathsMap": paths, "InputTemplate": template });
    }
    retry_json(client, &t.retry, &mut v).await?;
    Ok(v)
}

async fn apply_rule(client: &Client, app: &str, r: &ManifestRule) -> anyhow::Result<()> {
    let mut put = json!({
        "Name": r.name,
        "EventBusName": r.bus,
        "State": if r.enabled { "ENABLED" } else { "DISABLED" },
        "Tags": [{ "Key": APP_TAG, "Value": app }],
    });
    if let Some(p) = &r.pattern {
        put["EventPattern"] = json!(p);
    }
    if let Some(s) = &r.schedule {
        put["ScheduleExpression"] = json!(s);
    }
    if let Some(d) = &r.description {
        put["Description"] = json!(d);
    }
    client.events("PutRule", &put).await?;
    let have = client
        .events(
            "ListTargetsByRule",
            &json!({ "Rule": r.name, "EventBusName": r.bus }),
        )
        .await?;
    let stale: Vec<&str> = have["Targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["Id"].as_str())
        .filter(|id| !r.targets.iter().any(|t| t.id == *id))
        .collect();
    if !stale.is_empty() {
        client
            .events(
                "RemoveTargets",
                &json!({ "Rule": r.name, "EventBusName": r.bus, "Ids": stale }),
            )
            .await?;
    }
    if !r.targets.is_empty() {
        let mut targets = Vec::new();
        for t in &r.targets {
            targets.push(target_json(client, t).await?);
        }
        let out = client
            .events(
                "PutTargets",
                &json!({ "Rule": r.name, "EventBusName": r.bus, "Targets": targets }),
            )
            .await?;
        if let Some(f) = out["FailedEntries"].as_array().and_then(|f| f.first()) {
            anyhow::bail!(
                "target `{}`: {}",
                f["TargetId"].as_str().unwrap_or(""),
                f["ErrorMessage"].as_str().unwrap_or("refused")
            );
        }
    }
    Ok(())
}

/// Deletes the app's rules (by their tag) on `bus` that it no longer declares.
async fn prune_rules(client: &Client, manifest: &Manifest, bus: &str) -> anyhow::Result<()> {
    let rules = client
        .events("ListRules", &json!({ "EventBusName": bus }))
        .await?;
    for rule in rules["Rules"].as_array().into_iter().flatten() {
        let (Some(name), Some(arn)) = (rule["Name"].as_str(), rule["Arn"].as_str()) else {
            continue;
        };
        if manifest
            .rules
            .iter()
            .any(|r| r.bus == bus && r.name == name)
        {
            continue;
        }
        let tags = client
            .events("ListTagsForResource", &json!({ "ResourceARN": arn }))
            .await?;
        let ours = tags["Tags"].as_array().into_iter().flatten().any(|t| {
            t["Key"].as_str() == Some(APP_TAG) && t["Value"].as_str() == Some(&manifest.app)
        });
        if ours {
            client
                .events(
                    "DeleteRule",
                    &json!({ "Name": name, "EventBusName": bus, "Force": true }),
                )
                .await?;
            eprintln!("  ✓ rule {bus}/{name} removed");
        }
    }
    Ok(())
}

/// The schedule group of an app's schedules: its name where that is a
/// valid group name.
fn group_of(app: &str) -> String {
    app.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

async fn schedule_body(
    client: &Client,
    group: &str,
    s: &ManifestSchedule,
) -> anyhow::Result<Value> {
    let mut target = json!({ "Arn": arn_of(client, &s.to).await?, "RoleArn": ROLE });
    if let Some(i) = &s.input {
        target["Input"] = json!(i);
    }
    if let (Some(d), Some(src)) = (&s.detail_type, &s.source) {
        target["EventBridgeParameters"] = json!({ "DetailType": d, "Source": src });
    }
    retry_json(client, &s.retry, &mut target).await?;
    let mut body = json!({
        "GroupName": group,
        "ScheduleExpression": s.expression,
        "State": if s.enabled { "ENABLED" } else { "DISABLED" },
        "FlexibleTimeWindow": match s.window_minutes {
            None => json!({ "Mode": "OFF" }),
            Some(m) => json!({ "Mode": "FLEXIBLE", "MaximumWindowInMinutes": m }),
        },
        "Target": target,
    });
    if let Some(tz) = &s.timezone {
        body["ScheduleExpressionTimezone"] = json!(tz);
    }
    Ok(body)
}

async fn apply_schedules(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    let group = group_of(&manifest.app);
    let have = match client
        .call(
            "GET",
            &format!("/schedules?ScheduleGroup={}", segment(&group)),
            None,
        )
        .await
    {
        Ok(r) => r.json()?,
        Err(e) if failed_with(&e, "ResourceNotFoundException") => {
            if manifest.schedules.is_empty() {
                return Ok(());
            }
            client
                .call(
                    "POST",
                    &format!("/schedule-groups/{}", segment(&group)),
                    Some(&json!({})),
                )
                .await
                .with_context(|| format!("while creating the schedule group `{group}`"))?;
            json!({ "Schedules": [] })
        }
        Err(e) => return Err(e),
    };
    let existing: Vec<&str> = have["Schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    for s in &manifest.schedules {
        let body = schedule_body(client, &group, s).await?;
        let path = format!("/schedules/{}", segment(&s.name));
        let (method, verb) = match existing.contains(&s.name.as_str()) {
            true => ("PUT", "updated"),
            false => ("POST", "created"),
        };
        client
            .call(method, &path, Some(&body))
            .await
            .with_context(|| format!("while applying the schedule `{}`", s.name))?;
        eprintln!("  ✓ schedule {} {verb} ({})", s.name, s.expression);
    }
    for gone in existing
        .iter()
        .filter(|n| !manifest.schedules.iter().any(|s| s.name == **n))
    {
        client
            .call(
                "DELETE",
                &format!("/schedules/{}?groupName={}", segment(gone), segment(&group)),
                None,
            )
            .await?;
        eprintln!("  ✓ schedule {gone} removed");
    }
    Ok(())
}

/// Creates or updates the manifest's state machines (tagged with the
/// app) and deletes the app's ones it no longer declares.
/// A definition as the API takes it: JSON as written, YAML (Workflow
/// Studio's other export) turned into JSON.
fn definition_json(file: &str, text: String) -> anyhow::Result<String> {
    if file.ends_with(".json") {
        return Ok(text);
    }
    let value: serde_json::Value = serde_norway::from_str(&text)?;
    Ok(value.to_string())
}

/// The tag that carries a workflow's allowed_outbound_hosts (what its
/// HTTP tasks may call).
const HOSTS_TAG: &str = "wisp:allowed-outbound-hosts";

/// A workflow's loggingConfiguration: its level, and the log group AWS
/// would name (wisp keeps the lines in its own log store).
fn logging_of(w: &wisp_core::manifest::ManifestWorkflow) -> serde_json::Value {
    let group = format!(
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/vendedlogs/states/{}-Logs:*",
        w.name
    );
    json!({
        "level": w.logging,
        "includeExecutionData": w.log_execution_data,
        "destinations": [{ "cloudWatchLogsLogGroup": { "logGroupArn": group } }],
    })
}

pub async fn apply_workflows(
    client: &Client,
    dir: &std::path::Path,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let listed = client.states("ListStateMachines", &json!({})).await?;
    let existing: Vec<(String, String)> = listed["stateMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_string(),
                m["stateMachineArn"].as_str()?.to_string(),
            ))
        })
        .collect();
    for w in &manifest.workflows {
        let path = dir.join(&w.definition);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "while reading the definition of workflow `{}` ({})",
                w.name,
                path.display()
            )
        })?;
        let definition = definition_json(&w.definition, text)
            .with_context(|| format!("{}: not a YAML state machine definition", path.display()))?;
        let found = existing.iter().find(|(n, _)| n == &w.name);
        let done = match found {
            Some((_, arn)) => {
                let d = client
                    .states("DescribeStateMachine", &json!({ "stateMachineArn": arn }))
                    .await?;
                if d["type"].as_str() != Some(w.kind.as_str()) {
                    anyhow::bail!(
                        "workflow `{}` is {} on the server and {} in the manifest: a state machine's type cannot change; delete it first",
                        w.name,
                        d["type"].as_str().unwrap_or(""),
                        w.kind
                    );
                }
                let hosts = json!([{ "key": HOSTS_TAG, "value": w.allowed_outbound_hosts.join(" ") }]);
                client
                    .states("TagResource", &json!({ "resourceArn": arn, "tags": hosts }))
                    .await?;
                client
                    .states(
                        "UpdateStateMachine",
                        &json!({
                            "stateMachineArn": arn,
                            "definition": definition,
                            "loggingConfiguration": logging_of(w),
                        }),
                    )
                    .await
                    .map(|_| "updated")
            }
            None => client
                .states(
                    "CreateStateMachine",
                    &json!({
                        "name": w.name,
                        "definition": definition,
                        "roleArn": ROLE,
                        "type": w.kind,
                        "loggingConfiguration": logging_of(w),
                        "tags": [
                            { "key": APP_TAG, "value": manifest.app },
                            { "key": HOSTS_TAG, "value": w.allowed_outbound_hosts.join(" ") },
                        ],
                    }),
                )
                .await
                .map(|_| "created"),
        }
        .with_context(|| format!("while applying workflow `{}` ({})", w.name, path.display()))?;
        eprintln!("  ✓ workflow {} {done} ({})", w.name, w.kind);
    }
    for (name, arn) in existing
        .iter()
        .filter(|(n, _)| !manifest.workflows.iter().any(|w| &w.name == n))
    {
        let tags = client
            .states("ListTagsForResource", &json!({ "resourceArn": arn }))
            .await?;
        let ours = tags["tags"].as_array().into_iter().flatten().any(|t| {
            t["key"].as_str() == Some(APP_TAG) && t["value"].as_str() == Some(&manifest.app)
        });
        if ours {
            client
                .states("DeleteStateMachine", &json!({ "stateMachineArn": arn }))
                .await?;
            eprintln!("  ✓ workflow {name} removed");
        }
    }
    Ok(())
}

/// Applies the manifest's buses, rules and schedules.
pub async fn apply(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    for b in &manifest.buses {
        let mut body = json!({ "Name": b.name });
        if let Some(d) = &b.description {
            body["Description"] = json!(d);
        }
        match client.events("CreateEventBus", &body).await {
            Ok(_) => eprintln!("  ✓ bus {} created", b.name),
            Err(e) if failed_with(&e, "ResourceAlreadyExistsException") => {
                client
                    .events("UpdateEventBus", &body)
                    .await
                    .with_context(|| format!("while updating the bus `{}`", b.name))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("while creating the bus `{}`", b.name))
            }
        }
    }
    for r in &manifest.rules {
        apply_rule(client, &manifest.app, r)
            .await
            .with_context(|| format!("while applying the rule `{}` on bus `{}`", r.name, r.bus))?;
        eprintln!(
            "  ✓ rule {}/{} ({} targets)",
            r.bus,
            r.name,
            r.targets.len()
        );
    }
    let mut buses: Vec<&str> = vec!["default"];
    buses.extend(manifest.buses.iter().map(|b| b.name.as_str()));
    for bus in buses {
        prune_rules(client, manifest, bus)
            .await
            .with_context(|| format!("while removing the app's old rules on bus `{bus}`"))?;
    }
    apply_schedules(client, manifest).await
}
