//! A media bus frame from another process, as bytes off the wire: decoding
//! and converting it is an error or a valid message, never a panic; a valid
//! message converts back to a frame that gives the same message.
#![no_main]

use ferrocast_bus_grpc::{Delivery, delivery_of, frame_of, message_of, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = pb::Frame::decode(data) else {
        return;
    };
    if let Ok(Delivery::Message(message)) = delivery_of(frame) {
        let again = message_of(frame_of(&message)).expect("a converted message converts back");
        assert_eq!(again, message);
    }
});
