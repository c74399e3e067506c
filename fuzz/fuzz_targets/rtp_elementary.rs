//! H.264 (RFC 6184) and AAC (RFC 3640) depacketisers and the SDP session
//! core on arbitrary datagrams: errors, never panics. Input: datagrams
//! prefixed by a one-byte length and a one-byte arrival delay in
//! milliseconds whose low bit picks the port (video or audio).
#![no_main]

use std::time::{Duration, Instant};

use ferrocast_ingest::rtp::aac::{AacDepacketizer, AacRtpConfig};
use ferrocast_ingest::rtp::h264::H264Depacketizer;
use ferrocast_ingest::rtp::{Media, ReorderConfig, SdpOverRtp, SdpSession, packet};
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
    m=video 40000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n\
    a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
    m=audio 40002 RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\n\
    a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
    a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\n";

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
    let mut h264 = H264Depacketizer::new();
    let mut aac = AacDepacketizer::new(AacRtpConfig::hbr(48_000));
    let (mut units, mut frames, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let mut rest = data;
    while let [len, delay, tail @ ..] = rest {
        let (datagram, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        now += Duration::from_millis(u64::from(*delay >> 1));
        let media = if delay & 1 == 0 {
            Media::Video
        } else {
            Media::Audio
        };
        if let Ok(p) = packet::parse(datagram) {
            let _ = h264.push(&p, &mut units);
            let _ = aac.push(&p, &mut frames);
        }
        let _ = rx.push_datagram(media, datagram, now, &mut out);
        rx.poll(now, &mut out);
        units.clear();
        frames.clear();
        out.clear();
        rest = tail;
    }
    h264.finish(&mut units);
    rx.finish(&mut out);
});
