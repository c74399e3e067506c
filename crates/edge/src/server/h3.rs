//! HTTP/3: QUIC connections from quinn, requests from h3, answers from the
//! shared [`Handler`].

use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, trace};

use super::routes::{Handler, Protocol, ResponseBody};

/// Accepts QUIC connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, handler: Handler) {
    while let Some(incoming) = endpoint.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => connection_loop(connection, handler).await,
                Err(e) => debug!(%remote, error = %e, "QUIC handshake failed"),
            }
        });
    }
}

async fn connection_loop(connection: quinn::Connection, handler: Handler) {
    let remote = connection.remote_address();
    let mut h3 = match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(
        connection,
    ))
    .await
    {
        Ok(h3) => h3,
        Err(e) => {
            debug!(%remote, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    loop {
        match h3.accept().await {
            Ok(Some(resolver)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let (request, mut stream) = match resolver.resolve_request().await {
                        Ok(resolved) => resolved,
                        Err(e) => {
                            debug!(%remote, error = %e, "HTTP/3 request unreadable");
                            return;
                        }
                    };
                    let (parts, body) = handler.serve(Protocol::Http3, request).await.into_parts();
                    let sent = async {
                        stream
                            .send_response(http::Response::from_parts(parts, ()))
                            .await?;
                        match body {
                            ResponseBody::Full(bytes) => {
                                if !bytes.is_empty() {
                                    stream.send_data(bytes).await?;
                                }
                            }
                            // Each chunk in its own DATA frame as it arrives.
                            ResponseBody::Stream(mut chunks) => {
                                while let Some(chunk) = chunks.next().await {
                                    match chunk {
                                        Ok(chunk) => stream.send_data(chunk).await?,
                                        Err(e) => {
                                            // Incomplete: reset, never finish.
                                            debug!(%remote, error = %e, "upstream body broke off");
                                            stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                                            return Ok(());
                                        }
                                    }
                                }
                            }
                        }
                        stream.finish().await
                    };
                    if let Err(e) = sent.await {
                        trace!(%remote, error = %e, "HTTP/3 response not delivered");
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    debug!(%remote, error = %e, "HTTP/3 connection ended");
                }
                break;
            }
        }
    }
}
