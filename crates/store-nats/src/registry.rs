//! The registry in one KV bucket. Keys:
//!
//! - `fn.<function>`: the function's head, `$LATEST` and the next version
//!   number; every change to either is a compare-and-set on its revision,
//!   so of two nodes updating one function one wins and the other gets
//!   `Conflict` (ResourceConflictException), never a torn mix;
//! - `ver.<function>.<n>`: a published version, created once;
//! - `alias.<function>.<name>`, `set.<function>.<kind>.<qualifier>`;
//! - `routes.<app>`: all of an app's routes, replaced at once.

use serde::{Deserialize, Serialize};
use wisp_core::function::LATEST;
use wisp_core::route::Route;
use wisp_core::{Alias, FunctionVersion};
use wisp_store::{check_revision, Registry, Result, Setting, StoreError};

use crate::kv::{seg, unseg, Versioned};
use crate::NatsStore;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Head {
    pub latest: FunctionVersion,
    pub next_version: u64,
}

fn head_key(function: &str) -> String {
    format!("fn.{}", seg(function))
}

fn version_key(function: &str, version: &str) -> String {
    format!("ver.{}.{}", seg(function), seg(version))
}

fn alias_key(function: &str, name: &str) -> String {
    format!("alias.{}.{}", seg(function), seg(name))
}

fn setting_key(function: &str, kind: &str, qualifier: &str) -> String {
    format!("set.{}.{}.{}", seg(function), seg(kind), seg(qualifier))
}

fn routes_key(app: &str) -> String {
    format!("routes.{}", seg(app))
}

/// The error when a compare-and-set lost to another writer.
pub(crate) fn lost_race(what: &str) -> StoreError {
    StoreError::Conflict(format!(
        "The operation cannot be performed at this time. An update is in progress for resource: {what}"
    ))
}

fn not_found(function: &str) -> StoreError {
    StoreError::NotFound(format!("Function {function}"))
}

impl NatsStore {
    async fn head(&self, function: &str) -> Result<Versioned<Head>> {
        self.registry
            .entry(&head_key(function))
            .await?
            .ok_or_else(|| not_found(function))
    }

    async fn published(&self, function: &str) -> Result<Vec<FunctionVersion>> {
        let mut versions: Vec<FunctionVersion> = self
            .registry
            .scan(&format!("ver.{}.*", seg(function)))
            .await?
            .into_iter()
            .map(|s| s.value)
            .collect();
        versions.sort_by_key(|v: &FunctionVersion| v.version.parse::<u64>().unwrap_or(0));
        Ok(versions)
    }
}

#[async_trait::async_trait]
impl Registry for NatsStore {
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<wisp_store::Change>> {
        Some(self.changes.subscribe())
    }

    async fn put_setting(&self, setting: Setting) -> Result<()> {
        self.head(&setting.function).await?;
        let key = setting_key(&setting.function, &setting.kind, &setting.qualifier);
        self.registry.put(&key, &setting.value).await?;
        Ok(())
    }

    async fn get_setting(
        &self,
        function: &str,
        kind: &str,
        qualifier: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.registry
            .get(&setting_key(function, kind, qualifier))
            .await
    }

    async fn delete_setting(&self, function: &str, kind: &str, qualifier: &str) -> Result<bool> {
        let key = setting_key(function, kind, qualifier);
        match self.registry.entry::<serde_json::Value>(&key).await? {
            Some(found) => self.registry.purge_at(&key, found.revision).await,
            None => Ok(false),
        }
    }

