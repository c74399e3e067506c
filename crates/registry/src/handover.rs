//! A planned handover of a stream's transcode between two processes.

use crate::NodeId;

/// Where a planned handover of one stream stands, recorded in the
/// registry (`handover:{stream}`) by the two transcoders taking part, in
/// this order: the draining one offers, the one that took the offered work
/// item says when it transcodes the stream on standby, the draining one
/// says where it stopped and lets its lease go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// `from` is draining: whoever takes the stream's work item transcodes
    /// it on standby first.
    Offered {
        /// The draining holder.
        from: NodeId,
    },
    /// `to` transcodes the stream on standby and can take it over.
    Ready {
        /// The draining holder.
        from: NodeId,
        /// The standby.
        to: NodeId,
    },
    /// `from` published everything before the source keyframe at `at`
    /// (90 kHz) and nothing after, and gave its lease up: `to` takes it.
    Cut {
        /// The drained holder.
        from: NodeId,
        /// The standby that takes over.
        to: NodeId,
        /// The keyframe's pts, where `to`'s output starts.
        at: i64,
    },
}

impl Handover {
    /// The draining holder.
    pub fn from(&self) -> &NodeId {
        match self {
            Handover::Offered { from }
            | Handover::Ready { from, .. }
            | Handover::Cut { from, .. } => from,
        }
    }

    /// `offered FROM`, `ready FROM TO` or `cut FROM TO AT`.
    pub fn encode(&self) -> String {
        match self {
            Handover::Offered { from } => format!("offered {from}"),
            Handover::Ready { from, to } => format!("ready {from} {to}"),
            Handover::Cut { from, to, at } => format!("cut {from} {to} {at}"),
        }
    }

    /// The record stored as `value`.
    pub fn decode(value: &str) -> Option<Handover> {
        let parts: Vec<&str> = value.split(' ').collect();
        let node = |i: usize| parts.get(i).and_then(|p| NodeId::new(p).ok());
        match (parts.first().copied()?, parts.len()) {
            ("offered", 2) => Some(Handover::Offered { from: node(1)? }),
            ("ready", 3) => Some(Handover::Ready {
                from: node(1)?,
                to: node(2)?,
            }),
            ("cut", 4) => Some(Handover::Cut {
                from: node(1)?,
                to: node(2)?,
                at: parts[3].parse().ok()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn handovers_round_trip_and_garbage_is_refused() {
        let (a, b) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap());
        for record in [
            Handover::Offered { from: a.clone() },
            Handover::Ready {
                from: a.clone(),
                to: b.clone(),
            },
            Handover::Cut {
                from: a.clone(),
                to: b,
                at: -5,
            },
        ] {
            assert_eq!(Handover::decode(&record.encode()), Some(record.clone()));
            assert_eq!(record.from(), &a);
        }
        for bad in [
            "",
            "offered",
            "offered a b",
            "ready a",
            "cut a b x",
            "cut a b 1 2",
            "x a",
        ] {
            assert_eq!(Handover::decode(bad), None, "{bad:?}");
        }
    }
}
