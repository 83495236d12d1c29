//! The clustered store: each of wisp's storage concerns on NATS JetStream.
//! The registry and idempotency keys live in KV buckets (compare-and-set
//! on revisions), code in the Object Store, records and logs on a stream
//! with the retention as its max age; node membership in a KV bucket with
//! heartbeats. Nothing above the store knows it is not SQLite.
//!
//! Every bucket and stream is named after a namespace (`wisp` unless set),
//! so several wisp clusters, or tests, can share one NATS cluster.

mod archives;
mod changes;
mod code;
mod documents;
mod events;
mod executions;
mod keys;
mod kv;
pub mod members;
mod read;
mod records;
mod registry;
mod sqs;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};
use wisp_store::{Result, StoreError};

use crate::kv::{Bucket, Placement};
use crate::members::Members;

pub use async_nats::jetstream::stream::StorageType;

/// Where the NATS cluster is and how wisp keeps its data there.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub servers: String,
    /// Prefix of every bucket, stream and subject wisp uses.
    pub namespace: String,
    /// Copies of each bucket and stream: 1, or 3 for a cluster that keeps
    /// working with a server down.
    pub replicas: usize,
    /// File (durable) or memory.
    pub storage: StorageType,
    /// This node's own files: the code cache.
    pub cache_dir: PathBuf,
    /// How long invocation records and logs are kept.
    pub record_retention: Duration,
    /// This node's id in the membership bucket (random when empty).
    pub node_id: String,
    /// How often this node heartbeats; it is taken for dead after five
    /// missed beats.
    pub heartbeat: Duration,
}

impl NatsOptions {
    pub fn new(servers: impl Into<String>, cache_dir: impl Into<PathBuf>) -> NatsOptions {
        NatsOptions {
            servers: servers.into(),
            namespace: "wisp".into(),
            replicas: 1,
            storage: StorageType::File,
            cache_dir: cache_dir.into(),
            record_retention: Duration::from_secs(7 * 24 * 3600),
            node_id: String::new(),
            heartbeat: members::HEARTBEAT,
        }
    }
}

/// Wisp's state on JetStream.
pub struct NatsStore {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) placement: Placement,
    pub(crate) ns: String,
    pub(crate) registry: Bucket,
    pub(crate) keys: Bucket,
    pub(crate) code: object_store::ObjectStore,
    pub(crate) code_cache: PathBuf,
    pub(crate) records: stream::Stream,
    pub(crate) archive: stream::Stream,
    pub(crate) events: stream::Stream,
    pub(crate) failed: stream::Stream,
    pub(crate) leases: Arc<events::Leases>,
    pub(crate) queues: Bucket,
    pub(crate) flights: Bucket,
    pub(crate) timers: Bucket,
    pub(crate) executions: Bucket,
    pub(crate) timer_indexes: timers::Indexes,
    pub(crate) opened: tokio::sync::Mutex<sqs::Opened>,
    pub(crate) changes: tokio::sync::broadcast::Sender<wisp_store::Change>,
    /// Dropped with the store: its background watches stop.
    _alive: Arc<()>,
    pub(crate) members: Arc<Members>,
}

/// Takes what a pull consumer has ready, up to `max`, without waiting. A
/// consumer just created on a replicated stream answers "no responders"
/// until its leader is elected: that is waited out, briefly.
pub(crate) async fn fetch(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    max: usize,
) -> Result<Option<Batch>> {
    use futures_util::StreamExt;
    let mut tries = 0;
    loop {
        let batch = consumer
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(internal)?;
        let mut batch = batch.peekable();
        match std::pin::Pin::new(&mut batch).peek().await {
            Some(Err(e)) if tries < 20 && e.to_string().contains("503") => {
                // No one answers for the consumer: deleted (through
                // another node), or too new to have a leader yet.
                if consumer.get_info().await.is_err() {
                    return Ok(None);
                }
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => return Ok(Some(batch)),
        }
    }
}

/// Fetched messages, each an error or a message, the first one peekable.
pub(crate) type Batch =
    futures_util::stream::Peekable<async_nats::jetstream::consumer::pull::Batch>;

/// The error for a consumer that is gone even after it was made again.
pub(crate) fn vanished(what: &str) -> StoreError {
    internal(format!("the consumer of {what} vanished as it was opened"))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("nats: {e}"))
}

impl NatsStore {
    /// Connects, creating what is missing (buckets, streams), and joins
    /// the cluster's membership.
    pub async fn connect(options: NatsOptions) -> Result<NatsStore> {
        // Boxed: opening holds every stream's and bucket's info at once,
        // enough to crowd a small stack.
        Box::pin(Self::open(options)).await
    }

