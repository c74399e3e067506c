//! Records read back from the registry (Redis values anyone with access to
//! Redis could have written): leases, node records, events, handovers,
//! rendition plans and bus names. Each is `None` or a record that encodes back to
//! the same record, never a panic.
#![no_main]

use ferrocast_hls::{BusName, RenditionPlan};
use ferrocast_media::StreamName;
use ferrocast_registry::{Event, Handover, Lease, NodeId, NodeRecord, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let stream = StreamName::new("cam").expect("a valid name");
    if let Some(lease) = Lease::decode(&stream, Role::Transcode, &text) {
        assert_eq!(Lease::decode(&stream, Role::Transcode, &lease.encode()), Some(lease));
    }
    let node = NodeId::new("node").expect("a valid id");
    if let Some(record) = NodeRecord::decode(node.clone(), &text) {
        assert_eq!(NodeRecord::decode(node, &record.encode()), Some(record));
    }
    if let Some(event) = Event::decode(&text) {
        assert_eq!(Event::decode(&event.encode()), Some(event));
    }
    if let Some(handover) = Handover::decode(&text) {
        assert_eq!(Handover::decode(&handover.encode()), Some(handover));
    }
    if let Some(plan) = RenditionPlan::decode(&text) {
        assert_eq!(RenditionPlan::decode(&plan.encode()), Some(plan));
    }
    if let Some(name) = BusName::parse(&text) {
        assert_eq!(BusName::parse(&name.to_string()), Some(name));
    }
});
