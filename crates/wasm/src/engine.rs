//! The shared engine: configuration, the compiled-artifact cache and the
//! epoch ticker.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wisp_core::codezip;
use wisp_core::Cause;
use wisp_core::{FunctionVersion, InvokeError};

use crate::guest::{GuestState, WasmPrepared};

/// How often the epoch advances; timeouts are accurate to this and a busy
/// guest yields to other tasks this often.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Counters of the compiled-artifact cache, for metrics and tests.
#[derive(Debug, Default)]
pub struct WasmStats {
    /// Components compiled from source wasm.
    pub compilations: AtomicU64,
    /// Components loaded from the on-disk compiled cache.
    pub cache_hits: AtomicU64,
}

/// Runs wasi:http components.
pub struct WasmRuntime {
    inner: Arc<Inner>,
    stop_ticker: Arc<AtomicBool>,
}

/// What a blocking prepare needs, shared with the blocking pool.
struct Inner {
    engine: Engine,
    linker: Linker<GuestState>,
    cache_dir: PathBuf,
    engine_key: String,
    stats: Arc<WasmStats>,
}

/// The most instances alive at once across all functions.
const POOL_INSTANCES: u32 = 1000;

fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 2)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 2)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(4 << 30)
        // Resetting a slot by memset keeps its pages resident; far cheaper
        // than madvise + page faults for the small memories most guests use.
        .linear_memory_keep_resident(16 << 20)
        .table_keep_resident(1 << 20)
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl WasmRuntime {
    /// Builds the engine; compiled artifacts are cached under `cache_dir`.
    pub fn new(cache_dir: &Path) -> wasmtime::Result<WasmRuntime> {
        std::fs::create_dir_all(cache_dir)?;
        // Compiled code is run as trusted: nobody else may write or read it.
        std::fs::set_permissions(
            cache_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("wasmtime-{}-{:016x}", wasmtime_version(), hasher.finish());

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("wisp-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })?;

        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache_dir: cache_dir.to_path_buf(),
                engine_key,
                stats: Arc::new(WasmStats::default()),
            }),
            stop_ticker,
        })
    }

    pub fn stats(&self) -> Arc<WasmStats> {
        self.inner.stats.clone()
    }
}

impl Inner {
    /// Loads the compiled component for `version`, compiling and caching it
    /// when the cache does not have it. Blocking: call off the async runtime.
    fn load_component(
        &self,
        version: &FunctionVersion,
        zip: &Path,
    ) -> Result<Component, InvokeError> {
        let cached = self.cache_dir.join(format!(
            "{}-{}.cwasm",
            version.artifact_sha256, self.engine_key
        ));
        if cached.exists() {
            // SAFETY: files in the cache dir are written only by
            // `precompile_component` below with this engine's configuration,
            // and their name carries the engine's compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %cached.display(), error = %e, "discarding unusable compiled artifact");
                    let _ = std::fs::remove_file(&cached);
                }
            }
        }

        let zip_bytes = std::fs::read(zip).map_err(|e| {
            InvokeError::platform(format!("cannot read code of `{}`: {e}", version.function))
        })?;
        let wasm = codezip::read_entry(&zip_bytes, &version.config.handler)
            .map_err(|e| InvokeError::new(Cause::InvalidCode, e.0))?;
        codezip::require_component(&wasm, &version.config.handler)
            .map_err(|e| InvokeError::new(Cause::InvalidCode, e.0))?;
        let started = Instant::now();
        let compiled = self.engine.precompile_component(&wasm).map_err(|e| {
            InvokeError::new(
                Cause::InvalidCode,
                format!(
                    "`{}` is not a valid component: {e:#}",
                    version.config.handler
                ),
            )
        })?;
        self.stats.compilations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(function = %version.function, ms = started.elapsed().as_millis() as u64, "compiled component");
        let tmp = self
            .cache_dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, &compiled)
            .and_then(|_| std::fs::rename(&tmp, &cached))
            .map_err(|e| InvokeError::platform(format!("cannot write compiled cache: {e}")))?;
        // SAFETY: just produced by this engine.
        unsafe { Component::deserialize_file(&self.engine, &cached) }
            .map_err(|e| InvokeError::platform(format!("cannot load compiled component: {e:#}")))
    }
}

fn wasmtime_version() -> &'static str {
    // The crate is pinned (=48.0.8); the cache key changes with it.
    "48.0.8"
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl wisp_core::runtime::Runtime for WasmRuntime {
    async fn prepare(
        &self,
        version: &FunctionVersion,
        artifact: &Path,
        _layers: &[std::path::PathBuf],
    ) -> Result<Arc<dyn wisp_core::runtime::Prepared>, InvokeError> {
        let inner = self.inner.clone();
        let version = version.clone();
        let artifact = artifact.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let component = inner.load_component(&version, &artifact)?;
            let loaded = started.elapsed();
            let handler = &version.config.handler;
            let pre = inner.linker.instantiate_pre(&component).map_err(|e| {
                InvokeError::new(
                    Cause::InvalidCode,
                    format!("`{handler}` cannot be linked: {e:#}. wisp provides the wasi:http/proxy world (wasi:http, wasi:cli, wasi:io, wasi:clocks, wasi:random)"),
                )
            })?;
            let pre = ProxyPre::new(pre).map_err(|e| {
                InvokeError::new(
                    Cause::InvalidCode,
                    format!("`{handler}` does not export wasi:http/incoming-handler: {e:#}"),
                )
            })?;
            let prepared = WasmPrepared::new(inner.engine.clone(), pre, &version)?;
            tracing::debug!(
                function = %version.function,
                load_us = loaded.as_micros() as u64,
                link_us = (started.elapsed() - loaded).as_micros() as u64,
                "prepared component"
            );
            Ok(Arc::new(prepared) as Arc<dyn wisp_core::runtime::Prepared>)
        })
        .await
        .map_err(|e| InvokeError::platform(format!("prepare task failed: {e}")))?
    }
}
