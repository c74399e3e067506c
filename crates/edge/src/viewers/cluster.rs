//! Viewer counts shared between edges through Redis.
//!
//! # Layout
//!
//! ```text
//! {prefix}:edge:{edge_id}   hash  stream → this edge's viewers, and ":alive" → 1
//!                                 PEXPIRE 3 × interval_ms, rewritten whole every interval
//! {prefix}:edges            set   edge ids
//! ```
//!
//! Each interval an edge replaces its own hash in one `MULTI` (`DEL`,
//! `HSET`, `PEXPIRE`, `SADD`) and reads the set in the same transaction,
//! then every member's hash in one pipeline, and sums per stream. An edge
//! that dies stops being counted when its hash expires, at most three
//! intervals after its last write, with no clock compared between
//! machines (Redis expires the key). Members whose hash is gone are
//! removed from the set by whoever reads it next. `":alive"` keeps the
//! hash of an edge without viewers, so such an edge stays a member.
//!
//! Every exchange is bounded by `redis_timeout_ms`; the caller counts and
//! logs failures. Nothing here is on a request's path.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferrocast_media::StreamName;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ViewerCounts;

/// Field that keeps an edge's hash alive when it has no viewers; not a
/// stream name (`:` is outside the stream name grammar).
const ALIVE_FIELD: &str = ":alive";
/// Edges read per interval, at most.
pub(crate) const MAX_EDGES: usize = 1024;
/// An edge's hash outlives its last write by this many intervals.
pub(crate) const TTL_INTERVALS: u32 = 3;

/// Why a sync with Redis failed. The message never holds the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// No answer within `redis_timeout_ms`.
    #[error("redis {op}: no answer within {timeout:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// Redis or the connection to it failed.
    #[error("redis {op}: {source}")]
    Redis {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: redis::RedisError,
    },
}

/// One edge's connection to the shared counts.
pub(crate) struct Cluster {
    connection: ConnectionManager,
    edge_id: String,
    edge_key: String,
    edges_key: String,
    edge_prefix: String,
    ttl_ms: i64,
    timeout: Duration,
    max_streams: usize,
}

impl Cluster {
    /// Connects lazily (the first sync connects; a failed connection is
    /// tried again at the next one). Needs a tokio runtime.
    pub(crate) fn new(
        client: redis::Client,
        prefix: &str,
        edge_id: &str,
        interval: Duration,
        timeout: Duration,
        max_streams: usize,
    ) -> Result<Self, SyncError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // The sync loop is the retry: one attempt per interval.
            .set_number_of_retries(0);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|source| {
                SyncError::Redis {
                    op: "connect",
                    source,
                }
            })?;
        let ttl = interval.saturating_mul(TTL_INTERVALS);
        Ok(Cluster {
            connection,
            edge_id: edge_id.to_owned(),
            edge_key: format!("{prefix}:edge:{edge_id}"),
            edges_key: format!("{prefix}:edges"),
            edge_prefix: format!("{prefix}:edge:"),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1),
            timeout,
            max_streams,
        })
    }

    /// Publishes this edge's `local` counts and returns the totals over all
    /// live edges (this one included).
    pub(crate) async fn sync(&mut self, local: &ViewerCounts) -> Result<ViewerCounts, SyncError> {
        let mut fields: Vec<(&str, u64)> = Vec::with_capacity(local.len() + 1);
        fields.push((ALIVE_FIELD, 1));
        fields.extend(local.iter().map(|(stream, n)| (stream.as_str(), *n)));
        let mut publish = redis::pipe();
        publish
            .atomic()
            .del(&self.edge_key)
            .ignore()
            .hset_multiple(&self.edge_key, &fields)
            .ignore()
            .pexpire(&self.edge_key, self.ttl_ms)
            .ignore()
            .sadd(&self.edges_key, &self.edge_id)
            .ignore()
            .smembers(&self.edges_key);
        let (members,): (HashSet<String>,) = self.bounded("publish", &publish).await?;
        let (edges, hashes) = read_hashes(
            &mut self.connection,
            self.timeout,
            &self.edge_prefix,
            members,
        )
        .await?;

        let gone: Vec<&String> = edges
            .iter()
            .zip(&hashes)
            .filter(|(_, hash)| hash.is_empty())
            .map(|(edge, _)| edge)
            .collect();
        if !gone.is_empty() {
            let mut forget = redis::pipe();
            forget.srem(&self.edges_key, &gone).ignore();
            self.bounded::<()>("forget dead edges", &forget).await?;
        }
        Ok(sum(&hashes, self.max_streams))
    }

    async fn bounded<T: redis::FromRedisValue>(
        &mut self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, SyncError> {
        bounded(&mut self.connection, self.timeout, op, pipe).await
    }
}

