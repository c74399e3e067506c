//! RTP ingest on arbitrary datagrams: the packet check in front of the `rtp`
//! crate, the jitter buffer and the MPEG-TS-over-RTP path. Errors, never
//! panics. Input: datagrams prefixed by a one-byte length and a one-byte
//! arrival delay in milliseconds.
#![no_main]

use std::time::{Duration, Instant};

use ferrocast_ingest::rtp::{ReorderConfig, TsOverRtp, packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut rx = TsOverRtp::new(ReorderConfig {
        window: Duration::from_millis(20),
        max_packets: 64,
    });
    let mut out = Vec::new();
    let mut rest = data;
    while let [len, delay, tail @ ..] = rest {
        let (datagram, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        now += Duration::from_millis(u64::from(*delay));
        let _ = packet::parse(datagram);
        let _ = rx.push_datagram(datagram, now, &mut out);
        rx.poll(now, &mut out);
        out.clear();
        rest = tail;
    }
    rx.finish(&mut out);
});