    async fn list_settings(&self, kind: &str, function: Option<&str>) -> Result<Vec<Setting>> {
        let filter = format!(
            "set.{}.{}.*",
            function.map(seg).unwrap_or_else(|| "*".into()),
            seg(kind)
        );
        let mut out: Vec<Setting> = self
            .registry
            .scan::<serde_json::Value>(&filter)
            .await?
            .into_iter()
            .filter_map(|s| {
                let parts: Vec<&str> = s.key.split('.').collect();
                let [_, function, _, qualifier] = parts[..] else {
                    return None;
                };
                Some(Setting {
                    function: unseg(function),
                    qualifier: unseg(qualifier),
                    kind: kind.to_string(),
                    value: s.value,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.function, &a.qualifier).cmp(&(&b.function, &b.qualifier)));
        Ok(out)
    }

    async fn create_function(&self, latest: FunctionVersion) -> Result<()> {
        let name = latest.function.clone();
        let head = Head {
            latest,
            next_version: 1,
        };
        match self.registry.create(&head_key(&name), &head).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!(
                "Function already exist: {name}"
            ))),
        }
    }

    async fn update_latest(
        &self,
        latest: FunctionVersion,
        expected_revision: Option<&str>,
    ) -> Result<()> {
        let current = self.head(&latest.function).await?;
        check_revision(
            &current.value.latest.revision_id,
            expected_revision,
            &latest.function,
        )?;
        let key = head_key(&latest.function);
        let name = latest.function.clone();
        let head = Head {
            latest,
            next_version: current.value.next_version,
        };
        match self.registry.update(&key, &head, current.revision).await? {
            Some(_) => Ok(()),
            None => Err(lost_race(&name)),
        }
    }

    async fn get_version(&self, function: &str, version: &str) -> Result<Option<FunctionVersion>> {
        if version == LATEST {
            return Ok(self
                .registry
                .get::<Head>(&head_key(function))
                .await?
                .map(|h| h.latest));
        }
        self.registry.get(&version_key(function, version)).await
    }

    async fn list_latest(&self) -> Result<Vec<FunctionVersion>> {
        let mut out: Vec<FunctionVersion> = self
            .registry
            .scan::<Head>("fn.*")
            .await?
            .into_iter()
            .map(|s| s.value.latest)
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        Ok(out)
    }

    async fn list_versions(&self, function: &str) -> Result<Vec<FunctionVersion>> {
        let Some(head) = self.registry.get::<Head>(&head_key(function)).await? else {
            return Ok(Vec::new());
        };
        let mut out = vec![head.latest];
        out.extend(self.published(function).await?);
        Ok(out)
    }

    async fn publish_version(
        &self,
        function: &str,
        description: Option<String>,
        expected_revision: Option<&str>,
    ) -> Result<FunctionVersion> {
        let head = self.head(function).await?;
        let latest = &head.value.latest;
        check_revision(&latest.revision_id, expected_revision, function)?;
        if let Some(newest) = self.published(function).await?.pop() {
            let mut same = newest.config.clone();
            same.description = latest.config.description.clone();
            if newest.code_sha256 == latest.code_sha256 && same == latest.config {
                return Ok(newest);
            }
        }
        // The number is taken first, by compare-and-set on the head: two
        // publishers never get the same one, and a crash before the version
        // is written leaves a gap, not a clash.
        let number = head.value.next_version;
        let bumped = Head {
            latest: latest.clone(),
            next_version: number + 1,
        };
        if self
            .registry
            .update(&head_key(function), &bumped, head.revision)
            .await?
            .is_none()
        {
            return Err(lost_race(function));
        }
        let mut version = latest.clone();
        version.version = number.to_string();
        version.revision_id = uuid::Uuid::new_v4().to_string();
        if let Some(d) = description {
            version.config.description = d;
        }
        match self
            .registry
            .create(&version_key(function, &version.version), &version)
            .await?
        {
            Some(_) => Ok(version),
            None => Err(lost_race(function)),
        }
    }

    async fn delete_function(&self, function: &str) -> Result<()> {
        let head = self.head(function).await?;
        // What hangs off the function goes first and its head last: a crash
        // part way leaves the function there, to be deleted again.
        let f = seg(function);
        for filter in [
            format!("ver.{f}.*"),
            format!("alias.{f}.*"),
            format!("set.{f}.>"),
        ] {
            self.registry.purge_matching(&filter).await?;
        }
        self.keys.purge_matching(&format!("k.{f}.>")).await?;
        self.keys.purge_matching(&format!("q.{f}.>")).await?;
        self.drop_events(function).await?;
        match self
            .registry
            .purge_at(&head_key(function), head.revision)
            .await?
        {
            true => Ok(()),
            false => Err(lost_race(function)),
        }
    }

    async fn delete_version(&self, function: &str, version: &str) -> Result<()> {
        let aliases = self.list_aliases(function).await?;
        if let Some(alias) = aliases.iter().find(|a| a.version == version) {
            return Err(StoreError::Conflict(format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                alias.name
            )));
        }
        let key = version_key(function, version);
        match self.registry.entry::<FunctionVersion>(&key).await? {
            Some(found) => {
                self.registry.purge_at(&key, found.revision).await?;
                Ok(())
            }
            None => Err(StoreError::NotFound(format!(
                "Function {function}:{version}"
            ))),
        }
    }

    async fn create_alias(&self, alias: Alias) -> Result<()> {
        self.head(&alias.function).await?;
        match self
            .registry
            .create(&alias_key(&alias.function, &alias.name), &alias)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!(
                "Alias already exists: {}:{}",
                alias.function, alias.name
            ))),
        }
    }

    async fn update_alias(&self, alias: Alias, expected_revision: Option<&str>) -> Result<()> {
        let key = alias_key(&alias.function, &alias.name);
        let current: Versioned<Alias> = self.registry.entry(&key).await?.ok_or_else(|| {
            StoreError::NotFound(format!("Alias {}:{}", alias.function, alias.name))
        })?;
        check_revision(&current.value.revision_id, expected_revision, &alias.name)?;
        match self.registry.update(&key, &alias, current.revision).await? {
            Some(_) => Ok(()),
            None => Err(lost_race(&format!("{}:{}", alias.function, alias.name))),
        }
    }

    async fn get_alias(&self, function: &str, name: &str) -> Result<Option<Alias>> {
        self.registry.get(&alias_key(function, name)).await
    }

    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>> {
        let mut out: Vec<Alias> = self
            .registry
            .scan(&format!("alias.{}.*", seg(function)))
            .await?
            .into_iter()
            .map(|s| s.value)
            .collect();
        out.sort_by(|a: &Alias, b: &Alias| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        let key = alias_key(function, name);
        match self.registry.entry::<Alias>(&key).await? {
            Some(found) => {
                self.registry.purge_at(&key, found.revision).await?;
                Ok(())
            }
            None => Err(StoreError::NotFound(format!("Alias {function}:{name}"))),
        }
    }

    async fn replace_routes(&self, app: &str, routes: Vec<Route>) -> Result<()> {
        let key = routes_key(app);
        if routes.is_empty() {
            return self.registry.purge(&key).await;
        }
        self.registry.put(&key, &routes).await?;
        Ok(())
    }

    async fn list_routes(&self) -> Result<Vec<(String, Route)>> {
        let mut apps: Vec<(String, Vec<Route>)> = self
            .registry
            .scan::<Vec<Route>>("routes.*")
            .await?
            .into_iter()
            .map(|s| (unseg(s.key.trim_start_matches("routes.")), s.value))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(apps
            .into_iter()
            .flat_map(|(app, routes)| routes.into_iter().map(move |r| (app.clone(), r)))
            .collect())
    }
}
