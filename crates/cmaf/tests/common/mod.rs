//! Test helpers: a minimal, strict box walker (independent of the writer's
//! code) and a parsed view of a `moof` + `mdat` chunk.

#![allow(dead_code, clippy::unwrap_used)]

/// One box found by [`children`]: type and byte ranges within the buffer.
#[derive(Debug, Clone, Copy)]
pub struct BoxRef {
    pub kind: [u8; 4],
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

/// Splits `data[start..end]` into boxes, failing unless the sizes tile the
/// range exactly.
pub fn children(data: &[u8], start: usize, end: usize) -> Result<Vec<BoxRef>, String> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        if end - pos < 8 {
            return Err(format!("{} stray bytes at {pos}", end - pos));
        }
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        if size < 8 || pos + size > end {
            return Err(format!(
                "box {} at {pos} has size {size}, {} bytes left",
                String::from_utf8_lossy(&kind),
                end - pos
            ));
        }
        out.push(BoxRef {
            kind,
            start: pos,
            body: pos + 8,
            end: pos + size,
        });
        pos += size;
    }
    Ok(out)
}

pub fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

pub fn be64(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(d[at..at + 8].try_into().unwrap())
}

/// One sample as read back from a `trun` and the `mdat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSample {
    pub duration: u32,
    pub flags: u32,
    pub composition_offset: i32,
    pub data: Vec<u8>,
}

/// One `traf` as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTraf {
    pub track_id: u32,
    pub tfhd_flags: u32,
    pub tfdt: u64,
    pub trun_version: u8,
    pub trun_flags: u32,
    pub data_offset: i32,
    pub samples: Vec<ParsedSample>,
}

/// A chunk as read back: sequence number and trafs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedChunk {
    pub sequence_number: u32,
    pub trafs: Vec<ParsedTraf>,
}

/// Parses one `moof` + `mdat` chunk that must fill `data` exactly, checking
/// that every size field adds up, that each traf's data_offset points into
/// the mdat, and that the samples tile the mdat payload with no gap.
pub fn parse_chunk(data: &[u8]) -> Result<ParsedChunk, String> {
    let top = children(data, 0, data.len())?;
    let kinds: Vec<&[u8]> = top.iter().map(|b| &b.kind[..]).collect();
    if kinds != [b"moof", b"mdat"] {
        return Err(format!("top-level boxes {kinds:?}"));
    }
    let (moof, mdat) = (top[0], top[1]);
    let inner = children(data, moof.body, moof.end)?;
    if inner.first().map(|b| &b.kind) != Some(b"mfhd") {
        return Err("moof does not start with mfhd".into());
    }
    let mfhd = inner[0];
    if mfhd.end - mfhd.start != 16 {
        return Err("mfhd size".into());
    }
    let sequence_number = be32(data, mfhd.body + 4);
    let mut trafs = Vec::new();
    let mut expected_offset = mdat.body;
    for traf in &inner[1..] {
        if &traf.kind != b"traf" {
            return Err(format!("unexpected {:?} in moof", traf.kind));
        }
        let boxes = children(data, traf.body, traf.end)?;
        let kinds: Vec<&[u8]> = boxes.iter().map(|b| &b.kind[..]).collect();
        if kinds != [b"tfhd", b"tfdt", b"trun"] {
            return Err(format!("traf children {kinds:?}"));
        }
        let (tfhd, tfdt, trun) = (boxes[0], boxes[1], boxes[2]);
        let tfhd_flags = be32(data, tfhd.body) & 0xff_ffff;
        let track_id = be32(data, tfhd.body + 4);
        if tfhd.end - tfhd.start != 16 {
            return Err("tfhd carries more than track_ID".into());
        }
        let tfdt_version = data[tfdt.body];
        let tfdt_value = match tfdt_version {
            1 if tfdt.end - tfdt.start == 20 => be64(data, tfdt.body + 4),
            0 if tfdt.end - tfdt.start == 16 => u64::from(be32(data, tfdt.body + 4)),
            _ => return Err("bad tfdt".into()),
        };
        let trun_version = data[trun.body];
        let trun_flags = be32(data, trun.body) & 0xff_ffff;
        let count = be32(data, trun.body + 4) as usize;
        let mut at = trun.body + 8;
        let data_offset = if trun_flags & 1 != 0 {
            at += 4;
            be32(data, at - 4) as i32
        } else {
            return Err("trun without data_offset".into());
        };
        if trun_flags & 4 != 0 {
            return Err("unexpected first_sample_flags".into());
        }
        let per_sample = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|f| trun_flags & **f != 0)
            .count()
            * 4;
        if at + per_sample * count != trun.end {
            return Err(format!(
                "trun size {} does not match {count} samples of {per_sample} bytes",
                trun.end - trun.start
            ));
        }
        let first = moof.start as i64 + i64::from(data_offset);
        if first != expected_offset as i64 {
            return Err(format!(
                "traf {track_id}: data_offset points at {first}, samples start at {expected_offset}"
            ));
        }
        let mut pos = first as usize;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let mut field = |flag: u32| {
                if trun_flags & flag != 0 {
                    at += 4;
                    Some(be32(data, at - 4))
                } else {
                    None
                }
            };
            let duration = field(0x100).ok_or("no durations")?;
            let size = field(0x200).ok_or("no sizes")? as usize;
            let flags = field(0x400).ok_or("no flags")?;
            let cto = field(0x800).unwrap_or(0);
            let composition_offset = if trun_version == 1 {
                cto as i32
            } else {
                i32::try_from(cto).map_err(|_| "unsigned cto too large")?
            };
            if pos + size > mdat.end {
                return Err(format!("sample of {size} bytes at {pos} runs past mdat"));
            }
            samples.push(ParsedSample {
                duration,
                flags,
                composition_offset,
                data: data[pos..pos + size].to_vec(),
            });
            pos += size;
        }
        expected_offset = pos;
        trafs.push(ParsedTraf {
            track_id,
            tfhd_flags,
            tfdt: tfdt_value,
            trun_version,
            trun_flags,
            data_offset,
            samples,
        });
    }
    if expected_offset != mdat.end {
        return Err(format!(
            "mdat has {} bytes no sample refers to",
            mdat.end - expected_offset
        ));
    }
    Ok(ParsedChunk {
        sequence_number,
        trafs,
    })
}

// ---- Running Debian's ffmpeg/ffprobe, the independent readers ----

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub fn tools_present() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        true
    } else {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        false
    }
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn probe(path: &Path) -> Value {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-of",
            "json",
        ])
        .arg(path));
    assert!(
        out.stderr.is_empty(),
        "ffprobe complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn assert_decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffmpeg decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
