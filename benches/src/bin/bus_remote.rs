//! `bus_remote`: what the media bus between processes costs against the
//! in-process bus, in the same run and with the same stream.
//!
//! A synthetic stream (H.264-sized video units at `--fps` with a keyframe
//! every `--gop` frames and `--mbps` of video, plus 50 AAC frames a second)
//! is published twice:
//!
//! 1. **in process**: an [`InProcessBus`] publisher and a subscriber task
//!    in this process;
//! 2. **across processes**: the same bus served over gRPC
//!    ([`ferrocast_bus_grpc::serve`]) on loopback, and a second process
//!    (this binary with `--subscribe`) subscribed to it.
//!
//! Each unit carries its publish time (wall clock, nanoseconds) in its
//! first 8 bytes; the subscriber records delivery − publish per unit (both
//! processes read the same clock). Two phases per transport: **paced**
//! (real time, the latency figures) and **flood** (as fast as the
//! publisher can send for `--flood-units` units: throughput, and the GOPs
//! a subscriber that cannot keep up loses).
//!
//! ```text
//! cargo run --release -p ferrocast-benches --bin bus_remote -- --seconds 10
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use ferrocast_benches::summary::Summary;
use ferrocast_bus::{BusMessage, InProcessBus, Publisher, Subscriber};
use ferrocast_media::{AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "The media bus across processes (gRPC) against the in-process bus")]
struct Args {
    /// Seconds of paced stream per transport.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames per GOP.
    #[arg(long, default_value_t = 30)]
    gop: u32,
    /// Video bitrate in Mbit/s (a keyframe is 8 P-frames' worth).
    #[arg(long, default_value_t = 6.0)]
    mbps: f64,
    /// Units sent back to back in the flood phase.
    #[arg(long, default_value_t = 20_000)]
    flood_units: u32,
    /// Subscriber mode (used by the benchmark itself): subscribe to
    /// `STREAM` at this bus endpoint and report.
    #[arg(long, value_name = "ENDPOINT")]
    subscribe: Option<String>,
    /// The stream to subscribe to (with `--subscribe`).
    #[arg(long, default_value = "bench")]
    stream: String,
}

/// x264's 1280x720 High@3.1 SPS and a matching PPS.
const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn tracks() -> anyhow::Result<Vec<TrackInfo>> {
    let video = ferrocast_media::h264::params_from_parameter_sets(
        Bytes::from_static(&SPS),
        Bytes::from_static(&PPS),
    )?;
    let audio = ferrocast_media::aac::parse_audio_specific_config(&[0x11, 0x90])?;
    Ok(vec![
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(video),
        },
        TrackInfo {
            id: TrackId(257),
            params: CodecParams::Aac(audio),
        },
    ])
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A unit of `size` bytes stamped with the time now.
fn unit(video: bool, n: i64, keyframe: bool, size: usize) -> AccessUnit {
    let mut data = BytesMut::with_capacity(size.max(8));
    data.put_u64(now_ns());
    data.resize(size.max(8), 0x5a);
    AccessUnit {
        track: TrackId(if video { 256 } else { 257 }),
        kind: if video {
            TrackKind::Video
        } else {
            TrackKind::Audio
        },
        pts: Time90k(n * 3000),
        dts: Time90k(n * 3000),
        keyframe: keyframe || !video,
        data: data.freeze(),
        captured_unix_ms: None,
        trace: None,
    }
}

/// What a subscriber saw.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Report {
    units: u64,
    bytes: u64,
    gaps: u64,
    /// Delivery − publish, microseconds, per unit.
    latencies_us: Vec<i64>,
    /// From the first unit to the end.
    elapsed_s: f64,
}

/// Receive until `End`, stamping each unit.
async fn receive(mut subscriber: Subscriber) -> Report {
    let mut report = Report::default();
    let mut first: Option<Instant> = None;
    while let Some(message) = subscriber.recv().await {
        match message {
            BusMessage::Unit(unit) => {
                let at = now_ns();
                first.get_or_insert_with(Instant::now);
                let sent = u64::from_be_bytes(unit.data[..8].try_into().unwrap_or([0; 8]));
                report.units += 1;
                report.bytes += unit.data.len() as u64;
                report
                    .latencies_us
                    .push(i64::try_from(at.saturating_sub(sent) / 1000).unwrap_or(i64::MAX));
            }
            BusMessage::Gap => report.gaps += 1,
            BusMessage::End => break,
            _ => {}
        }
    }
    report.elapsed_s = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    report
}

