//! Program specific information (ISO/IEC 13818-1 2.4.4): section assembly
//! across packets, CRC_32, the program association table and the
//! TS program map table.

/// Why a PSI section was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// The pointer_field points past the end of the packet.
    #[error("pointer_field {pointer} points past the end of the packet")]
    BadPointer {
        /// The pointer_field value.
        pointer: u8,
    },
    /// section_length above the 1021 the PAT and PMT allow.
    #[error("section_length {length} exceeds 1021")]
    TooLong {
        /// The section_length field.
        length: usize,
    },
    /// A new section started before the previous one was complete.
    #[error("section cut short by the next payload_unit_start")]
    CutShort,
    /// The CRC_32 does not match.
    #[error("CRC_32 mismatch")]
    Crc,
    /// The section's fields do not add up.
    #[error("malformed {table} section")]
    Malformed {
        /// "PAT" or "PMT".
        table: &'static str,
    },
}

/// 2.4.4.8/2.4.4.9: "section_length ... shall not exceed 1021 (0x3FD)".
const MAX_SECTION_LENGTH: usize = 1021;
/// table_id, flags and section_length.
const SECTION_HEADER: usize = 3;

/// Reassembles PSI sections from the payloads of one PID.
#[derive(Debug, Default, Clone)]
pub(crate) struct SectionAssembler {
    buf: Vec<u8>,
    /// Inside a run of sections (after a payload_unit_start, before stuffing).
    active: bool,
}

impl SectionAssembler {
    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forget any partial section (after a lost packet).
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// Feeds one packet payload; complete sections are appended to
    /// `sections`, problems to `errors`.
    pub(crate) fn push(
        &mut self,
        payload_unit_start: bool,
        payload: &[u8],
        sections: &mut Vec<Vec<u8>>,
        errors: &mut Vec<SectionError>,
    ) {
        let mut data = payload;
        if payload_unit_start {
            // 2.4.4.2: "pointer_field – ... the number of bytes, immediately
            // following the pointer_field until the first byte of the first
            // section that is present in the payload".
            let Some((&pointer, rest)) = data.split_first() else {
                self.reset();
                return;
            };
            let Some((tail, start)) = rest.split_at_checked(usize::from(pointer)) else {
                self.reset();
                errors.push(SectionError::BadPointer { pointer });
                return;
            };
            if self.active && !self.buf.is_empty() {
                self.consume(tail, sections, errors);
                if !self.buf.is_empty() {
                    errors.push(SectionError::CutShort);
                }
            }
            self.buf.clear();
            self.active = true;
            data = start;
        }
        if self.active {
            self.consume(data, sections, errors);
        }
    }

    fn consume(
        &mut self,
        mut data: &[u8],
        sections: &mut Vec<Vec<u8>>,
        errors: &mut Vec<SectionError>,
    ) {
        while !data.is_empty() {
            // 2.4.4: "Once a stuffing byte [0xFF] appears, all following bytes
            // until the end of the transport stream packet shall also be
            // stuffing bytes" (0xFF is a forbidden table_id).
            if self.buf.is_empty() && data[0] == 0xff {
                self.active = false;
                return;
            }
            let want = SECTION_HEADER + self.section_length().unwrap_or(0);
            let take = want.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some(len) = self.section_length() {
                if len > MAX_SECTION_LENGTH {
                    // Refused before it is buffered: memory stays bounded.
                    errors.push(SectionError::TooLong { length: len });
                    self.reset();
                    return;
                }
                if self.buf.len() == SECTION_HEADER + len {
                    sections.push(std::mem::take(&mut self.buf));
                }
            }
        }
    }

    fn section_length(&self) -> Option<usize> {
        (self.buf.len() >= SECTION_HEADER)
            .then(|| (usize::from(self.buf[1] & 0x0f) << 8) | usize::from(self.buf[2]))
    }
}

/// CRC_32 of Annex A: polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no
/// reflection, no final XOR. Over a whole section including its CRC_32
/// field the result is 0 ("gives a zero output of the registers in the
/// decoder").
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from(((crc >> 24) as u8) ^ b)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The long-form section header shared by the PAT and PMT (Tables 2-30, 2-33).
struct LongSection<'a> {
    current_next: bool,
    last_section_number: u8,
    /// Between the header and the CRC_32.
    body: &'a [u8],
}

