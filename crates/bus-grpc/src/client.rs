//! Subscribing to a stream another process publishes.

use std::pin::Pin;
use std::task::{Context, Poll};

use ferrocast_bus::{BusMessage, Subscriber, SubscriberBackend, SubscriberStats};
use futures::Stream;
use tracing::warn;

use crate::MAX_MESSAGE_BYTES;
use crate::convert::{Delivery, delivery_of};
use crate::pb::media_bus_client::MediaBusClient;
use crate::pb::{Frame, SubscribeRequest};

/// Why a remote subscription could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The endpoint is not a URL.
    #[error("bad bus endpoint {0:?}")]
    Endpoint(String),
    /// The publishing process could not be reached.
    #[error("bus endpoint unreachable: {0}")]
    Unreachable(String),
    /// It has no such stream.
    #[error("no stream {0} at that bus")]
    NotFound(String),
    /// It refused or failed the subscription.
    #[error("subscription refused: {0}")]
    Refused(String),
    /// The subscription broke off (the connection or the publishing
    /// process failed).
    #[error("subscription broke off: {0}")]
    Broken(String),
    /// A frame that is not a valid bus message.
    #[error("bad frame from the bus: {0}")]
    BadFrame(String),
}

/// The frames of one remote subscription, from [`connect`]: each a
/// [`Delivery`], or the error that ended the subscription (nothing follows
/// an error).
pub struct RemoteFrames {
    frames: tonic::Streaming<Frame>,
    stream: String,
    epoch: Option<u64>,
    done: bool,
}

impl RemoteFrames {
    /// The fencing epoch the publishing process answered with, if it is
    /// fenced ([`BusServer::fenced`](crate::BusServer::fenced)).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }
}

impl std::fmt::Debug for RemoteFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFrames")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Stream for RemoteFrames {
    type Item = Result<Delivery, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.frames).poll_next(cx);
        let item = match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => None,
            Poll::Ready(Some(Ok(frame))) => {
                Some(delivery_of(frame).map_err(|e| RemoteError::BadFrame(e.to_string())))
            }
            Poll::Ready(Some(Err(status))) => {
                Some(Err(RemoteError::Broken(status.message().to_owned())))
            }
        };
        self.done = match &item {
            None | Some(Err(_)) => true,
            Some(Ok(delivery)) => *delivery == Delivery::Message(BusMessage::End),
        };
        Poll::Ready(item)
    }
}

/// Dial the bus served at `endpoint` (`http://HOST:PORT`) and subscribe
/// to `stream`: its messages (from the track set and a keyframe on) and
/// the notices that its publisher left.
pub async fn connect(endpoint: &str, stream: &str) -> Result<RemoteFrames, RemoteError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|_| RemoteError::Endpoint(endpoint.to_owned()))?
        .http2_adaptive_window(true)
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| RemoteError::Unreachable(e.to_string()))?;
    let mut client = MediaBusClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let frames = client
        .subscribe(SubscribeRequest {
            stream: stream.to_owned(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => RemoteError::NotFound(stream.to_owned()),
            tonic::Code::Unavailable => RemoteError::Unreachable(status.message().to_owned()),
            _ => RemoteError::Refused(status.message().to_owned()),
        })?;
    let epoch = frames
        .metadata()
        .get(crate::server::EPOCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(RemoteFrames {
        frames: frames.into_inner(),
        stream: stream.to_owned(),
        epoch,
        done: false,
    })
}

/// How long dialing a bus may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Subscribe to `stream` on the bus served at `endpoint`
/// (`http://HOST:PORT`) as an ordinary [`Subscriber`]. It ends (`None`)
/// when the stream ends or the connection breaks; the caller subscribes
/// again (to whichever process the registry names then). Publisher-gone
/// notices are not delivered: [`connect`] gives them.
pub async fn subscribe(endpoint: &str, stream: &str) -> Result<Subscriber, RemoteError> {
    let frames = connect(endpoint, stream).await?;
    Ok(Subscriber::new(stream, Box::new(Remote { frames })))
}

struct Remote {
    frames: RemoteFrames,
}

impl SubscriberBackend for Remote {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        loop {
            return match Pin::new(&mut self.frames).poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(Delivery::Message(message)))) => Poll::Ready(Some(message)),
                Poll::Ready(Some(Ok(Delivery::PublisherGone))) => continue,
                Poll::Ready(Some(Err(e))) => {
                    warn!(stream = %self.frames.stream, error = %e, "remote bus subscription ended");
                    Poll::Ready(None)
                }
                Poll::Ready(None) => Poll::Ready(None),
            };
        }
    }

    fn stats(&self) -> SubscriberStats {
        // Queueing and losses happen at the publisher's end.
        SubscriberStats::default()
    }
}
