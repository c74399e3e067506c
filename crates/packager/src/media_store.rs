//! The bytes of a stream's live window: init segments, parts (as the CMAF
//! chunks they are written in) and segments (their parts, concatenated).
//!
//! Chunks are reference-counted [`Bytes`]: a segment's body is the same
//! chunks as its parts, never a copy.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One LL-HLS part: the CMAF chunks written so far, and whether it is done.
#[derive(Debug, Clone, Default)]
pub struct PartBuf {
    /// CMAF chunks (moof + mdat) in order.
    pub chunks: Vec<Bytes>,
    /// No more chunks will be added.
    pub complete: bool,
}

impl PartBuf {
    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// True when no chunk was written yet.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// One segment: its parts by index, and whether it is done.
#[derive(Debug, Clone, Default)]
pub struct SegmentBuf {
    /// Parts in index order.
    pub parts: Vec<PartBuf>,
    /// The segment is closed.
    pub complete: bool,
}

impl SegmentBuf {
    /// Every chunk of every part, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().flat_map(|p| p.chunks.iter())
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(PartBuf::len).sum()
    }

    /// True when the segment holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Init segments by generation and segments by media sequence number.
#[derive(Debug, Default)]
pub struct MediaStore {
    inits: BTreeMap<u32, Bytes>,
    segments: BTreeMap<u64, SegmentBuf>,
}

impl MediaStore {
    /// Record an init segment.
    pub fn put_init(&mut self, generation: u32, bytes: Bytes) {
        self.inits.insert(generation, bytes);
    }

    /// An init segment.
    pub fn init(&self, generation: u32) -> Option<&Bytes> {
        self.inits.get(&generation)
    }

    /// A segment (complete or being written).
    pub fn segment(&self, msn: u64) -> Option<&SegmentBuf> {
        self.segments.get(&msn)
    }

    /// A part (complete or being written).
    pub fn part(&self, msn: u64, index: u32) -> Option<&PartBuf> {
        self.segments.get(&msn)?.parts.get(index as usize)
    }

    /// Start a segment.
    pub fn open_segment(&mut self, msn: u64) {
        self.segments.insert(msn, SegmentBuf::default());
    }

    /// Start the next part of segment `msn`; returns its index.
    pub fn open_part(&mut self, msn: u64) -> Option<u32> {
        let segment = self.segments.get_mut(&msn)?;
        segment.parts.push(PartBuf::default());
        u32::try_from(segment.parts.len() - 1).ok()
    }

    /// Append a chunk to the last part of segment `msn`.
    pub fn append_chunk(&mut self, msn: u64, chunk: Bytes) {
        if let Some(part) = self.segments.get_mut(&msn).and_then(|s| s.parts.last_mut()) {
            part.chunks.push(chunk);
        }
    }

    /// Mark the last part of segment `msn` complete.
    pub fn complete_part(&mut self, msn: u64) {
        if let Some(part) = self.segments.get_mut(&msn).and_then(|s| s.parts.last_mut()) {
            part.complete = true;
        }
    }

    /// Mark segment `msn` (and its parts) complete.
    pub fn complete_segment(&mut self, msn: u64) {
        if let Some(segment) = self.segments.get_mut(&msn) {
            segment.complete = true;
            for part in &mut segment.parts {
                part.complete = true;
            }
        }
    }

    /// Drop the segments (and their parts) in `msns`.
    pub fn evict(&mut self, msns: std::ops::Range<u64>) {
        if msns.is_empty() {
            return;
        }
        let kept = self.segments.split_off(&msns.end);
        self.segments.retain(|msn, _| !msns.contains(msn));
        self.segments.extend(kept);
    }

    /// Keep only the init segments whose generation `keep` accepts.
    pub fn retain_inits(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.inits.retain(|generation, _| keep(*generation));
    }

    /// Bytes held, for the memory metric.
    pub fn bytes(&self) -> usize {
        self.inits.values().map(Bytes::len).sum::<usize>()
            + self.segments.values().map(SegmentBuf::len).sum::<usize>()
    }
}
