//! A small, independent ISO-BMFF reader for checking fragments in tests:
//! box structure, and per-traf track id, tfdt and trun sample durations.

/// One track fragment run as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafInfo {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub durations: Vec<u32>,
    pub first_sample_is_sync: Option<bool>,
}

/// Top-level boxes of a buffer as (type, payload); panics on a bad size.
pub fn children(buf: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        assert!(pos + 8 <= buf.len(), "truncated box header at {pos}");
        let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&buf[pos + 4..pos + 8]).into_owned();
        let (header, size) = if size == 1 {
            let large = u64::from_be_bytes(buf[pos + 8..pos + 16].try_into().unwrap()) as usize;
            (16, large)
        } else {
            (8, size)
        };
        assert!(
            size >= header && pos + size <= buf.len(),
            "box {kind} at {pos} overruns: size {size}, buffer {}",
            buf.len()
        );
        out.push((kind, &buf[pos + header..pos + size]));
        pos += size;
    }
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Every traf in every moof of `buf`, in order.
pub fn trafs(buf: &[u8]) -> Vec<TrafInfo> {
    let mut out = Vec::new();
    for (kind, moof) in children(buf) {
        if kind != "moof" {
            continue;
        }
        for (kind, traf) in children(moof) {
            if kind != "traf" {
                continue;
            }
            let mut info = TrafInfo {
                track_id: 0,
                base_decode_time: 0,
                durations: Vec::new(),
                first_sample_is_sync: None,
            };
            let mut default_duration = 0;
            let mut default_flags = None;
            for (kind, body) in children(traf) {
                match kind.as_str() {
                    "tfhd" => {
                        let flags = be32(body, 0) & 0xff_ffff;
                        info.track_id = be32(body, 4);
                        let mut at = 8;
                        if flags & 0x1 != 0 {
                            at += 8;
                        }
                        if flags & 0x2 != 0 {
                            at += 4;
                        }
                        if flags & 0x8 != 0 {
                            default_duration = be32(body, at);
                            at += 4;
                        }
                        if flags & 0x10 != 0 {
                            at += 4;
                        }
                        if flags & 0x20 != 0 {
                            default_flags = Some(be32(body, at));
                        }
                    }
                    "tfdt" => {
                        info.base_decode_time = if body[0] == 1 {
                            u64::from_be_bytes(body[4..12].try_into().unwrap())
                        } else {
                            u64::from(be32(body, 4))
                        };
                    }
                    "trun" => {
                        let flags = be32(body, 0) & 0xff_ffff;
                        let count = be32(body, 4) as usize;
                        let mut at = 8;
                        if flags & 0x1 != 0 {
                            at += 4;
                        }
                        let mut first_flags = None;
                        if flags & 0x4 != 0 {
                            first_flags = Some(be32(body, at));
                            at += 4;
                        }
                        for i in 0..count {
                            let mut duration = default_duration;
                            if flags & 0x100 != 0 {
                                duration = be32(body, at);
                                at += 4;
                            }
                            if flags & 0x200 != 0 {
                                at += 4;
                            }
                            let mut sample_flags = if i == 0 {
                                first_flags.or(default_flags)
                            } else {
                                default_flags
                            };
                            if flags & 0x400 != 0 {
                                sample_flags = Some(be32(body, at));
                                at += 4;
                            }
                            if flags & 0x800 != 0 {
                                at += 4;
                            }
                            if i == 0 {
                                info.first_sample_is_sync =
                                    sample_flags.map(|f| f & 0x0001_0000 == 0);
                            }
                            info.durations.push(duration);
                        }
                    }
                    _ => {}
                }
            }
            out.push(info);
        }
    }
    out
}

/// `tfdt` of a segment's first video fragment (the track of its first
/// traf), the video duration of the whole segment, and whether it starts
/// with a sync sample.
pub fn video_timing(segment: &[u8]) -> (u64, u64, bool) {
    let trafs = trafs(segment);
    let video = trafs[0].track_id;
    let duration = trafs
        .iter()
        .filter(|t| t.track_id == video)
        .flat_map(|t| t.durations.iter())
        .map(|&d| u64::from(d))
        .sum();
    (
        trafs[0].base_decode_time,
        duration,
        trafs[0].first_sample_is_sync == Some(true),
    )
}