/// Publish the paced stream for `seconds`, or `flood` units back to back.
async fn publish(publisher: Publisher, args: &Args, flood: bool) -> anyhow::Result<u64> {
    publisher.send_tracks(tracks()?);
    let frame_bytes = (args.mbps * 1e6 / 8.0 / f64::from(args.fps)) as usize;
    // A GOP of `gop` frames where the keyframe weighs 8 P-frames.
    let p_size = frame_bytes * args.gop as usize / (args.gop as usize + 7);
    let key_size = p_size * 8;
    let frames = if flood {
        i64::from(args.flood_units)
    } else {
        i64::from(args.seconds * args.fps)
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(args.fps));
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    for n in 0..frames {
        let keyframe = n % i64::from(args.gop) == 0;
        publisher.send_unit(unit(
            true,
            n,
            keyframe,
            if keyframe { key_size } else { p_size },
        ));
        sent += 1;
        // About 50 audio frames a second.
        if n % i64::from(args.fps.div_ceil(50).max(1)) == 0 {
            publisher.send_unit(unit(false, n, true, 300));
            sent += 1;
        }
        if !flood {
            tokio::time::sleep_until(start + period * (n as u32 + 1)).await;
        } else if n % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    publisher.end();
    Ok(sent)
}

fn summary_json(report: &Report, sent: u64) -> serde_json::Value {
    let latency = Summary::of(&report.latencies_us).map(|s| s.to_json());
    serde_json::json!({
        "sent": sent,
        "delivered": report.units,
        "gaps": report.gaps,
        "mbytes_per_s": if report.elapsed_s > 0.0 { report.bytes as f64 / report.elapsed_s / 1e6 } else { 0.0 },
        "units_per_s": if report.elapsed_s > 0.0 { report.units as f64 / report.elapsed_s } else { 0.0 },
        "latency_us": latency,
    })
}

/// One phase in process.
async fn in_process(args: &Args, flood: bool) -> anyhow::Result<serde_json::Value> {
    let bus = InProcessBus::default();
    let publisher = bus.publish("bench")?;
    let subscriber = bus.subscribe("bench").context("subscribing")?;
    let receiver = tokio::spawn(receive(subscriber));
    let sent = publish(publisher, args, flood).await?;
    let report = receiver.await?;
    Ok(summary_json(&report, sent))
}

/// One phase across processes: this binary again, subscribed over gRPC.
async fn remote(args: &Args, flood: bool) -> anyhow::Result<serde_json::Value> {
    let bus = InProcessBus::default();
    let name = "bench";
    let (addr, _server) = ferrocast_bus_grpc::serve(bus.clone(), "127.0.0.1:0".parse()?).await?;
    // The stream exists before the subscriber dials.
    let publisher = bus.publish(name)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--subscribe", &format!("http://{addr}"), "--stream", name])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the subscriber process")?;
    let stdout = child.stdout.take().context("subscriber stdout")?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), lines_rx.recv()).await {
        Ok(Some(line)) if line == "subscribed" => {}
        other => bail!("subscriber did not start: {other:?}"),
    }
    let sent = publish(publisher, args, flood).await?;
    let line = tokio::time::timeout(Duration::from_secs(120), lines_rx.recv())
        .await
        .context("subscriber report")?
        .context("subscriber exited without a report")?;
    let _ = child.wait();
    let report: Report = serde_json::from_str(&line)?;
    Ok(summary_json(&report, sent))
}

async fn subscriber_mode(endpoint: &str, stream: &str) -> anyhow::Result<()> {
    let subscriber = ferrocast_bus_grpc::subscribe(endpoint, stream).await?;
    println!("subscribed");
    std::io::stdout().flush()?;
    let report = receive(subscriber).await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(endpoint) = &args.subscribe {
        return subscriber_mode(endpoint, &args.stream).await;
    }
    let results = serde_json::json!({
        "stream": { "fps": args.fps, "gop": args.gop, "video_mbps": args.mbps, "paced_seconds": args.seconds, "flood_units": args.flood_units },
        "in_process": { "paced": in_process(&args, false).await?, "flood": in_process(&args, true).await? },
        "grpc_across_processes": { "paced": remote(&args, false).await?, "flood": remote(&args, true).await? },
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}
