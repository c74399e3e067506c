//! The Ferrocast [`Registry`] on Redis 7, for processes that run apart.
//!
//! What is in Redis (every key under a configurable prefix, default
//! `ferrocast`):
//!
//! | key | value | TTL | written by |
//! |---|---|---|---|
//! | `{prefix}:lease:{role}:{stream}` | `holder epoch token` | the lease's, renewed by its holder | the holder: `SET NX PX` (in a script with the `INCR` below), compare-and-extend, compare-and-delete |
//! | `{prefix}:epoch:{role}:{stream}` | the newest fencing epoch | none (it must never go back) | `INCR` with each lease taken |
//! | `{prefix}:node:{id}` | `roles endpoint load` | about 4 heartbeats | the node, each heartbeat and when its load changes |
//! | `{prefix}:events` | Redis Stream, one field `v` = an encoded [`Event`] | none; `XADD MAXLEN ~` keeps about [`EVENT_LOG_LEN`] | any role, on lifecycle changes |
//! | `{prefix}:plan:{stream}` | the stream's [`RenditionPlan`], encoded | [`PLAN_TTL`], renewed by each write | the transcoder holding the stream, each time it plans the ladder |
//! | `{prefix}:handover:{stream}` | where a planned handover of the stream's transcode stands ([`Handover`], encoded: offered, ready, cut) | [`HANDOVER_TTL`] | the draining transcoder (offered, cut) and its standby (ready) |
//! | `{prefix}:progress:{stream}` | each rendition's next media sequence number and discontinuity sequence ([`StreamProgress`], encoded) | [`PLAN_TTL`], renewed by each write | the packager holding the stream, as its segments close |
//! | `{prefix}:live:{role}:{stream}` | what the role's holder knows of the stream now (ingest: publisher, transport statistics, tracks; transcode: renditions): the control plane's JSON, at most [`MAX_LIVE_REPORT`](ferrocast_registry::MAX_LIVE_REPORT) bytes | [`LIVE_REPORT_TTL`], renewed by each write | the role's holder, every couple of seconds |
//! | `{prefix}:work:transcode` | Redis Stream, field `v` = a stream name; consumer group `transcoders` | none; `XADD MAXLEN ~` | whoever starts a stream offers it (`XADD`); workers `XREADGROUP`, `XACK` once they hold its lease, `XAUTOCLAIM` an idle one of a dead worker |
//!
//! Keyspace notifications are not used (they are lost while a client is
//! disconnected); events are read from the stream by id instead.
//!
//! Every call has a time limit ([`RedisRegistry::with_timeout`]); a Redis
//! that is down or slow gives [`RegistryError::Unavailable`], never a hang,
//! and the connection is re-established on the next call.
//!
//! Not for: deciding who may write. Redis replicates asynchronously and a
//! paused process can outlive its lease; the packager's
//! [`ferrocast_registry::Fence`] refuses stale epochs.

use std::time::Duration;

use ferrocast_hls::{RenditionPlan, StreamProgress};
use ferrocast_media::StreamName;
use ferrocast_registry::{
    EVENT_LOG_LEN, Event, EventId, HANDOVER_TTL, Handover, LIVE_REPORT_TTL, Lease, NodeId,
    NodeRecord, PLAN_TTL, Registry, RegistryError, Role, WorkItem, check_live_report,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Take a lease if nobody holds it: `SET NX PX` and the epoch's `INCR` in
/// one atomic script, so that an epoch is spent only on a lease taken.
/// KEYS: lease, epoch. ARGV: holder, token, ttl ms. Returns the epoch or nil.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch .. ' ' .. ARGV[2], 'NX', 'PX', ARGV[3])
return epoch
";

/// Extend a lease only if it is still this one. KEYS: lease. ARGV: value, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Delete a lease only if it is still this one. KEYS: lease. ARGV: value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The consumer group of the transcode workers.
const WORKERS: &str = "transcoders";
/// About how many work items the queue keeps (acknowledged ones included).
const WORK_LOG_LEN: usize = 10_000;

/// `(id, [(field, value)])` entries of XRANGE, XREADGROUP and XAUTOCLAIM.
type Entries = Vec<(String, Vec<(String, String)>)>;

fn value_of(fields: &[(String, String)]) -> Option<&str> {
    fields
        .iter()
        .find(|(f, _)| f == "v")
        .map(|(_, v)| v.as_str())
}

/// How long a registry call may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the registry could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a Redis URL.
    #[error("bad Redis URL: {0}")]
    Url(String),
}

