//! A publisher session's pipeline after the SRT socket (MPEG-TS demuxer,
//! timeline guard, track gate, interleaver) fed arbitrary bytes in
//! arbitrary chunks at arbitrary times: no panic, and what leaves for the
//! bus keeps each track's decode times from going backwards.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrocast_bus::BusMessage;
use ferrocast_ingest::session::SessionPipeline;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Chunk {
    /// Milliseconds since the previous chunk.
    after_ms: u16,
    bytes: Vec<u8>,
}

fuzz_target!(|chunks: Vec<Chunk>| {
    let mut pipeline = SessionPipeline::new();
    let mut now = Instant::now();
    let mut last_dts = HashMap::new();
    let mut check = |message: BusMessage| {
        if let BusMessage::Unit(unit) = message {
            let previous = last_dts.insert(unit.track, unit.dts);
            if let Some(previous) = previous {
                assert!(unit.dts >= previous, "{:?}: {previous:?} then {:?}", unit.track, unit.dts);
            }
        }
    };
    for chunk in chunks.iter().take(512) {
        now += Duration::from_millis(u64::from(chunk.after_ms));
        pipeline.push(&chunk.bytes, now, &mut check);
    }
    pipeline.finish(now, &mut check);
});
