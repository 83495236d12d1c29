//! Versions and aliases of state machines: a version is an immutable copy
//! of a machine's definition and role, numbered from 1; an alias routes
//! executions to one version, or splits them between two by weight.
//! Executions started through a version's or an alias's ARN run that
//! version's definition.

use serde::{Deserialize, Serialize};
use wisp_store::StoreError;

use crate::engine::{Flows, FlowsError, Machine};

/// Document kinds: versions as `<machine>/<number, zero-padded>`, aliases
/// as `<machine>/<alias>`.
pub const VERSION: &str = "state-machine-version";
pub const ALIAS: &str = "state-machine-alias";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub machine: String,
    pub number: u64,
    pub definition: String,
    pub role_arn: String,
    pub description: Option<String>,
    pub revision_id: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub machine: String,
    pub name: String,
    pub description: Option<String>,
    /// (version number, weight), weights summing to 100.
    pub routing: Vec<(u64, u32)>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn key(machine: &str, number: u64) -> String {
    format!("{machine}/{number:010}")
}

fn conflict(message: impl Into<String>) -> FlowsError {
    FlowsError::new("ConflictException", message)
}

fn not_found(what: impl Into<String>) -> FlowsError {
    FlowsError::new("ResourceNotFound", what)
}

fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value, FlowsError> {
    serde_json::to_value(v).map_err(|e| FlowsError::internal(e.to_string()))
}

impl Flows {
    pub fn version_arn(&self, machine: &str, number: u64) -> String {
        format!("{}:{number}", self.machine_arn(machine))
    }

    pub fn alias_arn(&self, machine: &str, alias: &str) -> String {
        format!("{}:{alias}", self.machine_arn(machine))
    }