fn long_section<'a>(
    section: &'a [u8],
    table_id: u8,
    table: &'static str,
) -> Result<LongSection<'a>, SectionError> {
    // 8 header bytes and a 4-byte CRC_32 at least.
    if section.len() < 12 || section[0] != table_id || section[1] & 0x80 == 0 {
        return Err(SectionError::Malformed { table });
    }
    if crc32_mpeg2(section) != 0 {
        return Err(SectionError::Crc);
    }
    Ok(LongSection {
        current_next: section[5] & 0x01 != 0,
        last_section_number: section[7],
        body: &section[8..section.len() - 4],
    })
}

/// One program_association_section (Table 2-30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pat {
    /// "current_next_indicator ... When set to '0', it indicates that the
    /// table sent is not yet applicable".
    pub current: bool,
    /// True when this section is the whole table.
    pub complete: bool,
    /// (program_number, program_map_PID), network PID entries left out.
    pub programs: Vec<(u16, u16)>,
}

pub(crate) fn parse_pat(section: &[u8]) -> Result<Pat, SectionError> {
    const TABLE: &str = "PAT";
    let s = long_section(section, 0x00, TABLE)?;
    if !s.body.len().is_multiple_of(4) {
        return Err(SectionError::Malformed { table: TABLE });
    }
    let programs = s
        .body
        .chunks_exact(4)
        .filter_map(|e| {
            let program_number = u16::from_be_bytes([e[0], e[1]]);
            let pid = u16::from_be_bytes([e[2] & 0x1f, e[3]]);
            // "program_number ... If the program_number is 0x0000, then the
            // following PID reference shall be the network PID."
            (program_number != 0).then_some((program_number, pid))
        })
        .collect();
    Ok(Pat {
        current: s.current_next,
        complete: s.last_section_number == 0,
        programs,
    })
}

/// What an elementary stream is to Ferrocast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// H.264 in Annex-B (stream_type 0x1B).
    H264,
    /// H.265 in Annex-B (stream_type 0x24).
    H265,
    /// AAC in ADTS (stream_type 0x0F).
    AacAdts,
    /// AV1 (stream_type 0x06 with an `AV01` registration_descriptor or an
    /// AV1 video descriptor), start-code framed.
    Av1,
    /// Opus (stream_type 0x06 with an `Opus` registration_descriptor), mono
    /// or stereo.
    Opus {
        /// Channels from the DVB extension descriptor's channel_config_code,
        /// 2 when it is absent.
        channels: u8,
    },
    /// Media Ferrocast recognises but cannot handle.
    Unsupported(&'static str),
    /// Not worth reporting (private data we cannot name, section streams).
    Ignored,
}

/// One elementary stream of a PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PmtStream {
    pub pid: u16,
    pub stream_type: u8,
    pub kind: StreamKind,
}

/// One TS_program_map_section (Table 2-33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pmt {
    pub current: bool,
    pub streams: Vec<PmtStream>,
}

pub(crate) fn parse_pmt(section: &[u8]) -> Result<Pmt, SectionError> {
    const TABLE: &str = "PMT";
    let malformed = SectionError::Malformed { table: TABLE };
    let s = long_section(section, 0x02, TABLE)?;
    let body = s.body;
    if body.len() < 4 {
        return Err(malformed);
    }
    // PCR_PID (13 bits, skipped), then program_info_length.
    let program_info_length = usize::from(u16::from_be_bytes([body[2] & 0x0f, body[3]]));
    let mut rest = body
        .get(4 + program_info_length..)
        .ok_or(malformed.clone())?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(malformed);
        }
        let stream_type = rest[0];
        let pid = u16::from_be_bytes([rest[1] & 0x1f, rest[2]]);
        let es_info_length = usize::from(u16::from_be_bytes([rest[3] & 0x0f, rest[4]]));
        let descriptors = rest.get(5..5 + es_info_length).ok_or(malformed.clone())?;
        streams.push(PmtStream {
            pid,
            stream_type,
            kind: classify(stream_type, descriptors),
        });
        rest = &rest[5 + es_info_length..];
    }
    Ok(Pmt {
        current: s.current_next,
        streams,
    })
}