/// The viewer totals of every edge, read without counting as an edge
/// (the control plane's view): the members of `{prefix}:edges` and their
/// hashes, summed as each edge sums them. Bounded by the configured Redis
/// timeout per exchange.
pub struct ViewerTotals {
    connection: ConnectionManager,
    edges_key: String,
    edge_prefix: String,
    timeout: Duration,
    max_streams: usize,
}

impl ViewerTotals {
    /// A reader for the edges configured by `config` (`[edge.viewers]`);
    /// `None` without `redis_url`. Connects lazily; needs a tokio runtime.
    pub fn new(config: &super::ViewersConfig) -> Result<Option<Self>, SyncError> {
        let Some(url) = config.redis_url.as_ref().filter(|_| config.enabled) else {
            return Ok(None);
        };
        let redis = |source| SyncError::Redis {
            op: "connect",
            source,
        };
        let client = redis::Client::open(url.expose()).map_err(redis)?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, manager).map_err(redis)?;
        let prefix = &config.redis_key_prefix;
        Ok(Some(ViewerTotals {
            connection,
            edges_key: format!("{prefix}:edges"),
            edge_prefix: format!("{prefix}:edge:"),
            timeout,
            max_streams: config.max_streams,
        }))
    }

    /// Viewers per stream over every live edge now.
    pub async fn read(&self) -> Result<ViewerCounts, SyncError> {
        let mut connection = self.connection.clone();
        let mut list = redis::pipe();
        list.smembers(&self.edges_key);
        let (members,): (HashSet<String>,) =
            bounded(&mut connection, self.timeout, "read edges", &list).await?;
        let (_, hashes) =
            read_hashes(&mut connection, self.timeout, &self.edge_prefix, members).await?;
        Ok(sum(&hashes, self.max_streams))
    }
}

/// The hashes of `members` (at most [`MAX_EDGES`], in id order), one
/// pipeline, with the ids they belong to.
async fn read_hashes(
    connection: &mut ConnectionManager,
    timeout: Duration,
    edge_prefix: &str,
    members: HashSet<String>,
) -> Result<(Vec<String>, Vec<HashMap<String, String>>), SyncError> {
    let mut edges: Vec<String> = members.into_iter().collect();
    edges.sort_unstable();
    edges.truncate(MAX_EDGES);
    let mut read = redis::pipe();
    for edge in &edges {
        read.hgetall(format!("{edge_prefix}{edge}"));
    }
    let hashes = bounded(connection, timeout, "read", &read).await?;
    Ok((edges, hashes))
}

/// `pipe` on `connection`, within `timeout`.
async fn bounded<T: redis::FromRedisValue>(
    connection: &mut ConnectionManager,
    timeout: Duration,
    op: &'static str,
    pipe: &redis::Pipeline,
) -> Result<T, SyncError> {
    match tokio::time::timeout(timeout, pipe.query_async(connection)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(SyncError::Redis { op, source }),
        Err(_) => Err(SyncError::Timeout { op, timeout }),
    }
}

/// Totals per stream over the edges' hashes: fields that are not stream
/// names or counts are skipped, sums saturate, and only the `max_streams`
/// streams with the most viewers are kept (bounded label cardinality).
pub(crate) fn sum(hashes: &[HashMap<String, String>], max_streams: usize) -> ViewerCounts {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for hash in hashes {
        for (stream, count) in hash {
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            if count == 0 || StreamName::new(stream.as_str()).is_err() {
                continue;
            }
            let total = totals.entry(stream.as_str()).or_default();
            *total = total.saturating_add(count);
        }
    }
    let mut totals: Vec<(&str, u64)> = totals.into_iter().collect();
    if totals.len() > max_streams {
        totals.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        totals.truncate(max_streams);
    }
    totals
        .into_iter()
        .map(|(stream, n)| (stream.to_owned(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn totals_sum_edges_and_skip_what_is_not_a_count() {
        let hashes = [
            hash(&[(ALIVE_FIELD, "1"), ("cam", "2"), ("news", "1")]),
            hash(&[(ALIVE_FIELD, "1"), ("cam", "3"), ("bad name", "9")]),
            hash(&[
                ("cam", "lots"),
                ("news", "0"),
                ("sport", "18446744073709551615"),
            ]),
            hash(&[("sport", "5")]),
        ];
        let totals = sum(&hashes, 10);
        assert_eq!(
            totals.into_iter().collect::<Vec<_>>(),
            [
                ("cam".to_owned(), 5),
                ("news".to_owned(), 1),
                ("sport".to_owned(), u64::MAX)
            ]
        );
    }

    #[test]
    fn totals_keep_the_most_watched_streams() {
        let hashes = [hash(&[("a", "1"), ("b", "7"), ("c", "3"), ("d", "7")])];
        let totals = sum(&hashes, 2);
        assert_eq!(
            totals.into_iter().collect::<Vec<_>>(),
            [("b".to_owned(), 7), ("d".to_owned(), 7)]
        );
    }
}
