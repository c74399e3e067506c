#![allow(clippy::unwrap_used)]

//! End to end for AV1 passthrough: libaom AV1 + AAC, muxed into MPEG-TS
//! with the AOM carriage (stream_type 0x06, `AV01` registration and AV1
//! video descriptors, start-code framed OBUs) and pushed over SRT in real
//! time, is served as `av01` CMAF over LL-HLS; checked with ffprobe and
//! decoded by ffmpeg with libdav1d.
//!
//! Debian's ffmpeg 5.1 cannot be the sender: its MPEG-TS muxer writes AV1
//! as unlabelled private data without start codes, which is not the AOM
//! carriage. So ffmpeg makes the elementary streams (`-f obu`, `-f adts`)
//! and this test muxes them with a small TS writer and sends them with
//! srt-tokio, paced by the timestamps.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, client, playlist_with_segment};
use ferrocast_media::av1::{self, obu_type, obus};

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;
/// First video PTS: 1.4 s, as ffmpeg's muxer starts.
const START: u64 = 126_000;

/// Bit-by-bit CRC-32/MPEG-2 for the PSI sections.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        for i in (0..8).rev() {
            let top = crc & 0x8000_0000 != 0;
            crc <<= 1;
            if ((b >> i) & 1 != 0) != top {
                crc ^= 0x04c1_1db7;
            }
        }
    }
    crc
}

/// A minimal MPEG-TS writer: PSI sections and PES packets on PIDs with
/// continuity counters, short payloads padded with adaptation stuffing.
#[derive(Default)]
struct Ts {
    cc: std::collections::HashMap<u16, u8>,
    out: Vec<u8>,
}

impl Ts {
    fn packet(&mut self, pid: u16, start: bool, payload: &[u8]) {
        let cc = self.cc.entry(pid).or_insert(0);
        let mut p = vec![
            0x47,
            (u8::from(start) << 6) | (pid >> 8) as u8,
            pid as u8,
            0x10 | *cc,
        ];
        *cc = (*cc + 1) & 0x0f;
        if payload.len() < 184 {
            p[3] |= 0x20;
            let stuffing = 183 - payload.len();
            p.push(stuffing as u8);
            if stuffing > 0 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, stuffing - 1));
            }
        }
        p.extend_from_slice(payload);
        self.out.extend_from_slice(&p);
    }

    fn section(&mut self, pid: u16, table_id: u8, body: &[u8]) {
        let len = 5 + body.len() + 4;
        let mut s = vec![
            table_id,
            0xb0 | (len >> 8) as u8,
            len as u8,
            0,
            1,
            0xc1,
            0,
            0,
        ];
        s.extend_from_slice(body);
        let crc = crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let mut data = vec![0];
        data.extend_from_slice(&s);
        self.packet(pid, true, &data);
    }

    fn psi(&mut self, av1_descriptor: &[u8; 4]) {
        self.section(0, 0x00, &[0, 1, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        let mut descriptors = vec![0x05, 0x04, b'A', b'V', b'0', b'1', 0x80, 0x04];
        descriptors.extend_from_slice(av1_descriptor);
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00];
        body.extend_from_slice(&[0x06, 0xe1, 0x00, 0xf0, descriptors.len() as u8]);
        body.extend_from_slice(&descriptors);
        body.extend_from_slice(&[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
        self.section(PMT_PID, 0x02, &body);
    }

    fn pes(&mut self, pid: u16, stream_id: u8, pts: u64, payload: &[u8], bounded: bool) {
        let ts = [
            0x21 | ((pts >> 29) as u8 & 0x0e),
            (pts >> 22) as u8,
            ((pts >> 14) as u8 & 0xfe) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8) | 1,
        ];
        let len = if bounded { 8 + payload.len() } else { 0 };
        let mut pes = vec![0, 0, 1, stream_id, (len >> 8) as u8, len as u8];
        // data_alignment_indicator, as the AV1 carriage requires.
        pes.extend_from_slice(&[0x84, 0x80, 5]);
        pes.extend_from_slice(&ts);
        pes.extend_from_slice(payload);
        for (i, chunk) in pes.chunks(184).enumerate() {
            self.packet(pid, i == 0, chunk);
        }
    }
}

fn ffmpeg(args: &[&str], out: &Path) {
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .arg(out),
        Duration::from_secs(120),
    );
    assert!(ok, "ffmpeg {args:?}: {err}");
}