    async fn open(options: NatsOptions) -> Result<NatsStore> {
        let ns = options.namespace.clone();
        if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StoreError::Internal(format!(
                "namespace `{ns}`: letters, digits and `_` only"
            )));
        }
        let servers = options
            .servers
            .split(',')
            .map(|s| s.trim().parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| internal(format!("servers `{}`: {e}", options.servers)))?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("wisp {}", env!("CARGO_PKG_VERSION")))
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| internal(format!("cannot connect to {}: {e}", options.servers)))?;
        let js = jetstream::new(client.clone());
        let placement = Placement {
            replicas: options.replicas.max(1),
            storage: options.storage,
        };
        // A cluster that has just formed answers "unavailable" until it has
        // elected its leaders: keep trying for a minute.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let Parts {
            registry,
            keys,
            nodes,
            queues,
            flights,
            timers,
            executions,
            code,
            records,
            archive,
            events,
            failed,
        } = loop {
            match open_parts(&js, &ns, placement, &options).await {
                Ok(parts) => break parts,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        std::fs::create_dir_all(&options.cache_dir)?;
        let node = match options.node_id.as_str() {
            "" => uuid::Uuid::new_v4().to_string(),
            id => id.to_string(),
        };
        let members = Members::join(nodes, node, options.heartbeat).await?;
        let alive = Arc::new(());
        let changes = changes::start(&alive, &client, &ns, &registry, &queues).await?;
        Ok(NatsStore {
            client,
            js,
            placement,
            ns,
            registry,
            keys,
            code,
            code_cache: options.cache_dir,
            records,
            archive,
            events,
            failed,
            leases: events::new_leases(),
            queues,
            flights,
            timers,
            executions,
            timer_indexes: Default::default(),
            opened: Default::default(),
            changes,
            _alive: alive,
            members,
        })
    }

    /// The cluster's value of `name`: `proposed` if no node has set one
    /// yet (the first node's wins), else the one set. For what every node
    /// must share, such as the API credentials.
    pub async fn adopt_shared(&self, name: &str, proposed: &str) -> Result<String> {
        let key = format!("cluster.{}", kv::seg(name));
        if self.registry.create(&key, &proposed).await?.is_some() {
            return Ok(proposed.to_string());
        }
        self.registry
            .get::<String>(&key)
            .await?
            .ok_or_else(|| internal(format!("shared value {name} vanished")))
    }

    /// Cluster membership as this node sees it.
    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }
}

async fn open_object_store(
    js: &jetstream::Context,
    name: &str,
    placement: Placement,
) -> Result<object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(name).await {
        return Ok(store);
    }
    match js
        .create_object_store(object_store::Config {
            bucket: name.into(),
            storage: placement.storage,
            num_replicas: placement.replicas,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Ok(store),
        Err(e) => js
            .get_object_store(name)
            .await
            .map_err(|_| internal(format!("cannot create object store {name}: {e}"))),
    }
}

/// Every bucket and stream of a store.
struct Parts {
    registry: Bucket,
    keys: Bucket,
    nodes: Bucket,
    queues: Bucket,
    flights: Bucket,
    timers: Bucket,
    executions: Bucket,
    code: object_store::ObjectStore,
    records: stream::Stream,
    archive: stream::Stream,
    events: stream::Stream,
    failed: stream::Stream,
}

/// Opens (creating what is missing) every bucket and stream.
async fn open_parts(
    js: &jetstream::Context,
    ns: &str,
    placement: Placement,
    options: &NatsOptions,
) -> Result<Parts> {
    let registry = Bucket::open(js, &format!("{ns}_registry"), placement, 1).await?;
    let keys = Bucket::open(js, &format!("{ns}_keys"), placement, 1).await?;
    let dead_after = options.heartbeat * members::MISSED_BEATS;
    let nodes = Bucket::open_with(js, &format!("{ns}_nodes"), placement, 1, dead_after).await?;
    let queues = Bucket::open(js, &format!("{ns}_queues"), placement, 1).await?;
    let flights = Bucket::open(js, &format!("{ns}_flights"), placement, 1).await?;
    let timers = Bucket::open(js, &format!("{ns}_timers"), placement, 1).await?;
    let executions = Bucket::open(js, &format!("{ns}_executions"), placement, 1).await?;
    let code = open_object_store(js, &format!("{ns}_code"), placement).await?;
    let open = |name: &'static str, subject: &'static str, config: stream::Config| {
        open_stream(js, ns, placement, name, subject, config)
    };
    let records = open(
        "records",
        "rec",
        stream::Config {
            max_age: options.record_retention,
            ..Default::default()
        },
    )
    .await?;
    let archive = open(
        "archive",
        "arch",
        stream::Config {
            allow_message_ttl: true,
            ..Default::default()
        },
    )
    .await?;
    let events = open(
        "events",
        "ev",
        stream::Config {
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        },
    )
    .await?;
    let failed = open(
        "failed",
        "failed",
        stream::Config {
            max_messages_per_subject: 1,
            ..Default::default()
        },
    )
    .await?;
    Ok(Parts {
        registry,
        keys,
        nodes,
        queues,
        flights,
        timers,
        executions,
        code,
        records,
        archive,
        events,
        failed,
    })
}

/// Opens (creating it if missing) the stream `<ns>_<name>` over the
/// subjects `<ns>.<subject>.>`, with `config`'s other settings.
async fn open_stream(
    js: &jetstream::Context,
    ns: &str,
    placement: Placement,
    name: &str,
    subject: &str,
    config: stream::Config,
) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: format!("{ns}_{name}"),
        subjects: vec![format!("{ns}.{subject}.>")],
        storage: placement.storage,
        num_replicas: placement.replicas,
        ..config
    })
    .await
    .map_err(|e| internal(format!("cannot open the {name} stream: {e}")))
}
