//! A real-time send schedule for an MPEG-TS file, from its PCRs.
//!
//! The file is cut into fixed-size messages (1316 bytes: seven TS packets,
//! what SRT senders put in a datagram). Each message is due when its last
//! byte would have arrived at the rate the PCRs give: ISO/IEC 13818-1
//! §2.4.2.2 has bytes between two consecutive PCRs arrive at a constant
//! rate, so the time of any byte is interpolated between the PCRs around it
//! (and extrapolated at the average rate past the last one).
//!
//! ffmpeg's MPEG-TS muxer (VBR, the default) stamps the PCR as the DTS of
//! the frame being written minus its mux delay, so a schedule built from it
//! releases each frame about when `ffmpeg -re` would have written it.

use std::time::Duration;

/// One TS packet.
pub const PACKET_LEN: usize = 188;

/// Seven TS packets: the payload of one SRT message.
pub const MESSAGE_LEN: usize = 7 * PACKET_LEN;

/// 27 MHz PCR ticks in one 33-bit PCR base wrap.
const PCR_WRAP: u64 = (1 << 33) * 300;

/// Why no schedule could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The input does not start with a TS sync byte.
    NotTransportStream,
    /// Fewer than two distinct PCR values: nothing to pace by.
    TooFewPcrs {
        /// How many PCRs were found.
        found: usize,
    },
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::NotTransportStream => write!(f, "not an MPEG-TS (no sync byte at 0)"),
            ScheduleError::TooFewPcrs { found } => {
                write!(
                    f,
                    "{found} PCR(s) found; at least two distinct ones are needed"
                )
            }
        }
    }
}

impl std::error::Error for ScheduleError {}

/// The PCR of a TS packet in 27 MHz ticks, if it carries one.
pub fn packet_pcr(packet: &[u8]) -> Option<u64> {
    if packet.len() < 12 || packet[0] != 0x47 {
        return None;
    }
    let adaptation_field = (packet[3] >> 4) & 0b10 != 0;
    let af_len = packet[4];
    let pcr_flag = packet[5] & 0x10 != 0;
    if !adaptation_field || af_len < 7 || !pcr_flag {
        return None;
    }
    let p = &packet[6..12];
    let base = (u64::from(p[0]) << 25)
        | (u64::from(p[1]) << 17)
        | (u64::from(p[2]) << 9)
        | (u64::from(p[3]) << 1)
        | (u64::from(p[4]) >> 7);
    let ext = (u64::from(p[4] & 1) << 8) | u64::from(p[5]);
    Some(base * 300 + ext)
}

/// When each `message_len`-byte message of `ts` is due, from the start of
/// the file. Times never go backwards.
pub fn schedule(ts: &[u8], message_len: usize) -> Result<Vec<Duration>, ScheduleError> {
    if ts.first() != Some(&0x47) {
        return Err(ScheduleError::NotTransportStream);
    }
    // (byte offset of the packet, extended PCR)
    let mut points: Vec<(u64, u64)> = Vec::new();
    let mut wraps = 0u64;
    let mut last_raw: Option<u64> = None;
    for (i, packet) in ts.chunks_exact(PACKET_LEN).enumerate() {
        let Some(raw) = packet_pcr(packet) else {
            continue;
        };
        if last_raw.is_some_and(|last| raw + PCR_WRAP / 2 < last) {
            wraps += 1;
        }
        last_raw = Some(raw);
        points.push(((i * PACKET_LEN) as u64, raw + wraps * PCR_WRAP));
    }
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return Err(ScheduleError::TooFewPcrs { found: 0 });
    };
    if last.1 <= first.1 || last.0 <= first.0 {
        return Err(ScheduleError::TooFewPcrs {
            found: points.len(),
        });
    }
    let time_at = |offset: u64| -> u64 {
        let next = points.partition_point(|&(o, _)| o <= offset);
        if next == 0 {
            return first.1;
        }
        let (o1, p1) = points[next - 1];
        let (o2, p2) = match points.get(next) {
            Some(&point) => point,
            // Past the last PCR: the file's average rate.
            None => {
                let extra = u128::from(offset - o1) * u128::from(last.1 - first.1)
                    / u128::from(last.0 - first.0);
                return p1 + extra as u64;
            }
        };
        if p2 <= p1 {
            return p1;
        }
        p1 + (u128::from(offset - o1) * u128::from(p2 - p1) / u128::from(o2 - o1)) as u64
    };
    let mut due = Vec::with_capacity(ts.len().div_ceil(message_len.max(1)));
    let mut latest = first.1;
    for (k, message) in ts.chunks(message_len.max(1)).enumerate() {
        let end = (k * message_len.max(1) + message.len()) as u64;
        latest = latest.max(time_at(end - 1));
        // 27 MHz ticks to nanoseconds.
        due.push(Duration::from_nanos((latest - first.1) * 1000 / 27));
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pcr: Option<u64>) -> Vec<u8> {
        let mut p = vec![0xff; PACKET_LEN];
        p[0] = 0x47;
        p[1] = 0x01;
        p[2] = 0x00;
        match pcr {
            Some(pcr) => {
                let (base, ext) = (pcr / 300, pcr % 300);
                p[3] = 0x30;
                p[4] = 7;
                p[5] = 0x10;
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = ((base & 1) << 7) as u8 | 0x7e | (ext >> 8) as u8;
                p[11] = ext as u8;
            }
            None => p[3] = 0x10,
        }
        p
    }

    #[test]
    fn reads_pcr_base_and_extension() {
        let pcr = 1_234_567_890 * 300 + 299;
        assert_eq!(packet_pcr(&packet(Some(pcr))), Some(pcr));
        assert_eq!(packet_pcr(&packet(None)), None);
    }

    #[test]
    fn interpolates_between_pcrs() {
        // PCR at packets 0 and 14, 10 ms apart (270 000 ticks); 28 packets.
        let start = 27_000_000;
        let mut ts = Vec::new();
        for i in 0..28 {
            let pcr = match i {
                0 => Some(start),
                14 => Some(start + 270_000),
                _ => None,
            };
            ts.extend(packet(pcr));
        }
        let due = schedule(&ts, MESSAGE_LEN).expect("schedule");
        assert_eq!(due.len(), 4);
        // Message 0 ends at byte 1315 of the 2632 between the PCRs.
        let expected = |byte: u64| Duration::from_nanos(byte * 270_000 / 2632 * 1000 / 27);
        assert_eq!(due[0], expected(1315));
        assert_eq!(due[1], expected(2631));
        // Past the last PCR: the average rate continues.
        assert_eq!(due[3], expected(4 * 1316 - 1));
        assert!(due.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn survives_a_pcr_wrap() {
        let mut ts = packet(Some(PCR_WRAP - 27_000));
        ts.extend(packet(None));
        ts.extend(packet(Some(27_000)));
        let due = schedule(&ts, PACKET_LEN).expect("schedule");
        // The last byte before the second PCR: just under 2 ms later.
        assert!(due[1] > Duration::from_micros(1900) && due[1] < Duration::from_millis(2));
    }

    #[test]
    fn refuses_what_it_cannot_pace() {
        assert_eq!(
            schedule(&[0; 188], 1316),
            Err(ScheduleError::NotTransportStream)
        );
        assert_eq!(
            schedule(&packet(None), 1316),
            Err(ScheduleError::TooFewPcrs { found: 0 })
        );
    }
}