/// Names a stream_type (Table 2-34, and the registered user-private values
/// broadcasters use).
fn classify(stream_type: u8, descriptors: &[u8]) -> StreamKind {
    use StreamKind::{AacAdts, H264, H265, Ignored, Unsupported};
    // Opus is stream_type 0x06 (private data): see `private_data`.
    match stream_type {
        0x1b => H264,
        0x0f => AacAdts,
        0x01 => Unsupported("MPEG-1 video"),
        0x02 => Unsupported("MPEG-2 video"),
        0x03 => Unsupported("MPEG-1 audio"),
        0x04 => Unsupported("MPEG-2 audio"),
        0x06 => private_data(descriptors),
        0x10 => Unsupported("MPEG-4 Part 2 video"),
        0x11 => Unsupported("AAC LATM"),
        0x15 => Unsupported("ID3 timed metadata"),
        0x1c => Unsupported("MPEG-4 audio without transport syntax"),
        0x1f => Unsupported("H.264 SVC"),
        0x20 => Unsupported("H.264 MVC"),
        // Table 2-34: "Rec. ITU-T H.265 | ISO/IEC 23008-2 video stream or an
        // HEVC temporal video sub-bitstream".
        0x24 => H265,
        0x2d | 0x2e => Unsupported("MPEG-H 3D audio"),
        0x32 => Unsupported("JPEG XS"),
        0x33 => Unsupported("VVC"),
        0x81 => Unsupported("AC-3"),
        0x86 => Unsupported("SCTE-35 splice information"),
        0x87 => Unsupported("E-AC-3"),
        0xd1 => Unsupported("Dirac"),
        0xea => Unsupported("VC-1"),
        // Sections (0x05, DSM-CC 0x0A..=0x0D) and anything else that is not
        // a PES stream of known media: nothing for a viewer is lost.
        _ => Ignored,
    }
}

