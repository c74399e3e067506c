#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Streamed fetches through `Coalescing`: concurrent viewers of a part the
//! origin is still writing share one upstream `fetch_stream`, each gets
//! every chunk as it is written (a late joiner the prefix first), and the
//! part is cached once complete. The upstream is driven by hand: each chunk
//! is released by the test, so "before the part is complete" is an order
//! of events, not a timing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferrocast_edge::coalesce::{Coalescing, CoalescingConfig};
use ferrocast_edge::upstream::{
    StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

/// A part whose chunks the test releases one by one.
struct HandFed {
    fetches: AtomicUsize,
    chunks: Mutex<Option<mpsc::Receiver<Result<Bytes, UpstreamError>>>>,
    cache_control: &'static str,
}

impl Upstream for HandFed {
    fn fetch(
        &self,
        _: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        panic!("media goes through fetch_stream")
    }

    fn fetch_stream(
        &self,
        _: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let Some(rx) = self.chunks.lock().unwrap().take() else {
            let spent = UpstreamError::Unreachable("the one part was fetched already".into());
            return futures::future::ready(Err(spent)).boxed();
        };
        let headers = vec![("cache-control".to_owned(), self.cache_control.to_owned())];
        async move {
            Ok(StreamingResponse {
                status: 200,
                headers,
                body: futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (chunk, rx))
                })
                .boxed(),
            })
        }
        .boxed()
    }
}

fn hand_fed(
    cache_control: &'static str,
) -> (
    Coalescing<HandFed>,
    mpsc::Sender<Result<Bytes, UpstreamError>>,
) {
    let (tx, rx) = mpsc::channel(16);
    let upstream = HandFed {
        fetches: AtomicUsize::new(0),
        chunks: Mutex::new(Some(rx)),
        cache_control,
    };
    (Coalescing::new(upstream, CoalescingConfig::default()), tx)
}

fn part() -> UpstreamRequest {
    UpstreamRequest {
        path: "/live/cam/part7.2.m4s".into(),
        query: None,
    }
}

#[tokio::test]
async fn viewers_share_one_part_in_progress_and_late_ones_get_the_prefix() {
    let (edge, origin) = hand_fed("public, max-age=31536000, immutable");
    let mut early: Vec<_> = futures::future::join_all((0..100).map(|_| edge.fetch_stream(part())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(edge.upstream().fetches.load(Ordering::SeqCst), 1);

    // The first chunk reaches every viewer while the part is not complete.
    origin
        .send(Ok(Bytes::from_static(b"chunk-1")))
        .await
        .unwrap();
    for viewer in &mut early {
        assert_eq!(viewer.status, 200);
        assert_eq!(&viewer.body.next().await.unwrap().unwrap()[..], b"chunk-1");
    }
    // A viewer joining now gets the prefix replayed, then follows.
    let mut late = edge.fetch_stream(part()).await.unwrap();
    assert_eq!(&late.body.next().await.unwrap().unwrap()[..], b"chunk-1");
    origin
        .send(Ok(Bytes::from_static(b"chunk-2")))
        .await
        .unwrap();
    drop(origin);
    for viewer in early.iter_mut().chain(std::iter::once(&mut late)) {
        assert_eq!(&viewer.body.next().await.unwrap().unwrap()[..], b"chunk-2");
        assert!(viewer.body.next().await.is_none(), "complete");
    }
    assert_eq!(edge.upstream().fetches.load(Ordering::SeqCst), 1);
    let stats = edge.stats();
    assert_eq!((stats.misses, stats.coalesced), (1, 100));

    // Complete and immutable: cached whole, still one upstream fetch.
    let mut cached = edge.fetch_stream(part()).await.unwrap();
    assert_eq!(
        &cached.body.next().await.unwrap().unwrap()[..],
        b"chunk-1chunk-2"
    );
    assert_eq!(edge.stats().hits, 1);
    assert_eq!(edge.stats().in_flight, 0);
}

#[tokio::test]
async fn a_broken_part_is_an_error_for_every_viewer_and_never_cached() {
    let (edge, origin) = hand_fed("no-cache");
    let mut a = edge.fetch_stream(part()).await.unwrap();
    let mut b = edge.fetch_stream(part()).await.unwrap();
    origin.send(Ok(Bytes::from_static(b"half"))).await.unwrap();
    origin
        .send(Err(UpstreamError::Unreachable("reset".into())))
        .await
        .unwrap();
    for viewer in [&mut a, &mut b] {
        assert_eq!(&viewer.body.next().await.unwrap().unwrap()[..], b"half");
        assert!(viewer.body.next().await.unwrap().is_err());
        assert!(viewer.body.next().await.is_none());
    }
    let stats = edge.stats();
    assert_eq!((stats.errors, stats.stored), (1, 0));
}

#[tokio::test]
async fn past_the_bound_a_part_takes_no_more_joiners() {
    let (tx, rx) = mpsc::channel(16);
    let upstream = HandFed {
        fetches: AtomicUsize::new(0),
        chunks: Mutex::new(Some(rx)),
        cache_control: "no-cache",
    };
    let config = CoalescingConfig {
        max_object_bytes: 8,
        ..CoalescingConfig::default()
    };
    let edge = Coalescing::new(upstream, config);
    let mut first = edge.fetch_stream(part()).await.unwrap();
    tx.send(Ok(Bytes::from_static(b"0123456789")))
        .await
        .unwrap();
    assert_eq!(first.body.next().await.unwrap().unwrap().len(), 10);
    // The flight left the map: a new request goes upstream on its own
    // (this upstream has only the one part to give).
    assert!(edge.fetch_stream(part()).await.is_err());
    assert_eq!(edge.upstream().fetches.load(Ordering::SeqCst), 2);
    drop(tx);
    assert!(
        first.body.next().await.is_none(),
        "the first viewer reads on"
    );
}
