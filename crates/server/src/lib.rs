//! The server: opens the store, builds the runtimes and dispatcher, binds
//! the gateway and API listeners, and keeps retention running.

mod credentials;
mod listener;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wisp_aws::{Api, ApiState, Credentials};
use wisp_core::async_invoke::Backoff;
use wisp_core::clock::{Clock, SystemClock, ThreadRng};
use wisp_core::runtime::Runtime;
use wisp_core::{RuntimeKind, ACCOUNT_ID};
use wisp_dispatch::{AsyncQueue, Concurrency, Dispatcher, QueueOptions};
use wisp_gateway::Gateway;
use wisp_process::{ProcessConfig, ProcessRuntime};
use wisp_queues::Sqs;
use wisp_store::{Change, QueueStore, SqliteStore, Store};
use wisp_store_nats::{NatsOptions, NatsStore};
use wisp_wasm::WasmRuntime;

pub use credentials::{load_or_create as load_credentials, read_credentials_file};
pub use listener::ListenerLimits;

/// Where a server keeps its state.
#[derive(Debug, Clone, Default)]
pub enum StoreBackend {
    /// SQLite and files in the data dir: one node.
    #[default]
    Embedded,
    /// NATS JetStream, shared by every node pointed at it.
    Nats {
        /// Server URLs, comma-separated.
        servers: String,
        /// Copies of each bucket and stream (1, or 3 to survive a server).
        replicas: usize,
        /// Keep streams in memory instead of files (not durable).
        memory: bool,
        /// Prefix of every bucket, stream and subject.
        namespace: String,
    },
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub store: StoreBackend,
    pub http: SocketAddr,
    pub api: SocketAddr,
    /// How long records and logs are kept.
    pub retention: Duration,
    /// How long an idle process worker stays warm.
    pub keep_warm: Duration,
    /// The region functions see and ARNs carry.
    pub region: String,
    /// The account-wide concurrency limit.
    pub concurrency: usize,
    /// The first retry wait of async events (full jitter, doubling).
    pub async_backoff: Duration,
    /// Most async deliveries running at once.
    pub async_in_flight: usize,
    /// Run each process function as an unprivileged uid of its own, from
    /// this base (the server must run as root).
    pub worker_uid_base: Option<u32>,
    /// What a client of the gateway may hold (timeouts, open connections).
    pub gateway_limits: ListenerLimits,
    /// What a client of the API may hold.
    pub api_limits: ListenerLimits,
}

/// A started server.
pub struct Running {
    pub gateway_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub credentials: Credentials,
    shutdown: tokio::sync::watch::Sender<bool>,
    dispatcher: Arc<Dispatcher>,
    cluster: Option<Arc<NatsStore>>,
}

impl Running {
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Stops accepting connections and flushes records; a cluster node
    /// then leaves, so the others take over its share at once rather
    /// than after its missed heartbeats.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.dispatcher.flush().await;
        if let Some(nats) = self.cluster {
            if let Err(e) = nats.members().leave().await {
                tracing::warn!(error = %e, "could not leave the cluster");
            }
        }
    }
}

fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok().map(|_| handle)
}

