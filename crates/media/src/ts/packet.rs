//! One 188-byte transport stream packet (ISO/IEC 13818-1 2.4.3.2) and its
//! adaptation field (2.4.3.4), plus continuity counting (2.4.3.3).

/// "The transport stream packet length is 188 bytes."
pub(crate) const PACKET_SIZE: usize = 188;
/// "sync_byte – The sync_byte is a fixed 8-bit field whose value is
/// '0100 0111' (0x47)."
pub(crate) const SYNC_BYTE: u8 = 0x47;
/// PID 0x1FFF is reserved for null packets (Table 2-3).
pub(crate) const NULL_PID: u16 = 0x1fff;

/// The header fields the demuxer uses, and the payload.
#[derive(Debug)]
pub(crate) struct Packet<'a> {
    pub pid: u16,
    pub transport_error: bool,
    pub payload_unit_start: bool,
    pub scrambled: bool,
    pub continuity_counter: u8,
    /// adaptation_field_control is '01' or '11'.
    pub has_payload: bool,
    /// discontinuity_indicator of the adaptation field.
    ///
    /// The random_access_indicator is not read: keyframes are taken from
    /// the bitstream itself (IDR NAL units), which encoders get right more
    /// often than they set the flag.
    pub discontinuity: bool,
    pub payload: &'a [u8],
}

/// The adaptation_field_length does not fit the packet.
#[derive(Debug)]
pub(crate) struct BadAdaptationField {
    pub pid: u16,
}

/// Parses a packet whose first byte is the sync byte.
pub(crate) fn parse(p: &[u8; PACKET_SIZE]) -> Result<Packet<'_>, BadAdaptationField> {
    let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let afc = (p[3] >> 4) & 0x03;
    let mut packet = Packet {
        pid,
        transport_error: p[1] & 0x80 != 0,
        payload_unit_start: p[1] & 0x40 != 0,
        scrambled: p[3] & 0xc0 != 0,
        continuity_counter: p[3] & 0x0f,
        // Table 2-5: "00 Reserved ... decoders shall discard Transport Stream
        // packets with the adaptation_field_control field set to a value of
        // '00'"; '10' is adaptation field only.
        has_payload: afc & 0x01 != 0,
        discontinuity: false,
        payload: &[],
    };
    let mut start = 4;
    if afc & 0x02 != 0 {
        let len = usize::from(p[4]);
        // 2.4.3.5: "the value of the adaptation_field_length shall be in the
        // range 0 to 182" when a payload follows, "183" when none does.
        let max = if packet.has_payload { 182 } else { 183 };
        if len > max {
            return Err(BadAdaptationField { pid });
        }
        if len > 0 {
            packet.discontinuity = p[5] & 0x80 != 0;
        }
        // Whatever the optional fields, the rest up to `len` is stuffing.
        start = 5 + len;
    }
    if packet.has_payload {
        packet.payload = &p[start..];
    }
    Ok(packet)
}

/// Result of checking one packet's continuity_counter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Continuity {
    /// In sequence (or the first packet seen, or a signalled discontinuity).
    Ok,
    /// A duplicate of the previous packet: ignore it.
    Duplicate,
    /// Packets were lost (or reordered).
    Gap { expected: u8, got: u8 },
}

/// Per-PID continuity_counter state.
#[derive(Debug, Default, Clone)]
pub(crate) struct ContinuityCounter {
    last: Option<u8>,
    duplicate_seen: bool,
}

impl ContinuityCounter {
    pub(crate) fn check(&mut self, packet: &Packet<'_>) -> Continuity {
        // 2.4.3.3: "The continuity_counter shall not be incremented when the
        // adaptation_field_control of the packet equals '00' or '10'."
        if !packet.has_payload {
            return Continuity::Ok;
        }
        let cc = packet.continuity_counter;
        let verdict = match self.last {
            None => Continuity::Ok,
            // 2.4.3.5: a set discontinuity_indicator means the counter "may
            // be discontinuous".
            Some(_) if packet.discontinuity => Continuity::Ok,
            // 2.4.3.3: "duplicate packets may be sent as two, and only two,
            // consecutive Transport Stream packets of the same PID. The
            // duplicate packets shall have the same continuity_counter value
            // as the original packet".
            Some(last) if cc == last && !self.duplicate_seen => {
                self.duplicate_seen = true;
                return Continuity::Duplicate;
            }
            Some(last) if cc == (last + 1) & 0x0f => Continuity::Ok,
            Some(last) => Continuity::Gap {
                expected: (last + 1) & 0x0f,
                got: cc,
            },
        };
        self.last = Some(cc);
        self.duplicate_seen = false;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, afc: u8, cc: u8, af: &[u8]) -> [u8; PACKET_SIZE] {
        let mut p = [0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = (afc << 4) | cc;
        p[4..4 + af.len()].copy_from_slice(af);
        p
    }

    #[test]
    fn reads_header_and_adaptation_field() {
        let p = packet(0x100, 3, 7, &[2, 0x80, 0xff]);
        let pkt = parse(&p).unwrap();
        assert_eq!(pkt.pid, 0x100);
        assert_eq!(pkt.continuity_counter, 7);
        assert!(pkt.discontinuity);
        assert_eq!(pkt.payload.len(), PACKET_SIZE - 7);

        let p = packet(0x100, 2, 7, &[183]);
        let pkt = parse(&p).unwrap();
        assert!(!pkt.has_payload && pkt.payload.is_empty());
        assert!(parse(&packet(0x100, 3, 0, &[183])).is_err());
        assert!(parse(&packet(0x100, 2, 0, &[184])).is_err());
    }

    #[test]
    fn continuity_allows_one_duplicate() {
        let mut cc = ContinuityCounter::default();
        let p = |n| packet(1, 1, n, &[]);
        let check = |cc: &mut ContinuityCounter, n| cc.check(&parse(&p(n)).unwrap());
        assert_eq!(check(&mut cc, 14), Continuity::Ok);
        assert_eq!(check(&mut cc, 15), Continuity::Ok);
        assert_eq!(check(&mut cc, 15), Continuity::Duplicate);
        assert_eq!(check(&mut cc, 0), Continuity::Ok);
        assert_eq!(check(&mut cc, 0), Continuity::Duplicate);
        assert_eq!(
            check(&mut cc, 0),
            Continuity::Gap {
                expected: 1,
                got: 0
            }
        );
        assert_eq!(
            check(&mut cc, 5),
            Continuity::Gap {
                expected: 1,
                got: 5
            }
        );
        // Adaptation-only packets do not count.
        assert_eq!(
            cc.check(&parse(&packet(1, 2, 9, &[183])).unwrap()),
            Continuity::Ok
        );
        assert_eq!(check(&mut cc, 6), Continuity::Ok);
    }
}
