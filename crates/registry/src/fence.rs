//! The fencing check, kept by whoever receives writes.

use std::collections::HashMap;

use ferrocast_media::StreamName;

use crate::Epoch;

/// Media stamped with an epoch older than the newest seen for its stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale writer for {stream}: epoch {got} is older than {newest}")]
pub struct StaleEpoch {
    /// The stream.
    pub stream: String,
    /// The epoch the writer sent.
    pub got: u64,
    /// The newest epoch seen for the stream.
    pub newest: u64,
}

/// The newest epoch seen per stream: a writer whose lease was superseded
/// (it paused past its TTL, or was cut off while another took over) gets an
/// error, never interleaved output. Sans-IO.
#[derive(Debug, Default, Clone)]
pub struct Fence {
    newest: HashMap<StreamName, Epoch>,
}

impl Fence {
    /// Admit a write for `stream` stamped with `epoch`: equal to or newer
    /// than every epoch seen for the stream. A newer epoch becomes the
    /// newest; from then on older writers are refused.
    pub fn admit(&mut self, stream: &StreamName, epoch: Epoch) -> Result<(), StaleEpoch> {
        match self.newest.get_mut(stream) {
            Some(newest) if epoch < *newest => Err(StaleEpoch {
                stream: stream.as_str().to_owned(),
                got: epoch.0,
                newest: newest.0,
            }),
            Some(newest) => {
                *newest = epoch;
                Ok(())
            }
            None => {
                self.newest.insert(stream.clone(), epoch);
                Ok(())
            }
        }
    }

    /// Forget `stream` (it ended).
    pub fn forget(&mut self, stream: &StreamName) {
        self.newest.remove(stream);
    }

    /// The newest epoch seen for `stream`.
    pub fn newest(&self, stream: &StreamName) -> Option<Epoch> {
        self.newest.get(stream).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Writers interleave arbitrarily; each writes with the epoch of
        /// the lease it got. Once a write of epoch E is admitted, no write
        /// of an epoch below E is ever admitted again: two holders are
        /// never both accepted after the newer one wrote.
        #[test]
        fn no_write_older_than_an_admitted_one(writes in proptest::collection::vec((0u64..6, 0u8..3), 1..200)) {
            let streams: Vec<StreamName> = ["a", "b", "c"].iter().map(|s| StreamName::new(s).unwrap()).collect();
            let mut fence = Fence::default();
            let mut admitted_max = [None::<u64>; 3];
            for (epoch, s) in writes {
                let stream = &streams[s as usize];
                let result = fence.admit(stream, Epoch(epoch));
                match admitted_max[s as usize] {
                    Some(max) if epoch < max => prop_assert!(result.is_err()),
                    _ => {
                        prop_assert!(result.is_ok());
                        admitted_max[s as usize] = Some(epoch);
                    }
                }
            }
        }
    }
}
