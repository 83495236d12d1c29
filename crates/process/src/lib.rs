//! The process runtime: unchanged Lambda functions (`nodejs*`, `python3.*`,
//! `provided*`) run as processes that poll the AWS Lambda Runtime API,
//! served by wisp on a loopback port per worker.
//!
//! `prepare` unpacks the code once per code sha and builds a warm pool;
//! each invocation takes an idle worker or starts one (a timed INIT phase,
//! at most 10 s). Timeouts kill the worker's whole process group; memory
//! is held by a cgroup where the host allows it, else by `RLIMIT_DATA`.
//! Node and Python run on the host's interpreters through bootstraps that
//! ship inside wisp (`bootstrap/`); `provided` runs the zip's `bootstrap`.

mod idle;
mod peer;
mod pool;
mod repoll;
mod runtime_api;
pub mod sandbox;
mod unpack;
pub mod users;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wisp_core::runtime::{Prepared, Runtime};
use wisp_core::Cause;
use wisp_core::{FunctionVersion, InvokeError};

pub use sandbox::Sandbox;
pub use users::WorkerUsers;
use users::{check_access, is_root, Need, WorkerUser};

const NODE_BOOTSTRAP: &str = include_str!("../bootstrap/node/bootstrap.js");
const PYTHON_BOOTSTRAP: &str = include_str!("../bootstrap/python/bootstrap.py");

/// How the process runtime runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Where task roots and the bootstraps go (`DATA_DIR/process`).
    pub dir: PathBuf,
    /// How long an idle worker is kept before it is stopped.
    pub keep_warm: Duration,
    /// `AWS_REGION` of the functions.
    pub region: String,
    pub account_id: String,
    /// Run each function's workers as a uid of its own from this base
    /// (the server must run as root); `None`: as the server's user.
    pub worker_uid_base: Option<u32>,
}

/// Runs Lambda Runtime API processes.
pub struct ProcessRuntime {
    config: ProcessConfig,
    sandbox: Arc<Sandbox>,
    ids: Arc<AtomicU64>,
    runtime_dir: PathBuf,
    users: Option<WorkerUsers>,
    /// Interpreter paths by command name, found once.
    interpreters: Mutex<HashMap<&'static str, PathBuf>>,
}

