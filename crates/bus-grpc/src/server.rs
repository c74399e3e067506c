//! Serving a process's bus streams to other processes.

use std::net::SocketAddr;
use std::pin::Pin;

use ferrocast_bus::InProcessBus;
use futures::Stream;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::MAX_MESSAGE_BYTES;
use crate::convert::frame_of;
use crate::pb::media_bus_server::{MediaBus as MediaBusService, MediaBusServer};
use crate::pb::{Frame, SubscribeRequest};

/// The gRPC service over one process's bus.
#[derive(Debug, Clone)]
pub struct BusServer {
    bus: InProcessBus,
}

impl BusServer {
    /// Serve the streams of `bus`.
    pub fn new(bus: InProcessBus) -> Self {
        BusServer { bus }
    }
}

type Frames = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

#[tonic::async_trait]
impl MediaBusService for BusServer {
    type SubscribeStream = Frames;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Frames>, Status> {
        let name = request.into_inner().stream;
        let subscriber = self
            .bus
            .subscribe(&name)
            .ok_or_else(|| Status::not_found(format!("no stream {name} on this bus")))?;
        debug!(stream = %name, "remote subscriber");
        // Pulled as HTTP/2 flow control allows: a slow reader leaves the
        // messages in the subscription's bounded queue, which drops whole
        // GOPs when full.
        let frames = futures::stream::unfold(subscriber, |mut subscriber| async move {
            let message = subscriber.recv().await?;
            Some((Ok(frame_of(&message)), subscriber))
        });
        Ok(Response::new(Box::pin(frames)))
    }
}

/// Serve `bus` on `addr`; returns the bound address and the server's task
/// (aborting it stops the server).
pub async fn serve(
    bus: InProcessBus,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let service = MediaBusServer::new(BusServer::new(bus))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::warn!(error = %e, "bus server stopped");
        }
    });
    Ok((local, task))
}
