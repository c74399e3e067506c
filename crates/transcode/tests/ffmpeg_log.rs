//! FFmpeg's log goes to `tracing` (target `ffmpeg`), not to stderr:
//! trap 4's hidden reason for a failed NVENC open is visible there.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ferrocast_transcode::FfmpegProbe;
use ferrocast_transcode::gpu::{Discovery, EncoderProbe, discover};
use ferrocast_transcode::ladder::VideoCodec;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn nvenc_failure_reason_reaches_tracing() {
    if discover() != Discovery::NoDriver {
        return; // with a driver the open may succeed and log nothing
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, || {
        FfmpegProbe.open_nvenc(VideoCodec::H264, 0)
    });
    assert!(result.is_err());
    let log =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(log.contains("ffmpeg"), "{log}");
    assert!(
        log.contains("libcuda"),
        "the real reason should be logged: {log}"
    );
}