/// The registry on Redis. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisRegistry {
    client: redis::Client,
    connection: std::sync::Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never shown.
        f.debug_struct("RedisRegistry")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRegistry {
    /// A registry on the Redis at `url` (`redis://[:password@]host:port`),
    /// its keys under `prefix`. Connects lazily, on the first call.
    pub fn open(url: &str, prefix: &str) -> Result<Self, OpenError> {
        let client =
            redis::Client::open(url).map_err(|e| OpenError::Url(redact(&e.to_string())))?;
        Ok(RedisRegistry {
            client,
            connection: std::sync::Arc::default(),
            prefix: prefix.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same registry with every call limited to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn lease_key(&self, stream: &StreamName, role: Role) -> String {
        format!(
            "{}:lease:{}:{}",
            self.prefix,
            role.as_str(),
            stream.as_str()
        )
    }

    fn plan_key(&self, stream: &StreamName) -> String {
        format!("{}:plan:{}", self.prefix, stream.as_str())
    }

    fn handover_key(&self, stream: &StreamName) -> String {
        format!("{}:handover:{}", self.prefix, stream.as_str())
    }

    fn live_key(&self, stream: &StreamName, role: Role) -> String {
        format!("{}:live:{}:{}", self.prefix, role.as_str(), stream.as_str())
    }

    fn progress_key(&self, stream: &StreamName) -> String {
        format!("{}:progress:{}", self.prefix, stream.as_str())
    }

    fn epoch_key(&self, stream: &StreamName, role: Role) -> String {
        format!(
            "{}:epoch:{}:{}",
            self.prefix,
            role.as_str(),
            stream.as_str()
        )
    }

    fn node_key(&self, id: &NodeId) -> String {
        format!("{}:node:{}", self.prefix, id.as_str())
    }

    fn events_key(&self) -> String {
        format!("{}:events", self.prefix)
    }

    fn work_key(&self) -> String {
        format!("{}:work:transcode", self.prefix)
    }

    /// Create the workers' group (and the stream) if missing.
    async fn ensure_group(&self) -> Result<(), RegistryError> {
        let key = self.work_key();
        let created: Result<(), RegistryError> = self
            .run(|mut c| async move {
                match redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&key)
                    .arg(WORKERS)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async::<()>(&mut c)
                    .await
                {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                    other => other,
                }
            })
            .await;
        created
    }

    fn work_items(entries: Entries) -> Result<Vec<WorkItem>, RegistryError> {
        entries
            .into_iter()
            .map(|(id, fields)| {
                let stream = value_of(&fields)
                    .and_then(|v| StreamName::new(v).ok())
                    .ok_or_else(|| RegistryError::Malformed(format!("work item {id}")))?;
                Ok(WorkItem { id, stream })
            })
            .collect()
    }

    /// Run `op` on the connection (made on first use), within the time
    /// limit; any failure is `Unavailable` and drops the connection so the
    /// next call makes a new one.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let connection = {
                let mut slot = self.connection.lock().await;
                match &*slot {
                    Some(connection) => connection.clone(),
                    None => {
                        let connection = ConnectionManager::new(self.client.clone()).await?;
                        *slot = Some(connection.clone());
                        connection
                    }
                }
            };
            op(connection).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.connection.lock().await.take();
                Err(RegistryError::Unavailable(redact(&e.to_string())))
            }
            Err(_) => {
                self.connection.lock().await.take();
                Err(RegistryError::Unavailable(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }
}

/// Error texts of the redis crate can quote the URL; keep passwords out.
fn redact(text: &str) -> String {
    match (text.find("redis://"), text.find('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}redis://***{}", &text[..start], &text[at..])
        }
        _ => text.to_owned(),
    }
}

fn ms(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

impl Registry for RedisRegistry {
    fn acquire(
        &self,
        stream: &StreamName,
        role: Role,
        node: &NodeId,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        let this = self.clone();
        let (stream, node) = (stream.clone(), node.clone());
        async move {
            let token = format!("{:032x}", rand::random::<u128>());
            let (lease_key, epoch_key) =
                (this.lease_key(&stream, role), this.epoch_key(&stream, role));
            let epoch: Option<u64> = this
                .run(|mut c| {
                    let (holder, token) = (node.as_str().to_owned(), token.clone());
                    async move {
                        redis::Script::new(ACQUIRE)
                            .key(lease_key)
                            .key(epoch_key)
                            .arg(holder)
                            .arg(token)
                            .arg(ms(ttl))
                            .invoke_async(&mut c)
                            .await
                    }
                })
                .await?;
            Ok(epoch.map(|epoch| Lease {
                stream,
                role,
                holder: node,
                epoch: ferrocast_registry::Epoch(epoch),
                token,
            }))
        }
        .boxed()
    }

    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.lease_key(&lease.stream, lease.role), lease.encode());
        async move {
            let renewed: i64 = this
                .run(|mut c| async move {
                    redis::Script::new(RENEW)
                        .key(key)
                        .arg(value)
                        .arg(ms(ttl))
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(renewed == 1)
        }
        .boxed()
    }

    fn release(&self, lease: &Lease) -> BoxFuture<'static, Result<bool, RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.lease_key(&lease.stream, lease.role), lease.encode());
        async move {
            let released: i64 = this
                .run(|mut c| async move {
                    redis::Script::new(RELEASE)
                        .key(key)
                        .arg(value)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(released == 1)
        }
        .boxed()
    }

    fn holder(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        let this = self.clone();
        let stream = stream.clone();
        let key = self.lease_key(&stream, role);
        async move {
            let value: Option<String> = this.run(|mut c| async move { c.get(key).await }).await?;
            match value {
                None => Ok(None),
                Some(value) => Lease::decode(&stream, role, &value)
                    .map(Some)
                    .ok_or_else(|| {
                        RegistryError::Malformed(format!("lease of {stream}: {value:?}"))
                    }),
            }
        }
        .boxed()
    }

    fn heartbeat(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.node_key(&node.id), node.encode());
        async move {
            this.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms(ttl)).await })
                .await
        }
        .boxed()
    }

    fn publish_event(&self, event: &Event) -> BoxFuture<'static, Result<EventId, RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.events_key(), event.encode());
        async move {
            let id: String = this
                .run(|mut c| async move {
                    redis::cmd("XADD")
                        .arg(key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(EVENT_LOG_LEN)
                        .arg("*")
                        .arg("v")
                        .arg(value)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Ok(EventId(id))
        }
        .boxed()
    }

    fn events(
        &self,
        after: Option<&EventId>,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<(EventId, Event)>, RegistryError>> {
        let this = self.clone();
        let key = self.events_key();
        // `(` makes the start exclusive (Redis 6.2+).
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({}", id.0));
        async move {
            let entries: Entries = this
                .run(|mut c| async move {
                    redis::cmd("XRANGE")
                        .arg(key)
                        .arg(start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(max.max(1))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            entries
                .into_iter()
                .map(|(id, fields)| {
                    let event = value_of(&fields)
                        .and_then(Event::decode)
                        .ok_or_else(|| RegistryError::Malformed(format!("event {id}")))?;
                    Ok((EventId(id), event))
                })
                .collect()
        }
        .boxed()
    }

    fn offer_work(&self, stream: &StreamName) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.work_key(), stream.as_str().to_owned());
        async move {
            this.ensure_group().await?;
            this.run(|mut c| async move {
                redis::cmd("XADD")
                    .arg(key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(WORK_LOG_LEN)
                    .arg("*")
                    .arg("v")
                    .arg(value)
                    .query_async::<String>(&mut c)
                    .await
                    .map(drop)
            })
            .await
        }
        .boxed()
    }

    fn take_work(
        &self,
        worker: &NodeId,
    ) -> BoxFuture<'static, Result<Option<WorkItem>, RegistryError>> {
        let this = self.clone();
        let (key, worker) = (self.work_key(), worker.as_str().to_owned());
        async move {
            this.ensure_group().await?;
            let reply: Option<Vec<(String, Entries)>> = this
                .run(|mut c| async move {
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(WORKERS)
                        .arg(worker)
                        .arg("COUNT")
                        .arg(1)
                        .arg("STREAMS")
                        .arg(key)
                        .arg(">")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let entries = reply
                .into_iter()
                .flatten()
                .flat_map(|(_, entries)| entries)
                .collect();
            Ok(Self::work_items(entries)?.into_iter().next())
        }
        .boxed()
    }

    fn ack_work(&self, item: &WorkItem) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, id) = (self.work_key(), item.id.clone());
        async move {
            this.run(|mut c| async move {
                redis::cmd("XACK")
                    .arg(key)
                    .arg(WORKERS)
                    .arg(id)
                    .query_async::<i64>(&mut c)
                    .await
                    .map(drop)
            })
            .await
        }
        .boxed()
    }

    fn reclaim_work(
        &self,
        worker: &NodeId,
        min_idle: Duration,
    ) -> BoxFuture<'static, Result<Vec<WorkItem>, RegistryError>> {
        let this = self.clone();
        let (key, worker) = (self.work_key(), worker.as_str().to_owned());
        async move {
            this.ensure_group().await?;
            // Redis 7 answers [next id, entries, deleted ids] (6.2: two).
            let (_next, entries, _deleted): (String, Entries, Vec<String>) = this
                .run(|mut c| async move {
                    redis::cmd("XAUTOCLAIM")
                        .arg(key)
                        .arg(WORKERS)
                        .arg(worker)
                        .arg(min_idle.as_millis() as u64)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(100)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Self::work_items(entries)
        }
        .boxed()
    }

    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeRecord>, RegistryError>> {
        let this = self.clone();
        let prefix = format!("{}:node:", self.prefix);
        async move {
            let pattern = format!("{prefix}*");
            let entries: Vec<(String, Option<String>)> = this
                .run(|mut c| async move {
                    let mut keys: Vec<String> = Vec::new();
                    {
                        let mut scan = c.scan_match::<_, String>(pattern).await?;
                        while let Some(key) = futures::StreamExt::next(&mut scan).await {
                            keys.push(key?);
                        }
                    }
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let values: Vec<Option<String>> = c.mget(&keys).await?;
                    Ok(keys.into_iter().zip(values).collect())
                })
                .await?;
            let mut nodes = Vec::new();
            for (key, value) in entries {
                // Expired between SCAN and MGET: gone.
                let Some(value) = value else { continue };
                let id = key
                    .strip_prefix(&prefix)
                    .and_then(|id| NodeId::new(id).ok())
                    .ok_or_else(|| RegistryError::Malformed(format!("node key {key:?}")))?;
                let record = NodeRecord::decode(id, &value)
                    .ok_or_else(|| RegistryError::Malformed(format!("node {key}: {value:?}")))?;
                nodes.push(record);
            }
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(nodes)
        }
        .boxed()
    }

    fn put_plan(
        &self,
        stream: &StreamName,
        plan: &RenditionPlan,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.plan_key(stream), plan.encode());
        async move {
            this.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms(PLAN_TTL)).await })
                .await
        }
        .boxed()
    }

    fn plan(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<RenditionPlan>, RegistryError>> {
        let this = self.clone();
        let stream = stream.clone();
        let key = self.plan_key(&stream);
        async move {
            let value: Option<String> = this.run(|mut c| async move { c.get(key).await }).await?;
            match value {
                None => Ok(None),
                Some(value) => RenditionPlan::decode(&value).map(Some).ok_or_else(|| {
                    RegistryError::Malformed(format!("plan of {stream}: {value:?}"))
                }),
            }
        }
        .boxed()
    }

    fn put_progress(
        &self,
        stream: &StreamName,
        progress: &StreamProgress,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.progress_key(stream), progress.encode());
        async move {
            this.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms(PLAN_TTL)).await })
                .await
        }
        .boxed()
    }

    fn progress(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<StreamProgress>, RegistryError>> {
        let this = self.clone();
        let stream = stream.clone();
        let key = self.progress_key(&stream);
        async move {
            let value: Option<String> = this.run(|mut c| async move { c.get(key).await }).await?;
            match value {
                None => Ok(None),
                Some(value) => StreamProgress::decode(&value).map(Some).ok_or_else(|| {
                    RegistryError::Malformed(format!("progress of {stream}: {value:?}"))
                }),
            }
        }
        .boxed()
    }

    fn put_handover(
        &self,
        stream: &StreamName,
        handover: &Handover,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let this = self.clone();
        let (key, value) = (self.handover_key(stream), handover.encode());
        async move {
            this.run(
                |mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms(HANDOVER_TTL)).await },
            )
            .await
        }
        .boxed()
    }

    fn handover(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<Handover>, RegistryError>> {
        let this = self.clone();
        let stream = stream.clone();
        let key = self.handover_key(&stream);
        async move {
            let value: Option<String> = this.run(|mut c| async move { c.get(key).await }).await?;
            match value {
                None => Ok(None),
                Some(value) => Handover::decode(&value).map(Some).ok_or_else(|| {
                    RegistryError::Malformed(format!("handover of {stream}: {value:?}"))
                }),
            }
        }
        .boxed()
    }

    fn put_live_report(
        &self,
        stream: &StreamName,
        role: Role,
        report: &str,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let checked = check_live_report(stream, report);
        let this = self.clone();
        let (key, value) = (self.live_key(stream, role), report.to_owned());
        async move {
            checked?;
            this.run(
                |mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms(LIVE_REPORT_TTL)).await },
            )
            .await
        }
        .boxed()
    }

    fn live_report(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<String>, RegistryError>> {
        let this = self.clone();
        let key = self.live_key(stream, role);
        async move { this.run(|mut c| async move { c.get(key).await }).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_texts() {
        assert_eq!(
            redact("failed to connect to redis://:secret@127.0.0.1:6379"),
            "failed to connect to redis://***@127.0.0.1:6379"
        );
        assert_eq!(redact("timed out"), "timed out");
    }
}
