//! HEVC (RFC 7798) depacketiser, RTCP sender report parsing and an HEVC
//! SDP session with rtcp-mux on arbitrary datagrams: errors, never panics.
//! Input: datagrams prefixed by a one-byte length and a one-byte arrival
//! delay in milliseconds whose low bit sends the datagram to the RTCP
//! path too.
#![no_main]

use std::time::{Duration, Instant};

use ferrocast_ingest::rtp::h265::H265Depacketizer;
use ferrocast_ingest::rtp::{Media, ReorderConfig, SdpOverRtp, SdpSession, packet, sync};
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\nm=video 40000 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=rtcp-mux\r\n\
    a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ; \
    sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZWaSTK8BaAgAAAwACAAADADIQ; sprop-pps=RAHBcrRiQA==\r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(session) = SdpSession::from_sdp(SDP) else {
        return;
    };
    let mut now = Instant::now();
    let mut rx = SdpOverRtp::new(
        &session,
        ReorderConfig {
            window: Duration::from_millis(20),
            max_packets: 64,
        },
    );
    let mut h265 = H265Depacketizer::new();
    let (mut units, mut out) = (Vec::new(), Vec::new());
    let mut rest = data;
    while let [len, delay, tail @ ..] = rest {
        let (datagram, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        now += Duration::from_millis(u64::from(*delay >> 1));
        if let Ok(p) = packet::parse(datagram) {
            let _ = h265.push(&p, &mut units);
        }
        if delay & 1 == 1 {
            let _ = sync::sender_reports(datagram);
            let _ = rx.push_rtcp(Media::Video, datagram, now, &mut out);
        } else {
            let _ = rx.push_datagram(Media::Video, datagram, now, &mut out);
        }
        rx.poll(now, &mut out);
        units.clear();
        out.clear();
        rest = tail;
    }
    h265.finish(&mut units);
    rx.finish(&mut out);
});