impl ProcessRuntime {
    pub fn new(config: ProcessConfig) -> std::io::Result<ProcessRuntime> {
        let users = config
            .worker_uid_base
            .map(WorkerUsers::new)
            .transpose()
            .map_err(std::io::Error::other)?;
        let runtime_dir = config.dir.join("runtime");
        for (file, text) in [
            ("node/bootstrap.js", NODE_BOOTSTRAP),
            ("python/bootstrap.py", PYTHON_BOOTSTRAP),
        ] {
            let path = runtime_dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, &path)?;
            }
        }
        if users.is_some() {
            open_to_workers(&config.dir, &runtime_dir)?;
        } else if is_root() {
            tracing::warn!(
                "process functions run as root, like this server; start it with --worker-uid-base to run each function as an unprivileged user of its own"
            );
        }
        let sandbox = Sandbox::detect(&format!("wisp-{}", std::process::id()));
        tracing::info!(memory_limits = %sandbox.describe(), "process runtime ready");
        Ok(ProcessRuntime {
            config,
            sandbox: Arc::new(sandbox),
            ids: Arc::new(AtomicU64::new(1)),
            runtime_dir,
            users,
            interpreters: Mutex::new(HashMap::new()),
        })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The absolute path of `command` on the server's PATH (for Python,
    /// the interpreter itself, not a version manager's shim).
    async fn interpreter(&self, command: &'static str) -> Result<PathBuf, InvokeError> {
        if let Some(p) = self
            .interpreters
            .lock()
            .ok()
            .and_then(|m| m.get(command).cloned())
        {
            return Ok(p);
        }
        let missing = || {
            InvokeError::new(
                Cause::InvalidRuntime,
                format!("this runtime needs `{command}` on the wisp server's PATH"),
            )
        };
        let found = find_in_path(command).ok_or_else(missing)?;
        let resolved = if command == "python3" {
            let out = tokio::process::Command::new(&found)
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .await
                .map_err(|_| missing())?;
            let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if exe.is_empty() {
                found
            } else {
                PathBuf::from(exe)
            }
        } else {
            found
        };
        if let Ok(mut m) = self.interpreters.lock() {
            m.insert(command, resolved.clone());
        }
        Ok(resolved)
    }

    async fn spec(
        &self,
        version: &FunctionVersion,
        task_root: &Path,
        opt: &[PathBuf],
    ) -> Result<worker::Spec, InvokeError> {
        let c = &version.config;
        let (program, args) = if c.runtime.starts_with("nodejs") {
            let node = self.interpreter("node").await?;
            // Like Lambda, size V8's heap to the function's memory so it
            // collects garbage before the limit, not after.
            let heap = (c.memory_mb as u64 * 85 / 100).max(16);
            (
                node,
                vec![
                    format!("--max-old-space-size={heap}"),
                    self.runtime_dir
                        .join("node/bootstrap.js")
                        .display()
                        .to_string(),
                ],
            )
        } else if c.runtime.starts_with("python") {
            (
                self.interpreter("python3").await?,
                vec![
                    "-u".into(),
                    self.runtime_dir
                        .join("python/bootstrap.py")
                        .display()
                        .to_string(),
                ],
            )
        } else {
            let bootstrap = task_root.join("bootstrap");
            if !bootstrap.is_file() {
                return Err(InvokeError::new(
                    Cause::InvalidCode,
                    format!("runtime `{}` runs the file `bootstrap` at the root of the zip, and there is none", c.runtime),
                ));
            }
            (bootstrap, Vec::new())
        };
        let root = task_root.display().to_string();
        // The runtime's interpreter first, then the function's own `bin`,
        // then the host's PATH (a `provided` bootstrap may call host tools).
        let mut path = vec![format!("{root}/bin")];
        if let Some(dir) = program.parent().filter(|d| *d != task_root) {
            path.insert(0, dir.display().to_string());
        }
        // Layers: a later one is laid over an earlier one (its files win),
        // so it comes first in each search path.
        let layer_dirs: Vec<String> = opt.iter().rev().map(|d| d.display().to_string()).collect();
        let each = |f: &dyn Fn(&str) -> Vec<String>| -> Vec<String> {
            layer_dirs.iter().flat_map(|d| f(d)).collect()
        };
        path.extend(each(&|d| vec![format!("{d}/bin")]));
        let libraries = each(&|d| vec![format!("{d}/lib")]);
        let node_path = each(&|d| {
            vec![
                format!("{d}/nodejs/node20/node_modules"),
                format!("{d}/nodejs/node_modules"),
            ]
        });
        let python = c.runtime.strip_prefix("python").unwrap_or("3");
        let python_path = each(&|d| {
            vec![
                format!("{d}/python/lib/python{python}/site-packages"),
                format!("{d}/python"),
            ]
        });
        path.push(std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
        let mut env: Vec<(String, String)> = c
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let region = &self.config.region;
        // What Lambda sets unless the function does.
        let defaults = [
            ("PATH", path.join(":")),
            ("LANG", "en_US.UTF-8".into()),
            ("TZ", ":UTC".into()),
            (
                "LD_LIBRARY_PATH",
                std::iter::once(format!("{root}:{root}/lib"))
                    .chain(libraries)
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            ("NODE_PATH", node_path.join(":")),
            ("PYTHONPATH", python_path.join(":")),
        ];
        for (k, v) in defaults {
            if !v.is_empty() && !env.iter().any(|(key, _)| key == k) {
                env.push((k.to_string(), v));
            }
        }
        if c.logging.json {
            env.retain(|(k, _)| k != "AWS_LAMBDA_LOG_FORMAT" && k != "AWS_LAMBDA_LOG_LEVEL");
            env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
            let level = c.logging.application_level.as_deref().unwrap_or("INFO");
            env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.into()));
        }
        // Each worker is a log stream of its own, named as Lambda names them.
        let stream = format!(
            "{}/[{}]{}",
            time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!("[year]/[month]/[day]"))
                .unwrap_or_default(),
            version.version,
            uuid::Uuid::new_v4().simple()
        );
        let reserved = [
            ("_HANDLER", c.handler.clone()),
            ("LAMBDA_TASK_ROOT", root.clone()),
            ("LAMBDA_RUNTIME_DIR", self.runtime_dir.display().to_string()),
            ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", c.runtime)),
            ("AWS_LAMBDA_FUNCTION_NAME", version.function.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", version.version.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_mb.to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", version.function),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
            ("AWS_REGION", region.clone()),
            ("AWS_DEFAULT_REGION", region.clone()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ];
        for (k, v) in reserved {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        }
        let arn = format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            self.config.account_id, version.function
        );
        let user = match &self.users {
            Some(users) => {
                let user = users
                    .for_function(&version.function)
                    .map_err(InvokeError::platform)?;
                reachable(user, &program, &args, task_root)?;
                Some(user)
            }
            None => None,
        };
        Ok(worker::Spec {
            program,
            args,
            env,
            cwd: task_root.to_path_buf(),
            user,
            memory_mb: c.memory_mb,
            function_arn: if version.version == wisp_core::function::LATEST {
                arn
            } else {
                format!("{arn}:{}", version.version)
            },
        })
    }
}

