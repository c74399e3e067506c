//! One publisher's session: SRT messages → TS demuxer → track gate → bus.

use std::time::Duration;

use ferrocast_bus::{BusMessage, Publisher};
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use futures::StreamExt;
use srt_tokio::SrtSocket;
use std::sync::Arc;
use tracing::{debug, info, warn};

use crate::gate::{Released, TrackGate};
use crate::status::{SrtSample, StatusRecorder};

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Drop a publisher that sends nothing for this long.
    pub idle_timeout: Duration,
}

/// Turns demuxer events into bus messages; the sans-IO heart of a session.
#[derive(Debug, Default)]
pub struct SessionPipeline {
    demuxer: Demuxer,
    gate: TrackGate,
    events: Vec<DemuxEvent>,
    released: Vec<Released>,
    /// Bytes received.
    pub bytes: u64,
    /// Access units passed on.
    pub units: u64,
    /// Bad-input warnings from the demuxer.
    pub warnings: u64,
}

impl SessionPipeline {
    /// A pipeline for a new publisher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed received bytes; `send` gets every bus message in order.
    pub fn push(&mut self, bytes: &[u8], send: &mut impl FnMut(BusMessage)) {
        self.bytes += bytes.len() as u64;
        self.demuxer.push(bytes, &mut self.events);
        self.drain(send);
    }

    /// End of input.
    pub fn finish(&mut self, send: &mut impl FnMut(BusMessage)) {
        self.demuxer.finish(&mut self.events);
        self.drain(send);
        self.gate.finish(&mut self.released);
        self.forward(send);
    }

    fn drain(&mut self, send: &mut impl FnMut(BusMessage)) {
        for event in self.events.drain(..) {
            match event {
                DemuxEvent::Track(info) => {
                    let id = info.id;
                    let codec = info.params.codec_string();
                    if self.gate.on_track(info, &mut self.released) {
                        info!(track = id.0, %codec, "track");
                    } else {
                        debug!(track = id.0, %codec, "extra track ignored");
                    }
                }
                DemuxEvent::Unit(unit) => self.gate.on_unit(unit, &mut self.released),
                DemuxEvent::Unsupported {
                    pid,
                    stream_type,
                    codec,
                } => warn!(
                    pid,
                    stream_type, codec, "elementary stream with an unsupported codec ignored"
                ),
                DemuxEvent::Warning(w) => {
                    self.warnings += 1;
                    warn!(warning = %w, "bad MPEG-TS input skipped");
                }
                _ => {}
            }
        }
        self.forward(send);
    }

    fn forward(&mut self, send: &mut impl FnMut(BusMessage)) {
        for released in self.released.drain(..) {
            match released {
                Released::Tracks(tracks) => send(BusMessage::Tracks(tracks)),
                Released::Unit(unit) => {
                    self.units += 1;
                    send(BusMessage::Unit(Arc::new(unit)));
                }
            }
        }
    }
}

/// Receive from `socket` until the publisher leaves or goes quiet.
///
/// `stop` ends the session early (another publisher takes the stream over).
pub async fn run(
    mut socket: SrtSocket,
    publisher: Publisher,
    config: &SessionConfig,
    stop: &tokio::sync::Notify,
    status: &StatusRecorder,
) {
    let mut pipeline = SessionPipeline::new();
    let mut send = |message| publisher.send(message);
    let mut statistics = socket.statistics().clone();
    // srt-tokio leaves `elapsed_time` at zero; time the samples ourselves.
    let started = std::time::Instant::now();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(config.idle_timeout, socket.next()) => next,
            Some(stats) = statistics.next() => {
                status.record_media(pipeline.bytes, pipeline.units, pipeline.warnings);
                status.record_srt(SrtSample {
                    elapsed: started.elapsed(),
                    rx_bytes: pipeline.bytes,
                    rtt: stats.rx_average_rtt.max(stats.tx_average_rtt),
                    lost: stats.rx_loss_data,
                    retransmitted: stats.rx_retransmit_data,
                    dropped: stats.rx_dropped_data,
                });
                continue;
            }
            () = stop.notified() => {
                info!("publisher replaced by a new one");
                break;
            }
        };
        match next {
            Ok(Some(Ok((_, bytes)))) => pipeline.push(&bytes, &mut send),
            Ok(Some(Err(e))) => {
                warn!(error = %e, "SRT receive failed");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                warn!(
                    timeout_ms = config.idle_timeout.as_millis() as u64,
                    "publisher idle: dropped"
                );
                break;
            }
        }
    }
    pipeline.finish(&mut send);
    status.record_media(pipeline.bytes, pipeline.units, pipeline.warnings);
    if pipeline.units == 0 {
        warn!(
            bytes = pipeline.bytes,
            "publisher left without sending any playable media"
        );
    }
    info!(
        bytes = pipeline.bytes,
        units = pipeline.units,
        "publisher left"
    );
}