    /// The machine and qualifier (a version number or an alias name) an
    /// ARN names.
    pub fn qualified(arn: &str) -> Result<(String, Option<String>), FlowsError> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts[..] {
            ["arn", _, "states", _, _, "stateMachine", name] => Ok((name.into(), None)),
            ["arn", _, "states", _, _, "stateMachine", name, q] if !q.is_empty() => {
                Ok((name.into(), Some(q.into())))
            }
            _ => Err(FlowsError::new(
                "InvalidArn",
                format!("Invalid Arn: '{arn}'"),
            )),
        }
    }

    /// A machine's versions, newest first.
    pub async fn versions(&self, machine: &str) -> Result<Vec<Version>, FlowsError> {
        let mut out: Vec<Version> = self
            .store
            .list_documents(VERSION, &format!("{machine}/"))
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.number));
        Ok(out)
    }

    pub async fn version(&self, machine: &str, number: u64) -> Result<Version, FlowsError> {
        let doc = self
            .store
            .get_document(VERSION, &key(machine, number))
            .await?
            .ok_or_else(|| {
                not_found(format!(
                    "Resource not found: '{}'",
                    self.version_arn(machine, number)
                ))
            })?;
        serde_json::from_value(doc.value).map_err(|e| FlowsError::internal(e.to_string()))
    }

    /// PublishStateMachineVersion: the machine as it is now, as a new
    /// version; the latest one again if nothing changed since it.
    pub async fn publish(
        &self,
        machine: &str,
        revision_id: Option<&str>,
        description: Option<String>,
    ) -> Result<Version, FlowsError> {
        loop {
            let (m, _) = self.get(machine).await?;
            if revision_id.is_some_and(|r| r != m.revision_id) {
                return Err(conflict(format!(
                    "The revision id {} is not the state machine's current one ({})",
                    revision_id.unwrap_or_default(),
                    m.revision_id
                )));
            }
            let latest = self.versions(machine).await?.into_iter().next();
            if let Some(v) = latest.as_ref().filter(|v| v.revision_id == m.revision_id) {
                return Ok(v.clone());
            }
            let v = Version {
                machine: machine.to_string(),
                number: latest.map_or(1, |v| v.number + 1),
                definition: m.definition,
                role_arn: m.role_arn,
                description: description.clone(),
                revision_id: m.revision_id,
                created_ms: self.clock.now_ms(),
            };
            match self
                .store
                .create_document(VERSION, &key(machine, v.number), &to_value(&v)?)
                .await
            {
                Ok(_) => return Ok(v),
                // Another publish took the number: look again.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// DeleteStateMachineVersion: refused while an alias routes to it.
    pub async fn delete_version(&self, machine: &str, number: u64) -> Result<(), FlowsError> {
        for a in self.aliases(machine).await? {
            if a.routing.iter().any(|(v, _)| *v == number) {
                return Err(conflict(format!(
                    "Version {number} is routed to by alias {}",
                    a.name
                )));
            }
        }
        self.store
            .delete_document(VERSION, &key(machine, number))
            .await?;
        Ok(())
    }

    pub async fn aliases(&self, machine: &str) -> Result<Vec<Alias>, FlowsError> {
        Ok(self
            .store
            .list_documents(ALIAS, &format!("{machine}/"))
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    pub async fn alias(&self, machine: &str, name: &str) -> Result<(Alias, u64), FlowsError> {
        let doc = self
            .store
            .get_document(ALIAS, &format!("{machine}/{name}"))
            .await?
            .ok_or_else(|| {
                not_found(format!(
                    "Resource not found: '{}'",
                    self.alias_arn(machine, name)
                ))
            })?;
        let alias =
            serde_json::from_value(doc.value).map_err(|e| FlowsError::internal(e.to_string()))?;
        Ok((alias, doc.revision))
    }

    /// The routing an alias is given: one or two versions of `machine`
    /// that exist, weights summing to 100.
    async fn routing(
        &self,
        machine: &str,
        given: &[(String, u32)],
    ) -> Result<Vec<(u64, u32)>, FlowsError> {
        let invalid = |m: String| FlowsError::new("ValidationException", m);
        if given.is_empty() || given.len() > 2 {
            return Err(invalid(
                "routingConfiguration routes to one or two versions".into(),
            ));
        }
        if given.iter().map(|(_, w)| *w).sum::<u32>() != 100 {
            return Err(invalid("routingConfiguration's weights sum to 100".into()));
        }
        let mut out = Vec::new();
        for (arn, weight) in given {
            let (m, q) = Self::qualified(arn)?;
            let number = q
                .and_then(|q| q.parse::<u64>().ok())
                .filter(|_| m == machine);
            let Some(number) = number else {
                return Err(invalid(format!("{arn} is not a version of {machine}")));
            };
            self.version(machine, number).await?;
            if out.iter().any(|(n, _)| *n == number) {
                return Err(invalid("routingConfiguration names a version twice".into()));
            }
            out.push((number, *weight));
        }
        Ok(out)
    }

    pub async fn create_alias(
        &self,
        machine: &str,
        name: &str,
        description: Option<String>,
        routing: &[(String, u32)],
    ) -> Result<Alias, FlowsError> {
        let ok = !name.is_empty()
            && name.len() <= 80
            && !name.chars().all(|c| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(FlowsError::new(
                "ValidationException",
                format!("Invalid alias name: '{name}'"),
            ));
        }
        let now = self.clock.now_ms();
        let alias = Alias {
            machine: machine.to_string(),
            name: name.to_string(),
            description,
            routing: self.routing(machine, routing).await?,
            created_ms: now,
            updated_ms: now,
        };
        match self
            .store
            .create_document(ALIAS, &format!("{machine}/{name}"), &to_value(&alias)?)
            .await
        {
            Ok(_) => Ok(alias),
            Err(StoreError::Conflict(_)) => {
                let (have, _) = self.alias(machine, name).await?;
                if have.routing == alias.routing && have.description == alias.description {
                    return Ok(have);
                }
                Err(conflict(format!(
                    "Alias {name} exists with another configuration"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn update_alias(
        &self,
        machine: &str,
        name: &str,
        description: Option<String>,
        routing: Option<&[(String, u32)]>,
    ) -> Result<Alias, FlowsError> {
        loop {
            let (mut alias, revision) = self.alias(machine, name).await?;
            if let Some(r) = routing {
                alias.routing = self.routing(machine, r).await?;
            }
            if description.is_some() {
                alias.description = description.clone();
            }
            alias.updated_ms = self.clock.now_ms();
            match self
                .store
                .update_document(
                    ALIAS,
                    &format!("{machine}/{name}"),
                    &to_value(&alias)?,
                    revision,
                )
                .await
            {
                Ok(_) => return Ok(alias),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn delete_alias(&self, machine: &str, name: &str) -> Result<(), FlowsError> {
        self.store
            .delete_document(ALIAS, &format!("{machine}/{name}"))
            .await?;
        Ok(())
    }

    /// A machine named as `name` or `name:qualifier`, as an execution
    /// started through it runs it.
    pub(crate) async fn resolve(&self, reference: &str) -> Result<Machine, FlowsError> {
        let (name, qualifier) = match reference.split_once(':') {
            Some((m, q)) => (m, Some(q)),
            None => (reference, None),
        };
        let (m, _) = self.get(name).await?;
        match qualifier {
            Some(q) => self.as_qualified(m, q).await,
            None => Ok(m),
        }
    }

    /// The machine as a qualified start runs it: the version's (or the
    /// version an alias picks) definition and role.
    pub(crate) async fn as_qualified(
        &self,
        mut m: Machine,
        qualifier: &str,
    ) -> Result<Machine, FlowsError> {
        let number = match qualifier.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let (alias, _) = self.alias(&m.name, qualifier).await?;
                let pick = self.rng.unit() * 100.0;
                let mut at = 0.0;
                alias
                    .routing
                    .iter()
                    .find(|(_, w)| {
                        at += *w as f64;
                        pick < at
                    })
                    .or(alias.routing.last())
                    .map(|(n, _)| *n)
                    .ok_or_else(|| FlowsError::internal("an alias with no routing"))?
            }
        };
        let v = self.version(&m.name, number).await?;
        m.definition = v.definition;
        m.role_arn = v.role_arn;
        Ok(m)
    }
}