/// Lets workers of other users reach the bootstraps and task roots under
/// `dir` (`DATA_DIR/process`) without listing what is there: the server
/// made the data dir itself enterable only (0711).
fn open_to_workers(dir: &Path, runtime_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let tasks = dir.join("tasks");
    std::fs::create_dir_all(&tasks)?;
    mode(dir, 0o711)?;
    mode(&tasks, 0o711)?;
    mode(runtime_dir, 0o755)?;
    for entry in std::fs::read_dir(runtime_dir)? {
        let runtime = entry?.path();
        if !runtime.is_dir() {
            continue;
        }
        mode(&runtime, 0o755)?;
        for file in std::fs::read_dir(&runtime)? {
            mode(&file?.path(), 0o644)?;
        }
    }
    // Fail at start, not at the first invocation, when a parent of the
    // data dir keeps workers out.
    let probe = WorkerUser {
        uid: u32::MAX - 1,
        gid: u32::MAX - 1,
    };
    check_access(&runtime_dir.join("node/bootstrap.js"), probe, Need::Read).map_err(|e| {
        std::io::Error::other(format!(
            "workers of their own users cannot reach the data dir: {e}; make its parents enterable by others (chmod o+x) or put the data dir elsewhere"
        ))
    })
}

/// Checks that `user` can run `program` with `args` (the files among them)
/// in `task_root`; the error says what stops it. Like a missing
/// interpreter, it is the caller's `InvalidRuntime`: retrying cannot help.
fn reachable(
    user: WorkerUser,
    program: &Path,
    args: &[String],
    task_root: &Path,
) -> Result<(), InvokeError> {
    let files = args
        .iter()
        .map(Path::new)
        .filter(|p| p.is_absolute() && p.is_file())
        .map(|p| (p, Need::Read));
    for (path, need) in [(program, Need::Run), (task_root, Need::Enter)]
        .into_iter()
        .chain(files)
    {
        check_access(path, user, need).map_err(|e| {
            InvokeError::new(
                Cause::InvalidRuntime,
                format!(
                    "this function runs as its own user (--worker-uid-base), which cannot use {}: {e}; install the runtime where every user can run it",
                    path.display()
                ),
            )
        })?;
    }
    Ok(())
}

fn find_in_path(command: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    async fn prepare(
        &self,
        version: &FunctionVersion,
        artifact: &Path,
        layers: &[PathBuf],
    ) -> Result<Arc<dyn Prepared>, InvokeError> {
        let unpacked = |root: PathBuf, sha: String, zip: PathBuf, what: String| async move {
            tokio::task::spawn_blocking(move || unpack::task_root(&root, &sha, &zip))
                .await
                .map_err(|e| InvokeError::platform(format!("unpack task failed: {e}")))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => {
                        InvokeError::new(Cause::InvalidCode, format!("{what}: {e}"))
                    }
                    _ => InvokeError::platform(format!("cannot unpack {what}: {e}")),
                })
        };
        let task_root = unpacked(
            self.config.dir.join("tasks"),
            version.code_sha256.clone(),
            artifact.to_path_buf(),
            format!("the code of `{}`", version.function),
        )
        .await?;
        // Each layer is unpacked once, wherever it is used; what AWS puts
        // in /opt is found through the runtimes' search paths.
        let mut opt = Vec::with_capacity(layers.len());
        for (layer, zip) in version.config.layers.iter().zip(layers) {
            opt.push(
                unpacked(
                    self.config.dir.join("layers"),
                    layer.code_sha256.clone(),
                    zip.clone(),
                    format!("layer {}", layer.arn),
                )
                .await?,
            );
        }
        let spec = self.spec(version, &task_root, &opt).await?;
        Ok(Arc::new(pool::Pool::new(
            spec,
            self.sandbox.clone(),
            self.ids.clone(),
            self.config.keep_warm,
        )))
    }
}