/// stream_type 0x06 (PES private data) says nothing by itself; its
/// descriptors may (2.6.8 registration_descriptor, ETSI EN 300 468 Annex D).
fn private_data(descriptors: &[u8]) -> StreamKind {
    let mut name = None;
    let mut opus = false;
    let mut av1 = false;
    // Opus in MPEG-TS: the DVB extension descriptor (tag 0x7F) with
    // descriptor_tag_extension 0x80 carries `channel_config_code`.
    let mut opus_config = None;
    let mut rest = descriptors;
    while let [tag, len, tail @ ..] = rest {
        let Some(body) = tail.get(..usize::from(*len)) else {
            break;
        };
        let found = match (*tag, body) {
            (0x05, [a, b, c, d, ..]) => match &[*a, *b, *c, *d] {
                b"AC-3" => Some("AC-3"),
                b"EAC3" => Some("E-AC-3"),
                b"Opus" => {
                    opus = true;
                    None
                }
                // "Carriage of AV1 in MPEG-2 TS" §"AV1 registration
                // descriptor": "The presence of a Registration Descriptor
                // ... is mandatory with the format_identifier field set to
                // 'AV01'".
                b"AV01" => {
                    av1 = true;
                    None
                }
                b"HEVC" => Some("HEVC"),
                b"KLVA" => Some("KLV metadata"),
                b"BSSD" => Some("SMPTE 302M audio"),
                _ => None,
            },
            (0x56, _) => Some("DVB teletext"),
            (0x59, _) => Some("DVB subtitles"),
            (0x6a, _) => Some("AC-3"),
            (0x7a, _) => Some("E-AC-3"),
            (0x7b, _) => Some("DTS"),
            (0x7c, _) => Some("AAC (DVB AAC descriptor)"),
            (0x7f, [0x15, ..]) => Some("AC-4"),
            // The AV1_video_descriptor: "descriptor_tag ... 0x80",
            // "descriptor_length ... 4", "marker ... 1", "version ... 1".
            // Accepted alone too, for muxers that leave the registration
            // out; the marker and version byte guard against another
            // user-private descriptor with the same tag.
            (0x80, [0x81, _, _, _]) => {
                av1 = true;
                None
            }
            (0x7f, [0x80, rest @ ..]) => {
                opus = true;
                opus_config = rest.first().copied();
                None
            }
            _ => None,
        };
        name = name.or(found);
        rest = &tail[usize::from(*len).min(tail.len())..];
    }
    if av1 {
        return StreamKind::Av1;
    }
    if opus {
        return match opus_config {
            // "channel_config_code" 0x01 and 0x02: mono and stereo in one
            // Opus stream (mapping family 0); absent, ffmpeg and the
            // specification's default are stereo.
            None => StreamKind::Opus { channels: 2 },
            Some(channels @ (1 | 2)) => StreamKind::Opus { channels },
            // 0x00 is dual mono (two uncoupled streams) and 0x03..=0x08 and
            // 0x80.. need channel mapping family 1 or 255.
            Some(_) => StreamKind::Unsupported("Opus (multichannel or dual mono)"),
        };
    }
    name.map_or(StreamKind::Ignored, StreamKind::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends a CRC_32 so the section checks.
    fn with_crc(mut s: Vec<u8>) -> Vec<u8> {
        let crc = crc32_mpeg2(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    #[test]
    fn crc_of_known_pat() {
        // The PAT ffmpeg writes: program 1 on PMT PID 0x1000.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1,
            0x04, 0xb2,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0);
        assert_eq!(parse_pat(&pat).unwrap().programs, vec![(1, 0x1000)]);
        let mut bad = pat;
        bad[9] ^= 1;
        assert_eq!(parse_pat(&bad), Err(SectionError::Crc));
    }

    #[test]
    fn pmt_kinds() {
        let mut s = vec![
            0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00,
        ];
        s.extend_from_slice(&[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
        s.extend_from_slice(&[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
        s.extend_from_slice(&[
            0x06, 0xe1, 0x02, 0xf0, 0x06, 0x05, 0x04, b'O', b'p', b'u', b's',
        ]);
        s.extend_from_slice(&[0x06, 0xe1, 0x03, 0xf0, 0x00]);
        s.extend_from_slice(&[0x24, 0xe1, 0x04, 0xf0, 0x00]);
        // AV1: registration 'AV01' then the AV1 video descriptor; the
        // descriptor alone; a 0x80 descriptor that is not AV1's.
        s.extend_from_slice(&[
            0x06, 0xe1, 0x05, 0xf0, 0x0c, 0x05, 0x04, b'A', b'V', b'0', b'1', 0x80, 0x04, 0x81,
            0x08, 0x0c, 0x00,
        ]);
        s.extend_from_slice(&[
            0x06, 0xe1, 0x06, 0xf0, 0x06, 0x80, 0x04, 0x81, 0x08, 0x0c, 0x00,
        ]);
        s.extend_from_slice(&[
            0x06, 0xe1, 0x07, 0xf0, 0x06, 0x80, 0x04, 0x01, 0x08, 0x0c, 0x00,
        ]);
        let len = s.len() - 3 + 4;
        s[2] = len as u8;
        let pmt = parse_pmt(&with_crc(s)).unwrap();
        let kinds: Vec<_> = pmt.streams.iter().map(|s| (s.pid, s.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0x100, StreamKind::H264),
                (0x101, StreamKind::AacAdts),
                (0x102, StreamKind::Opus { channels: 2 }),
                (0x103, StreamKind::Ignored),
                (0x104, StreamKind::H265),
                (0x105, StreamKind::Av1),
                (0x106, StreamKind::Av1),
                (0x107, StreamKind::Ignored),
            ]
        );
    }

    #[test]
    fn assembles_sections_across_packets() {
        let section = with_crc(vec![
            0x00, 0xb0, 0x11, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x00, 0x02,
            0xf0, 0x10,
        ]);
        let mut asm = SectionAssembler::default();
        let (mut out, mut errs) = (Vec::new(), Vec::new());
        // pointer_field 2 skips the tail of an earlier (unseen) section.
        let mut first = vec![2, 0xaa, 0xbb];
        first.extend_from_slice(&section[..5]);
        asm.push(true, &first, &mut out, &mut errs);
        assert!(out.is_empty());
        let mut second = section[5..].to_vec();
        second.extend_from_slice(&[0xff, 0xff]);
        asm.push(false, &second, &mut out, &mut errs);
        assert_eq!(out, vec![section.clone()]);
        assert!(errs.is_empty());
        assert_eq!(parse_pat(&out[0]).unwrap().programs.len(), 2);

        asm.push(true, &[200, 0], &mut out, &mut errs);
        assert_eq!(errs, vec![SectionError::BadPointer { pointer: 200 }]);
        asm.push(true, &[0, 0x00, 0xbf, 0xff], &mut out, &mut errs);
        assert_eq!(errs[1], SectionError::TooLong { length: 0xfff });
        assert_eq!(asm.buffered(), 0);
    }
}
