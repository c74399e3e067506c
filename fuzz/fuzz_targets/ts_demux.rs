//! MPEG-TS demuxer: arbitrary bytes in arbitrary chunking never panic, stay
//! within the memory bound, and give the same events however they are split.
#![no_main]

use ferrocast_media::ts::{DemuxEvent, Demuxer, MAX_PES_SIZE, MAX_STREAMS};
use libfuzzer_sys::fuzz_target;

const BOUND: usize = MAX_STREAMS * MAX_PES_SIZE + 64 * 1024;

fn run(chunks: &[&[u8]]) -> Vec<DemuxEvent> {
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        demux.push(chunk, &mut out);
        assert!(demux.buffered_bytes() <= BOUND);
    }
    demux.finish(&mut out);
    out
}

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose a split point and a chunk size; the rest
    // is the stream.
    let [a, b, data @ ..] = input else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*a, *b])) % (data.len() + 1);
    let whole = run(&[data]);
    let (head, tail) = data.split_at(split);
    assert_eq!(run(&[head, tail]), whole, "split at {split}");
    let chunk = usize::from(*a % 64) + 1;
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    assert_eq!(run(&chunks), whole, "chunks of {chunk}");
});
