//! The SDP reader on arbitrary text: an error, never a panic.
#![no_main]

use ferrocast_ingest::rtp::sdp::{SdpSession, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(&text);
    let _ = SdpSession::from_sdp(&text);
});
