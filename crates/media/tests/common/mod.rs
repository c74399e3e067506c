//! Test helpers: a tiny MPEG-TS writer (independent of the demuxer's code),
//! canned H.264/AAC payloads, ffmpeg/ffprobe runners and demux drivers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrocast_media::ts::{DemuxEvent, Demuxer};

pub const PACKET: usize = 188;

/// x264's 1280x720 High@3.2 SPS (50 fps VUI) and a matching PPS.
pub const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
];
pub const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// An Annex-B access unit: AUD, then SPS+PPS+IDR for a keyframe or a
/// non-IDR slice otherwise, padded with `extra` bytes of slice data.
pub fn h264_au(keyframe: bool, extra: usize) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&SPS);
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&PPS);
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84]);
    } else {
        au.extend_from_slice(&[0, 0, 1, 0x41, 0x9a, 0x02]);
    }
    au.extend((0..extra).map(|i| (i % 251) as u8 | 0x10));
    au
}

/// One ADTS frame: AAC-LC, 48 kHz (index 3), stereo, `payload` raw bytes.
pub fn adts_frame(payload: usize) -> Vec<u8> {
    let len = 7 + payload;
    let mut f = vec![
        0xff,
        0xf1,
        (1 << 6) | (3 << 2),
        (2 << 6) | ((len >> 11) as u8 & 3),
        (len >> 3) as u8,
        (((len & 7) as u8) << 5) | 0x1f,
        0xfc,
    ];
    f.extend((0..payload).map(|i| (i * 7 % 256) as u8));
    f
}

/// Bit-by-bit CRC-32/MPEG-2, written separately from the demuxer's table.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        for i in (0..8).rev() {
            let bit = (b >> i) & 1 != 0;
            let top = crc & 0x8000_0000 != 0;
            crc <<= 1;
            if bit != top {
                crc ^= 0x04c1_1db7;
            }
        }
    }
    crc
}

/// A long-form PSI section with its CRC.
pub fn section(table_id: u8, extension: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![
        table_id,
        0xb0 | (len >> 8) as u8,
        len as u8,
        (extension >> 8) as u8,
        extension as u8,
        0xc1 | (version << 1),
        0,
        0,
    ];
    s.extend_from_slice(body);
    let crc = crc32(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// 33-bit timestamp field with the 4-bit prefix and marker bits.
pub fn ts_field(prefix: u8, ts: u64) -> [u8; 5] {
    [
        (prefix << 4) | ((ts >> 29) as u8 & 0x0e) | 1,
        (ts >> 22) as u8,
        ((ts >> 14) as u8 & 0xfe) | 1,
        (ts >> 7) as u8,
        ((ts << 1) as u8) | 1,
    ]
}

/// Writes transport stream packets.
#[derive(Default)]
pub struct TsWriter {
    cc: HashMap<u16, u8>,
    pub out: Vec<u8>,
}

impl TsWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The continuity counter the next packet on `pid` gets.
    pub fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc.entry(pid).or_insert(0);
        let v = *cc;
        *cc = (v + 1) & 0x0f;
        v
    }

    /// One packet; a short payload is padded with adaptation-field stuffing.
    pub fn packet(&mut self, pid: u16, pusi: bool, payload: &[u8]) {
        assert!(payload.len() <= 184);
        let cc = self.next_cc(pid);
        self.raw_packet(pid, pusi, cc, payload);
    }

    pub fn raw_packet(&mut self, pid: u16, pusi: bool, cc: u8, payload: &[u8]) {
        let mut p = vec![
            0x47,
            (u8::from(pusi) << 6) | (pid >> 8) as u8,
            pid as u8,
            0x10 | cc,
        ];
        if payload.len() < 184 {
            p[3] |= 0x20;
            let af_len = 183 - payload.len();
            p.push(af_len as u8);
            if af_len > 0 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, af_len - 1));
            }
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), PACKET);
        self.out.extend_from_slice(&p);
    }

    /// A PSI section after pointer_field 0, over as many packets as needed,
    /// the last one filled with 0xFF stuffing.
    pub fn psi(&mut self, pid: u16, section: &[u8]) {
        let mut data = vec![0];
        data.extend_from_slice(section);
        let packets = data.len().div_ceil(184);
        data.resize(packets * 184, 0xff);
        for (i, chunk) in data.chunks(184).enumerate() {
            self.packet(pid, i == 0, chunk);
        }
    }

    pub fn pat(&mut self, pmt_pid: u16) {
        let body = [0x00, 0x01, 0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8];
        self.psi(0, &section(0x00, 1, 0, &body));
    }

    /// A PMT listing `(stream_type, pid, descriptors)`.
    pub fn pmt(&mut self, pmt_pid: u16, version: u8, streams: &[(u8, u16, &[u8])]) {
        self.psi(pmt_pid, &pmt_section(version, streams));
    }

    /// A PES over as many packets as needed. `bounded` writes
    /// PES_packet_length; otherwise it is 0.
    pub fn pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        payload: &[u8],
        bounded: bool,
    ) {
        let pes = pes_bytes(stream_id, pts, dts, payload, bounded);
        for (i, chunk) in pes.chunks(184).enumerate() {
            self.packet(pid, i == 0, chunk);
        }
    }
}