/// `seconds` of 320x240 25 fps AV1 (1 s GOP) and 48 kHz AAC, muxed with the
/// AOM carriage: the TS as (send time in 90 kHz ticks from the start,
/// bytes) pieces, and the codec string the sequence header gives.
fn av1_aac_ts(dir: &Path, seconds: u32) -> (Vec<(u64, Vec<u8>)>, String) {
    let t = seconds.to_string();
    let video = dir.join("v.obu");
    let audio = dir.join("a.aac");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            &t,
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "25",
            "-f",
            "obu",
        ],
        &video,
    );
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &t,
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "adts",
        ],
        &audio,
    );
    let data = std::fs::read(&video).unwrap();
    let mut tus: Vec<Vec<u8>> = Vec::new();
    for obu in obus(&data) {
        let obu = obu.unwrap();
        if obu.header.obu_type == obu_type::TEMPORAL_DELIMITER || tus.is_empty() {
            tus.push(Vec::new());
        }
        tus.last_mut().unwrap().extend_from_slice(obu.bytes);
    }
    let params = av1::params_from_temporal_unit(&tus[0]).unwrap().unwrap();
    let descriptor: [u8; 4] = params.configuration_record()[..4].try_into().unwrap();

    let adts = std::fs::read(&audio).unwrap();
    let mut frames = Vec::new();
    let mut rest = &adts[..];
    while rest.len() >= 7 {
        let len = (usize::from(rest[3] & 3) << 11)
            | (usize::from(rest[4]) << 3)
            | usize::from(rest[5] >> 5);
        frames.push(&rest[..len]);
        rest = &rest[len..];
    }

    // Interleave by timestamp: video at 3600 ticks a frame, audio at 1920
    // (1024 samples at 48 kHz), PSI before every keyframe.
    let mut ts = Ts::default();
    let mut pieces = Vec::new();
    let (mut v, mut a) = (0usize, 0usize);
    while v < tus.len() || a < frames.len() {
        let vt = START + v as u64 * 3600;
        let at = START + a as u64 * 1920;
        let from = ts.out.len();
        let when = if v < tus.len() && (a >= frames.len() || vt <= at) {
            if av1::is_random_access_point(&tus[v]) {
                ts.psi(&descriptor);
            }
            let framed = av1::temporal_unit_to_ts(&tus[v]).unwrap();
            // "using the stream_id 0xBD (private_stream_id_1)".
            ts.pes(VIDEO_PID, 0xbd, vt, &framed, false);
            v += 1;
            vt
        } else {
            ts.pes(AUDIO_PID, 0xc0, at, frames[a], true);
            a += 1;
            at
        };
        pieces.push((when - START, ts.out[from..].to_vec()));
    }
    (pieces, params.codec_string())
}

/// Sends the pieces over SRT as `streamid`, each no earlier than its
/// timestamp after the start (real time), in 1316-byte messages.
async fn srt_send_paced(srt: std::net::SocketAddr, streamid: &str, pieces: &[(u64, Vec<u8>)]) {
    use futures::SinkExt;
    let call = srt_tokio::SrtSocket::builder().call(srt, Some(streamid));
    let mut socket = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("SRT handshake in time")
        .expect("SRT connection accepted");
    let start = tokio::time::Instant::now();
    let mut pending: Vec<u8> = Vec::new();
    for (t, bytes) in pieces {
        // Pacing a live sender, not synchronisation: the receiver is
        // observed through blocking playlist requests.
        tokio::time::sleep_until(start + Duration::from_micros(t * 100 / 9)).await;
        pending.extend_from_slice(bytes);
        let whole = pending.len() / 1316 * 1316;
        for chunk in pending[..whole].chunks(1316) {
            socket
                .send((
                    std::time::Instant::now(),
                    bytes::Bytes::copy_from_slice(chunk),
                ))
                .await
                .unwrap();
        }
        pending.drain(..whole);
    }
    if !pending.is_empty() {
        socket
            .send((std::time::Instant::now(), bytes::Bytes::from(pending)))
            .await
            .unwrap();
    }
    let _ = socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_push_plays_as_av01() {
    if !common::have("ffmpeg") || !common::have("ffprobe") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pieces, codec) = av1_aac_ts(dir.path(), 6);
    assert!(codec.starts_with("av01.0."), "{codec}");

    let server = Server::start("");
    let srt = server.srt;
    let sender =
        tokio::spawn(async move { srt_send_paced(srt, "publish:live/av1", &pieces).await });
    let http = client();
    let media = playlist_with_segment(&http, &server, "av1", 2).await;

    // Multivariant: CODECS from the sequence header (av01.*) and the AAC
    // track, and the sequence header's size. RFC 8216bis 4.4.6.2: "CODECS
    // ... Every media format in any of the renditions specified by the
    // Variant Stream MUST be represented"; "RESOLUTION ... SHOULD be
    // included for any Variant Stream that includes video".
    let (inf, codecs) = common::variant(&http, &server, "av1").await;
    assert_eq!(codecs[0], codec, "{inf}");
    assert!(codecs.iter().any(|c| c == "mp4a.40.2"), "{inf}");
    assert!(inf.contains("RESOLUTION=320x240"), "{inf}");

    // Init segment + the first two complete segments of each rendition a
    // player loads (video, and audio in its own rendition).
    let (path, streams) =
        common::probe_renditions(&http, &server, "av1", &media, 2, dir.path()).await;
    for want in [
        "codec_name=av1",
        "codec_tag_string=av01",
        "width=320",
        "height=240",
        "codec_name=aac",
    ] {
        assert!(streams.lines().any(|l| l == want), "{want}:\n{streams}");
    }

    // Decoded with libdav1d to raw 4:2:0 pictures: every video sample is
    // a 320x240 frame, with no decoder errors.
    let raw = dir.path().join("av1.yuv");
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-c:v", "libdav1d", "-i"])
            .arg(&path)
            .args(["-map", "0:v", "-f", "rawvideo", "-pix_fmt", "yuv420p"])
            .arg(&raw),
        Duration::from_secs(60),
    );
    assert!(ok && err.is_empty(), "ffmpeg libdav1d: {err}");
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_packets", "-select_streams", "v"])
            .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(ok && err.is_empty(), "ffprobe: {err}");
    let packets: u64 = out.trim().parse().unwrap();
    let picture = 320 * 240 * 3 / 2;
    let decoded = std::fs::metadata(&raw).unwrap().len();
    assert_eq!(decoded % picture, 0, "not whole 320x240 pictures");
    assert_eq!(decoded / picture, packets, "one picture per sample");
    assert!(packets >= 25, "two segments of 1 s GOPs: {packets}");
    sender.await.unwrap();
}
