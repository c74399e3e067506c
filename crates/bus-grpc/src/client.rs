//! Subscribing to a stream another process publishes.

use std::pin::Pin;
use std::task::{Context, Poll};

use ferrocast_bus::{BusMessage, Subscriber, SubscriberBackend, SubscriberStats};
use futures::Stream;
use tracing::warn;

use crate::MAX_MESSAGE_BYTES;
use crate::convert::message_of;
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
}

/// Subscribe to `stream` on the bus served at `endpoint`
/// (`http://HOST:PORT`). The subscriber ends (`None`) when the stream ends
/// or the connection breaks; the caller subscribes again (to whichever
/// process the registry names then).
pub async fn subscribe(endpoint: &str, stream: &str) -> Result<Subscriber, RemoteError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|_| RemoteError::Endpoint(endpoint.to_owned()))?
        .http2_adaptive_window(true)
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
        })?
        .into_inner();
    Ok(Subscriber::new(
        stream,
        Box::new(Remote {
            frames,
            stream: stream.to_owned(),
            done: false,
        }),
    ))
}

struct Remote {
    frames: tonic::Streaming<Frame>,
    stream: String,
    done: bool,
}

impl SubscriberBackend for Remote {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.frames).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => match message_of(frame) {
                Ok(message) => {
                    self.done = matches!(message, BusMessage::End);
                    Poll::Ready(Some(message))
                }
                Err(e) => {
                    warn!(stream = %self.stream, error = %e, "bad frame from the bus: subscription ended");
                    self.done = true;
                    Poll::Ready(None)
                }
            },
            Poll::Ready(Some(Err(status))) => {
                warn!(stream = %self.stream, error = %status, "remote bus subscription broke off");
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn stats(&self) -> SubscriberStats {
        // Queueing and losses happen at the publisher's end.
        SubscriberStats::default()
    }
}
