//! Opus end to end through the writer: libopus packets from Debian's ffmpeg
//! (in MPEG-TS, demuxed by `ferrocast_media`), written as an `Opus`/`dOps`
//! init segment and chunks, then checked by ffprobe and decoded by ffmpeg.
//!
//! Skipped, with a message, only when ffmpeg/ffprobe are not installed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{run, tools_present};

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use ferrocast_cmaf::{Sample, TrackFragment, track_timescale, write_fragment, write_init};
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{CodecParams, OpusParams, TrackId, TrackInfo};
use serde_json::Value;

/// 3 s of libopus at `channels`, demuxed: the track and its packets.
fn opus_packets(dir: &Path, channels: u8) -> (TrackInfo, Vec<Bytes>) {
    let ts = dir.join(format!("opus{channels}.ts"));
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "3"])
        .args([
            "-ac",
            &channels.to_string(),
            "-c:a",
            "libopus",
            "-f",
            "mpegts",
        ])
        .arg(&ts));
    let mut demux = Demuxer::new();
    let mut events = Vec::new();
    demux.push(&std::fs::read(&ts).unwrap(), &mut events);
    demux.finish(&mut events);
    let mut track = None;
    let mut packets = Vec::new();
    for e in events {
        match e {
            DemuxEvent::Track(t) => track = Some(t),
            DemuxEvent::Unit(u) => packets.push(u.data),
            other => panic!("unexpected {other:?}"),
        }
    }
    (track.unwrap(), packets)
}

#[test]
fn init_segment_is_an_opus_sample_entry() {
    let track = TrackInfo {
        id: TrackId(257),
        params: CodecParams::Opus(OpusParams {
            channels: 2,
            sample_rate: 48_000,
            pre_skip: 312,
            channel_mapping_family: 0,
        }),
    };
    assert_eq!(track_timescale(&track).unwrap(), 48_000);
    let init = write_init(std::slice::from_ref(&track)).unwrap();
    let at = init.windows(4).position(|w| w == b"dOps").unwrap();
    // Box size 19, then Version 0, 2 channels, PreSkip 312, 48000 Hz,
    // OutputGain 0, ChannelMappingFamily 0.
    assert_eq!(&init[at - 4..at], &[0, 0, 0, 19]);
    assert_eq!(
        &init[at + 4..at + 15],
        &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
    );
    let entry = init.windows(4).position(|w| w == b"Opus").unwrap();
    // channelcount 2, samplesize 16, samplerate 48000 << 16.
    assert_eq!(&init[entry + 20..entry + 24], &[0, 2, 0, 16]);
    assert_eq!(&init[entry + 28..entry + 32], &[0xbb, 0x80, 0, 0]);

    for (channels, family) in [(3, 0), (2, 1), (0, 0)] {
        let bad = TrackInfo {
            id: TrackId(257),
            params: CodecParams::Opus(OpusParams {
                channels,
                sample_rate: 48_000,
                pre_skip: 0,
                channel_mapping_family: family,
            }),
        };
        assert!(
            matches!(
                write_init(&[bad]),
                Err(ferrocast_cmaf::CmafError::InvalidTrack { .. })
            ),
            "{channels} channels, family {family}"
        );
    }
}

#[test]
fn ffprobe_reads_and_ffmpeg_decodes_opus_cmaf() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for channels in [1u8, 2] {
        let (track, packets) = opus_packets(dir.path(), channels);
        let CodecParams::Opus(params) = &track.params else {
            panic!("not opus: {track:?}");
        };
        assert_eq!(params.channels, channels);
        let mut file = write_init(std::slice::from_ref(&track)).unwrap().to_vec();
        // Chunks of 10 packets, decode times from the TOC durations.
        let mut decode_time = 0u64;
        for (i, chunk) in packets.chunks(10).enumerate() {
            let samples: Vec<Sample> = chunk
                .iter()
                .map(|p| Sample {
                    duration: track.params.unit_samples(p).unwrap(),
                    composition_offset: 0,
                    keyframe: true,
                    data: p.clone(),
                })
                .collect();
            let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
            let fragment = TrackFragment {
                track_id: 1,
                base_media_decode_time: decode_time,
                samples,
            };
            decode_time += duration;
            file.extend_from_slice(&write_fragment(i as u32 + 1, &[fragment]).unwrap());
        }
        let path = dir.path().join(format!("opus{channels}.mp4"));
        std::fs::write(&path, &file).unwrap();

        let out = run(Command::new("ffprobe")
            .args(["-v", "error", "-count_packets", "-show_streams"])
            .args(["-of", "json"])
            .arg(&path));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let stream = &json["streams"][0];
        assert_eq!(stream["codec_name"], "opus", "{stream}");
        assert_eq!(stream["sample_rate"], "48000", "{stream}");
        assert_eq!(stream["channels"], i64::from(channels), "{stream}");
        assert_eq!(stream["time_base"], "1/48000", "{stream}");
        assert_eq!(
            stream["nb_read_packets"],
            packets.len().to_string(),
            "{stream}"
        );

        let out = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.trim().is_empty(), "decode errors: {err}");
    }
}
