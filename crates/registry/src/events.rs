//! Lifecycle events and transcode work items.

use ferrocast_media::StreamName;

use crate::{Epoch, NodeId, Role};

/// What happened to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A publisher started it.
    Started,
    /// It ended (the publisher left and did not come back).
    Ended,
    /// A node took a role for it.
    LeaseTaken,
    /// A node gave a role up, or lost it.
    LeaseGone,
    /// The stream's publish credentials changed in the control plane's
    /// database (made, rotated, deleted): ingest processes reload them at
    /// once rather than at their next poll.
    KeysChanged,
    /// The control plane asks the ingest process holding the stream to
    /// drop its publisher (it may come back with a valid key).
    DisconnectRequested,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ended => "ended",
            EventKind::LeaseTaken => "lease_taken",
            EventKind::LeaseGone => "lease_gone",
            EventKind::KeysChanged => "keys_changed",
            EventKind::DisconnectRequested => "disconnect_requested",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            EventKind::Started,
            EventKind::Ended,
            EventKind::LeaseTaken,
            EventKind::LeaseGone,
            EventKind::KeysChanged,
            EventKind::DisconnectRequested,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// To which stream.
    pub stream: StreamName,
    /// The role, node and epoch of a lease event.
    pub lease: Option<(Role, NodeId, Epoch)>,
    /// When, Unix milliseconds.
    pub at_unix_ms: i64,
}

impl Event {
    /// `kind stream at role node epoch` (the last three `-` when absent).
    pub fn encode(&self) -> String {
        let (role, node, epoch) = match &self.lease {
            Some((role, node, epoch)) => (role.as_str(), node.as_str(), epoch.0.to_string()),
            None => ("-", "-", "-".to_owned()),
        };
        format!(
            "{} {} {} {role} {node} {epoch}",
            self.kind.as_str(),
            self.stream.as_str(),
            self.at_unix_ms
        )
    }

    /// The event stored as `value`.
    pub fn decode(value: &str) -> Option<Event> {
        let mut parts = value.split(' ');
        let kind = EventKind::parse(parts.next()?)?;
        let stream = StreamName::new(parts.next()?).ok()?;
        let at_unix_ms = parts.next()?.parse().ok()?;
        let (role, node, epoch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let lease = match (role, node, epoch) {
            ("-", "-", "-") => None,
            (role, node, epoch) => Some((
                Role::parse(role).ok()?,
                NodeId::new(node).ok()?,
                Epoch(epoch.parse().ok()?),
            )),
        };
        Some(Event {
            kind,
            stream,
            lease,
            at_unix_ms,
        })
    }
}

/// Where an event sits in the log (Redis stream entry ids, compared as
/// `millis-seq`); events are returned after a given id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub String);

/// A stream to transcode, delivered to one worker; pending until that
/// worker acknowledges it (once it holds the stream's lease), and
/// reclaimable by another worker if it never does (it died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The entry's id in the work queue.
    pub id: String,
    /// The stream to transcode.
    pub stream: StreamName,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_round_trip() {
        let stream = StreamName::new("cam").unwrap();
        for event in [
            Event {
                kind: EventKind::Started,
                stream: stream.clone(),
                lease: None,
                at_unix_ms: 5,
            },
            Event {
                kind: EventKind::DisconnectRequested,
                stream: stream.clone(),
                lease: None,
                at_unix_ms: 7,
            },
            Event {
                kind: EventKind::KeysChanged,
                stream: stream.clone(),
                lease: None,
                at_unix_ms: 8,
            },
            Event {
                kind: EventKind::LeaseTaken,
                stream,
                lease: Some((Role::Package, NodeId::new("p1").unwrap(), Epoch(9))),
                at_unix_ms: 1_700_000_000_000,
            },
        ] {
            assert_eq!(Event::decode(&event.encode()), Some(event));
        }
        assert_eq!(Event::decode("started cam 5 - -"), None);
        assert_eq!(Event::decode("begun cam 5 - - -"), None);
    }
}