pub fn pmt_section(version: u8, streams: &[(u8, u16, &[u8])]) -> Vec<u8> {
    let pcr = streams.first().map_or(0x1fff, |s| s.1);
    let mut body = vec![0xe0 | (pcr >> 8) as u8, pcr as u8, 0xf0, 0x00];
    for (st, pid, desc) in streams {
        body.push(*st);
        body.extend_from_slice(&[0xe0 | (pid >> 8) as u8, *pid as u8]);
        body.extend_from_slice(&[0xf0 | (desc.len() >> 8) as u8, desc.len() as u8]);
        body.extend_from_slice(desc);
    }
    section(0x02, 1, version, &body)
}

pub fn pes_bytes(
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    payload: &[u8],
    bounded: bool,
) -> Vec<u8> {
    let mut header = vec![0x80];
    match dts {
        Some(dts) => {
            header.extend_from_slice(&[0xc0, 10]);
            header.extend_from_slice(&ts_field(3, pts));
            header.extend_from_slice(&ts_field(1, dts));
        }
        None => {
            header.extend_from_slice(&[0x80, 5]);
            header.extend_from_slice(&ts_field(2, pts));
        }
    }
    let len = if bounded {
        header.len() + payload.len()
    } else {
        0
    };
    let mut pes = vec![0, 0, 1, stream_id, (len >> 8) as u8, len as u8];
    pes.extend_from_slice(&header);
    pes.extend_from_slice(payload);
    pes
}

pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
pub const PMT_PID: u16 = 0x1000;

/// A stream of `frames` 25 fps video access units (keyframe every 10) and
/// 48 kHz audio PES (3 ADTS frames each), starting at `start` on the 90 kHz
/// clock (taken mod 2^33).
pub fn av_stream(frames: usize, start: u64) -> Vec<u8> {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(
        PMT_PID,
        0,
        &[(0x1b, VIDEO_PID, &[]), (0x0f, AUDIO_PID, &[])],
    );
    let wrap = 1u64 << 33;
    for i in 0..frames as u64 {
        let dts = (start + i * 3600) % wrap;
        let au = h264_au(i % 10 == 0, 300 + (i as usize * 37) % 500);
        w.pes(VIDEO_PID, 0xe0, dts, Some(dts), &au, false);
        if i % 2 == 0 {
            let mut frames = Vec::new();
            for k in 0..3 {
                frames.extend(adts_frame(20 + k));
            }
            // 3 frames of 1024 samples at 48 kHz last 5760 ticks; every
            // second video frame (7200 ticks) is a little more, fine here.
            w.pes(
                AUDIO_PID,
                0xc0,
                (start + i * 3600) % wrap,
                None,
                &frames,
                true,
            );
        }
    }
    w.out
}

/// Demuxes `data` pushed in the given chunk sizes (cycled), then finishes.
pub fn demux_chunks(data: &[u8], sizes: &[usize]) -> Vec<DemuxEvent> {
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        demux.push(&rest[..n], &mut out);
        rest = &rest[n..];
        i += 1;
    }
    demux.finish(&mut out);
    out
}

pub fn demux(data: &[u8]) -> Vec<DemuxEvent> {
    demux_chunks(data, &[data.len().max(1)])
}

/// Demuxes `data` split in two at `at`.
pub fn demux_split(data: &[u8], at: usize) -> Vec<DemuxEvent> {
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    demux.push(&data[..at], &mut out);
    demux.push(&data[at..], &mut out);
    demux.finish(&mut out);
    out
}

pub fn units(events: &[DemuxEvent]) -> Vec<&ferrocast_media::AccessUnit> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Unit(u) => Some(u),
            _ => None,
        })
        .collect()
}

pub fn warnings(events: &[DemuxEvent]) -> Vec<&ferrocast_media::ts::DemuxWarning> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Warning(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// Is ffmpeg here? Tests that need it print why they skip and return.
pub fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        eprintln!("SKIP: ffmpeg/ffprobe not installed; real-media test not run");
    }
    ok
}

/// Runs ffmpeg with `args` and the output path last; panics on failure.
pub fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// `ffprobe -show_streams`, one key → value map per stream.
pub fn ffprobe_streams(path: &Path) -> Vec<HashMap<String, String>> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "default"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success());
    let mut streams = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line {
            "[STREAM]" => streams.push(HashMap::new()),
            "[/STREAM]" => {}
            _ => {
                if let (Some(s), Some((k, v))) = (streams.last_mut(), line.split_once('=')) {
                    s.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    streams
}