/// Starts everything; returns once both listeners are bound.
pub async fn start(mut config: ServerConfig) -> anyhow::Result<Running> {
    // First: anything started below (the preloader, the queue) may record.
    let prometheus = install_metrics();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // Workers run in their own directories: every path they get is absolute.
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("cannot resolve data dir {}", config.data_dir.display()))?;
    // Private to the server: it holds the credentials, the functions'
    // environments and code. Workers of their own users may only enter it,
    // to reach their task roots.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if config.worker_uid_base.is_some() {
            0o711
        } else {
            0o700
        };
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| {
                format!("cannot make data dir {} private", config.data_dir.display())
            })?;
    }
    let mut credentials = credentials::load_or_create(&config.data_dir)?;
    let mut cluster: Option<Arc<NatsStore>> = None;
    let (store, queue_store): (Arc<dyn Store>, Arc<dyn QueueStore>) = match &config.store {
        StoreBackend::Embedded => {
            let sqlite = Arc::new(SqliteStore::open(&config.data_dir).with_context(|| {
                format!("cannot open the store in {}", config.data_dir.display())
            })?);
            (sqlite.clone(), sqlite)
        }
        StoreBackend::Nats {
            servers,
            replicas,
            memory,
            namespace,
        } => {
            let mut options = NatsOptions::new(servers.clone(), config.data_dir.join("code"));
            options.replicas = *replicas;
            options.namespace = namespace.clone();
            options.record_retention = config.retention;
            if *memory {
                options.storage = wisp_store_nats::StorageType::Memory;
            }
            let nats = Arc::new(
                NatsStore::connect(options)
                    .await
                    .with_context(|| format!("cannot open the store on {servers}"))?,
            );
            credentials = credentials::share(&config.data_dir, credentials, &nats).await?;
            tracing::info!(
                node = nats.members().node_id(),
                nodes = nats.members().live().len(),
                "joined the cluster"
            );
            cluster = Some(nats.clone());
            (nats.clone(), nats)
        }
    };
    let wasm = WasmRuntime::new(&config.data_dir.join("compiled"))
        .map_err(|e| anyhow::anyhow!("cannot start the wasm runtime: {e:#}"))?;
    let wasm_stats = wasm.stats();
    let process = ProcessRuntime::new(ProcessConfig {
        dir: config.data_dir.join("process"),
        keep_warm: config.keep_warm,
        region: config.region.clone(),
        account_id: ACCOUNT_ID.into(),
        worker_uid_base: config.worker_uid_base,
    })
    .context("cannot start the process runtime")?;
    let mut runtimes: HashMap<RuntimeKind, Arc<dyn Runtime>> = HashMap::new();
    runtimes.insert(RuntimeKind::Wasm, Arc::new(wasm));
    runtimes.insert(RuntimeKind::Process, Arc::new(process));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        runtimes,
        clock.clone(),
        Concurrency::new(config.concurrency),
    ));
    if let Some(nats) = cluster.clone() {
        follow_membership(&nats, dispatcher.concurrency());
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if follow_membership(&nats, dispatcher.concurrency()) {
                    dispatcher.reprovision().await;
                }
            }
        });
    }
    dispatcher
        .load_settings()
        .await
        .context("cannot load function settings")?;
    let preloading = dispatcher.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match preloading.preload().await {
            Ok(versions) => {
                metrics::gauge!("wisp_preloaded_versions").set(versions as f64);
                tracing::info!(
                    versions,
                    ms = started.elapsed().as_millis() as u64,
                    "preloaded functions"
                )
            }
            Err(e) => tracing::warn!(error = %e, "could not preload functions"),
        }
    });
    let queue = AsyncQueue::start(
        dispatcher.clone(),
        QueueOptions {
            backoff: Backoff {
                base_ms: config.async_backoff.as_millis().max(1) as u64,
                cap_ms: 300_000,
            },
            max_in_flight: config.async_in_flight.max(1),
            region: config.region.clone(),
        },
        Arc::new(ThreadRng),
    )
    .await
    .context("cannot start the async queue")?;
    let gateway = Gateway::new(dispatcher.clone());
    let sqs = Sqs::new(queue_store, clock.clone(), &config.region, ACCOUNT_ID);
    sqs.start_housekeeping(Duration::from_secs(60), Duration::from_secs(5));
    queue.set_message_sink(sqs.clone());
    let mappings = wisp_queues::Mappings::new(sqs.clone(), dispatcher.clone());
    let started = mappings
        .load()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start event source mappings: {e}"))?;
    if started > 0 {
        tracing::info!(mappings = started, "started event source mappings");
    }
    let events = wisp_events::Events::new(
        store.clone(),
        sqs.clone(),
        queue.clone(),
        clock.clone(),
        Arc::new(ThreadRng),
    );
    events.start_delivering();
    events.start_scheduling();
    let flows = wisp_flows::engine::Flows::new(
        store.clone(),
        dispatcher.clone(),
        queue.clone(),
        sqs.clone(),
        events.clone(),
        clock.clone(),
        Arc::new(ThreadRng),
    );
    flows.start_running();
    events.set_starter(flows.clone());

    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen on {} for the gateway (--http)", config.http))?;
    let api_listener = tokio::net::TcpListener::bind(config.api)
        .await
        .with_context(|| format!("cannot listen on {} for the API (--api)", config.api))?;
    let gateway_addr = http_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let routes_gateway = gateway.clone();
    let urls_gateway = gateway.clone();
    let signer = credentials.clone();
    gateway.set_verifier(Arc::new(
        move |parts: &http::request::Parts, body: &[u8]| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            wisp_aws::sigv4::verify(
                &signer,
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &parts.headers,
                body,
                now,
            )
            .map(|v| v.access_key_id)
            .map_err(|e| e.to_string())
        },
    ));
    let retention_flows = flows.clone();
    let state = Arc::new(ApiState {
        dispatcher: dispatcher.clone(),
        queue,
        sqs,
        mappings,
        events,
        flows,
        credentials: credentials.clone(),
        account_id: ACCOUNT_ID.into(),
        gateway_url: format!("http://{gateway_addr}"),
        api_url: format!("http://{api_addr}"),
        clock: clock.clone(),
        routes_changed: Arc::new(move |table| routes_gateway.set_routes(table)),
        urls_changed: Arc::new(move |urls| urls_gateway.set_urls(urls)),
    });
    wisp_aws::reload_routes(&state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load routes: {}", e.message))?;
    wisp_aws::reload_urls(&state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load function URLs: {}", e.message))?;
    if let Some(changes) = store.changes() {
        tokio::spawn(follow_changes(changes, state.clone()));
    }
    let api = Arc::new(Api::new(state));

    let render_metrics = Arc::new(move || {
        let mut text = prometheus.as_ref().map(|h| h.render()).unwrap_or_default();
        text.push_str(&format!(
            "# TYPE wisp_wasm_compilations_total counter\nwisp_wasm_compilations_total {}\n# TYPE wisp_wasm_compile_cache_hits_total counter\nwisp_wasm_compile_cache_hits_total {}\n",
            wasm_stats.compilations.load(Ordering::Relaxed),
            wasm_stats.cache_hits.load(Ordering::Relaxed),
        ));
        text
    });

    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let g = gateway.clone();
    listener::serve(
        "gateway",
        http_listener,
        config.gateway_limits,
        shutdown_rx.clone(),
        move |req, remote| {
            let g = g.clone();
            async move { g.handle(req, remote).await }
        },
    );
    listener::serve(
        "api",
        api_listener,
        config.api_limits,
        shutdown_rx.clone(),
        move |req, _remote| {
            let api = api.clone();
            let render = render_metrics.clone();
            async move { api.handle(req, &*render).await }
        },
    );

    let retention_store = store.clone();
    let retention = config.retention;
    let mut stop = shutdown_rx;
    tokio::spawn(async move {
        loop {
            let now = SystemClock.now_ms();
            let before = now - retention.as_millis() as i64;
            let purged = match retention_store.purge_records_before(before).await {
                Ok(n) => match retention_store.purge_keys(now).await {
                    Ok(k) => retention_store.purge_archives(now).await.map(|a| n + k + a),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match purged {
                Ok(n) if n > 0 => tracing::info!(
                    rows = n,
                    "purged expired records, logs, idempotency keys and archived events"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
            let closed_before = now - 1000 * wisp_core::limits::EXECUTION_RETENTION_SECS as i64;
            match retention_flows.purge_closed_executions(closed_before).await {
                Ok(n) if n > 0 => tracing::info!(executions = n, "purged closed executions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.message, "execution purge failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.changed() => break,
            }
        }
    });

    let endpoints = serde_json::json!({
        "gateway": format!("http://{gateway_addr}"),
        "api": format!("http://{api_addr}"),
    });
    std::fs::write(
        config.data_dir.join("endpoints.json"),
        serde_json::to_vec_pretty(&endpoints)?,
    )
    .context("cannot write endpoints.json")?;

    Ok(Running {
        gateway_addr,
        api_addr,
        credentials,
        shutdown,
        dispatcher,
        cluster,
    })
}

/// Applies what other nodes change (a shared store only): their changes
/// to functions, routes and queues drop what this node has cached of them,
/// and events they queue are looked at here too.
async fn follow_changes(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    state: Arc<ApiState>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match changes.recv().await {
            Ok(Change::Function(f)) => {
                state.dispatcher.refresh(&f).await;
                if let Err(e) = state.mappings.sync_function(&f).await {
                    tracing::warn!(function = %f, error = %e, "cannot follow its event source mappings");
                }
                if let Err(e) = wisp_aws::reload_urls(&state).await {
                    tracing::warn!(error = %e.message, "cannot reload function URLs");
                }
            }
            Ok(Change::Routes) => {
                if let Err(e) = wisp_aws::reload_routes(&state).await {
                    tracing::warn!(error = %e.message, "cannot reload routes");
                }
            }
            Ok(Change::Queue(q)) => state.sqs.forget(&q),
            Ok(Change::Events(f)) => state.queue.notice(&f),
            Ok(Change::Document(kind, name)) => state.events.changed(&kind, &name),
            // Fell behind: catch up with everything.
            Ok(Change::Resync) | Err(RecvError::Lagged(_)) => {
                if let Ok(functions) = state.dispatcher.store().list_latest().await {
                    for f in functions {
                        state.dispatcher.refresh(&f.function).await;
                        let _ = state.mappings.sync_function(&f.function).await;
                        state.queue.notice(&f.function);
                    }
                }
                let _ = wisp_aws::reload_routes(&state).await;
                let _ = wisp_aws::reload_urls(&state).await;
                state.sqs.forget_all();
                state.events.forget_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Sets this node's share of the cluster's concurrency limits from the
/// live nodes as it sees them now; says whether its share changed.
fn follow_membership(nats: &NatsStore, concurrency: &Concurrency) -> bool {
    let live = nats.members().live();
    let me = nats.members().node_id();
    let rank = live.iter().position(|n| n.node == me).unwrap_or(0);
    let changed = concurrency.set_share(rank, live.len());
    metrics::gauge!("wisp_cluster_nodes").set(live.len() as f64);
    metrics::gauge!("wisp_concurrency_share").set(concurrency.share_of(concurrency.limit()) as f64);
    changed
}
