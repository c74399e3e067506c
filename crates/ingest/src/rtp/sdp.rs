//! A small, strict SDP reader (RFC 8866, which obsoletes RFC 4566) for the
//! session descriptions `ffmpeg -f rtp ... -sdp_file` writes: one H.264
//! (RFC 6184) or HEVC (RFC 7798) video stream and/or one AAC audio stream
//! (RFC 3640 `mpeg4-generic`), each on its own UDP port, with its RTCP on
//! the next port up, on `a=rtcp:PORT` (RFC 3605) or on the same port with
//! `a=rtcp-mux` (RFC 5761).
//!
//! [`parse`] reads the generic structure (`v=`, `c=`, `m=`, `a=rtpmap`,
//! `a=fmtp`); [`SdpSession::from_sdp`] picks out what Ferrocast can
//! receive and refuses the rest with an [`SdpError`] that names it.
//!
//! ```
//! let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
//!            m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n\
//!            a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n";
//! let session = ferrocast_ingest::rtp::sdp::SdpSession::from_sdp(sdp).unwrap();
//! assert_eq!(session.video.unwrap().port, 5004);
//! ```

use std::net::IpAddr;

use bytes::Bytes;
use ferrocast_media::h264::{H264Error, nal_type, nal_unit_type, params_from_parameter_sets};
use ferrocast_media::h265::H265Error;
use ferrocast_media::{AacParams, CodecParams, aac, h265};

use super::aac::AacRtpConfig;

/// Why an SDP cannot be received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// A line that is not `<type>=<value>` with a one-letter type.
    #[error("SDP line {line}: not of the form <letter>=<value>")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// The first line is not `v=0`.
    #[error("SDP: the first line must be v=0")]
    Version,
    /// A field with the wrong number or kind of values.
    #[error("SDP line {line}: malformed {field}= field")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The field's letter (`m`, `c`) or attribute name (`rtpmap`, `fmtp`).
        field: &'static str,
    },
    /// A transport other than `RTP/AVP`.
    #[error("SDP line {line}: transport {proto:?} is not supported (RTP/AVP only)")]
    Transport {
        /// 1-based line number.
        line: usize,
        /// The transport found.
        proto: String,
    },
    /// A media section with other than one payload type.
    #[error("SDP m={media}: {count} payload types; exactly one is supported")]
    PayloadTypes {
        /// The media type.
        media: String,
        /// How many were listed.
        count: usize,
    },
    /// A media section without `a=rtpmap` for its payload type.
    #[error("SDP m={media}: no a=rtpmap for payload type {payload_type}")]
    NoRtpmap {
        /// The media type.
        media: String,
        /// The payload type.
        payload_type: u8,
    },
    /// A codec other than H.264 or HEVC video or MPEG4-GENERIC audio.
    #[error(
        "SDP m={media}: codec {encoding:?} is not supported (H264 or H265 video, MPEG4-GENERIC audio)"
    )]
    Codec {
        /// The media type.
        media: String,
        /// The `a=rtpmap` encoding name and clock rate.
        encoding: String,
    },
    /// A second video or audio section.
    #[error("SDP: more than one {media} stream; one video and one audio are supported")]
    Duplicate {
        /// The media type.
        media: &'static str,
    },
    /// Nothing receivable at all.
    #[error("SDP has no video or audio stream")]
    NoMedia,
    /// A multicast connection address (this ingest does not join groups).
    #[error("SDP connection address {addr} is multicast, which is not supported")]
    Multicast {
        /// The address.
        addr: IpAddr,
    },
    /// A format parameter with a value that is not supported.
    #[error("SDP m={media}: {parameter}={value:?} is not supported")]
    Parameter {
        /// The media type.
        media: &'static str,
        /// The parameter name.
        parameter: &'static str,
        /// The value found.
        value: String,
    },
    /// A format parameter that is required but missing.
    #[error("SDP m={media}: a=fmtp has no {parameter}")]
    MissingParameter {
        /// The media type.
        media: &'static str,
        /// The parameter name.
        parameter: &'static str,
    },
    /// `sprop-parameter-sets` present but not base64 SPS and PPS.
    #[error("SDP sprop-parameter-sets: {reason}")]
    ParameterSets {
        /// What is wrong.
        reason: String,
    },
    /// The SPS in `sprop-parameter-sets` does not parse.
    #[error("SDP sprop-parameter-sets: {0}")]
    Sps(#[from] H264Error),
    /// `sprop-vps`, `sprop-sps` and `sprop-pps` are not one base64 VPS, SPS
    /// and PPS that parse.
    #[error("SDP HEVC parameter sets (sprop-vps/sps/pps): {reason}")]
    HevcParameterSets {
        /// What is wrong.
        reason: String,
    },
    /// The HEVC SPS in `sprop-sps` does not parse.
    #[error("SDP sprop-sps: {0}")]
    HevcSps(#[from] H265Error),
    /// An `a=rtcp:` attribute that is not a port (RFC 3605).
    #[error("SDP line {line}: malformed a=rtcp: attribute")]
    Rtcp {
        /// 1-based line number.
        line: usize,
    },
    /// The AAC `config` is not hex or not a usable AudioSpecificConfig.
    #[error("SDP AAC config: {reason}")]
    AudioConfig {
        /// What is wrong.
        reason: String,
    },
}

/// One `m=` section, generically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `video`, `audio`, ...
    pub media: String,
    /// The UDP port the sender sends to.
    pub port: u16,
    /// `RTP/AVP`, ...
    pub proto: String,
    /// The payload types listed.
    pub formats: Vec<u8>,
    /// The `c=` address in force (the section's, else the session's).
    pub connection: Option<IpAddr>,
    /// `a=rtpmap:` values by payload type: (PT, "ENCODING/RATE[/PARAMS]").
    pub rtpmaps: Vec<(u8, String)>,
    /// `a=fmtp:` values by payload type.
    pub fmtps: Vec<(u8, String)>,
    /// `a=rtcp:PORT` (RFC 3605), if given.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` (RFC 5761): RTCP on the RTP port.
    pub rtcp_mux: bool,
}

/// The parts of a session description this reader understands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// The media sections in order.
    pub media: Vec<MediaSection>,
}

/// Read the structure of an SDP.
///
/// RFC 8866 §5: "An SDP description consists of a number of lines of text
/// of the form: `<type>=<value>` where `<type>` MUST be exactly one
/// case-significant character and `<value>` is structured text ... Whitespace
/// MUST NOT be used on either side of the "=" sign." Lines end in CRLF (or
/// LF, which §5 asks parsers to accept). Unknown fields and attributes are
/// skipped (§5: "An SDP parser MUST ignore any session or media
/// description that it does not understand" applies to attributes, §6).
pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let mut session = SessionDescription::default();
    let mut session_connection = None;
    let mut first = true;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let mut chars = raw.chars();
        let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
            return Err(SdpError::Syntax { line });
        };
        if !kind.is_ascii_lowercase() {
            return Err(SdpError::Syntax { line });
        }
        let value = chars.as_str();
        // §5: "An SDP description ... begins with a "v=" line".
        if std::mem::take(&mut first) {
            if kind != 'v' || value != "0" {
                return Err(SdpError::Version);
            }
            continue;
        }
        match kind {
            'c' => {
                let addr = connection(value).ok_or(SdpError::Field { line, field: "c" })?;
                match session.media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => session_connection = Some(addr),
                }
            }
            'm' => session.media.push(media_line(value, line)?),
            'a' => {
                let Some(m) = session.media.last_mut() else {
                    continue;
                };
                if let Some(rest) = value.strip_prefix("rtpmap:") {
                    let entry = pt_value(rest).ok_or(SdpError::Field {
                        line,
                        field: "rtpmap",
                    })?;
                    m.rtpmaps.push(entry);
                } else if let Some(rest) = value.strip_prefix("fmtp:") {
                    let entry = pt_value(rest).ok_or(SdpError::Field {
                        line,
                        field: "fmtp",
                    })?;
                    m.fmtps.push(entry);
                } else if let Some(rest) = value.strip_prefix("rtcp:") {
                    // RFC 3605 §2.1: "rtcp-attribute = "a=rtcp:" port
                    // [nettype space addrtype space connection-address]".
                    let port = rest.split(' ').next().and_then(|p| p.parse::<u16>().ok());
                    m.rtcp_port = Some(port.filter(|p| *p > 0).ok_or(SdpError::Rtcp { line })?);
                } else if value == "rtcp-mux" {
                    m.rtcp_mux = true;
                }
            }
            _ => {}
        }
    }
    if first {
        return Err(SdpError::Version);
    }
    session.connection = session_connection;
    for m in &mut session.media {
        m.connection = m.connection.or(session_connection);
    }
    Ok(session)
}

/// §5.7: "c=<nettype> <addrtype> <connection-address>", with an optional
/// "/<ttl>" or "/<number of addresses>" after a multicast address.
fn connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split(' ');
    let (Some("IN"), Some(addrtype), Some(addr), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let addr = addr.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// §5.14: "m=<media> <port> <proto> <fmt> ...", the port possibly
/// "<port>/<number of ports>" (refused: one port per stream here).
fn media_line(value: &str, line: usize) -> Result<MediaSection, SdpError> {
    let bad = SdpError::Field { line, field: "m" };
    let mut parts = value.split(' ');
    let (Some(media), Some(port), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad);
    };
    if media.is_empty()
        || !media
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad);
    }
    let port: u16 = port.parse().map_err(|_| bad.clone())?;
    if proto != "RTP/AVP" {
        return Err(SdpError::Transport {
            line,
            proto: proto.to_string(),
        });
    }
    let formats = parts
        .map(|f| f.parse::<u8>().ok().filter(|pt| *pt < 128))
        .collect::<Option<Vec<u8>>>()
        .ok_or(bad)?;
    Ok(MediaSection {
        media: media.to_string(),
        port,
        proto: proto.to_string(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        rtcp_port: None,
        rtcp_mux: false,
    })
}

/// `<payload type> <value>` of `a=rtpmap:` and `a=fmtp:`.
fn pt_value(rest: &str) -> Option<(u8, String)> {
    let (pt, value) = rest.split_once(' ')?;
    let pt: u8 = pt.parse().ok().filter(|pt| *pt < 128)?;
    Some((pt, value.trim().to_string()))
}

/// Where a stream's RTCP packets arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rtcp {
    /// On their own UDP port: `a=rtcp:PORT`, else the RTP port + 1 (RFC
    /// 3550 §11: "RTCP ... SHOULD use the next higher (odd) port number").
    Port(u16),
    /// On the RTP port (`a=rtcp-mux`, RFC 5761).
    Mux,
}

impl Rtcp {
    fn of(m: &MediaSection) -> Rtcp {
        if m.rtcp_mux {
            Rtcp::Mux
        } else {
            Rtcp::Port(m.rtcp_port.unwrap_or(m.port.wrapping_add(1)))
        }
    }
}

/// The video codec of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (`H264/90000`, RFC 6184).
    H264,
    /// HEVC (`H265/90000`, RFC 7798).
    H265,
}

/// The video stream of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    /// UDP port from the `m=` line.
    pub port: u16,
    /// Where its RTCP arrives.
    pub rtcp: Rtcp,
    /// RTP payload type.
    pub payload_type: u8,
    /// H.264 or HEVC.
    pub codec: VideoCodec,
    /// Parameters from `sprop-parameter-sets` (H.264) or `sprop-vps`,
    /// `sprop-sps` and `sprop-pps` (HEVC), when the SDP carries them;
    /// otherwise they come in-band with the first parameter sets.
    pub params: Option<CodecParams>,
}

/// The AAC stream of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    /// UDP port from the `m=` line.
    pub port: u16,
    /// Where its RTCP arrives.
    pub rtcp: Rtcp,
    /// RTP payload type.
    pub payload_type: u8,
    /// Parameters from `config` (the AudioSpecificConfig).
    pub params: AacParams,
    /// AU header layout and RTP clock.
    pub rtp: AacRtpConfig,
}

/// What Ferrocast receives of a session: at most one H.264 or HEVC and one
/// AAC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpSession {
    /// The video stream, if any.
    pub video: Option<VideoStream>,
    /// The audio stream, if any.
    pub audio: Option<AudioStream>,
}

impl SdpSession {
    /// Parse an SDP and check that Ferrocast can receive it.
    pub fn from_sdp(text: &str) -> Result<SdpSession, SdpError> {
        let description = parse(text)?;
        let mut session = SdpSession {
            video: None,
            audio: None,
        };
        for m in &description.media {
            // §5.14: "a port value of zero ... indicates that the media
            // stream is not used".
            if m.port == 0 {
                continue;
            }
            if let Some(addr) = m.connection.filter(IpAddr::is_multicast) {
                return Err(SdpError::Multicast { addr });
            }
            let [payload_type] = m.formats[..] else {
                return Err(SdpError::PayloadTypes {
                    media: m.media.clone(),
                    count: m.formats.len(),
                });
            };
            let rtpmap = m
                .rtpmaps
                .iter()
                .find(|(pt, _)| *pt == payload_type)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| SdpError::NoRtpmap {
                    media: m.media.clone(),
                    payload_type,
                })?;
            let fmtp = m
                .fmtps
                .iter()
                .find(|(pt, _)| *pt == payload_type)
                .map_or("", |(_, v)| v.as_str());
            let codec_error = || SdpError::Codec {
                media: m.media.clone(),
                encoding: rtpmap.to_string(),
            };
            // §6.6: "a=rtpmap:<payload type> <encoding name>/<clock rate>
            // [/<encoding parameters>]"; encoding names are
            // case-insensitive (RFC 4855 §3).
            let mut fields = rtpmap.split('/');
            let encoding = fields.next().unwrap_or_default().to_ascii_uppercase();
            let rate: u32 = fields
                .next()
                .and_then(|r| r.parse().ok())
                .filter(|r| *r > 0)
                .ok_or_else(codec_error)?;
            match (m.media.as_str(), encoding.as_str()) {
                ("video", "H264") => {
                    // RFC 6184 §8.2.1: "The clock rate in the "a=rtpmap"
                    // line MUST be 90000."
                    if rate != 90_000 {
                        return Err(codec_error());
                    }
                    if session.video.is_some() {
                        return Err(SdpError::Duplicate { media: "video" });
                    }
                    session.video = Some(VideoStream {
                        port: m.port,
                        rtcp: Rtcp::of(m),
                        payload_type,
                        codec: VideoCodec::H264,
                        params: h264_fmtp(fmtp)?.map(CodecParams::H264),
                    });
                }
                ("video", "H265") => {
                    // RFC 7798 §7.1: "The clock rate MUST be 90000."
                    if rate != 90_000 {
                        return Err(codec_error());
                    }
                    if session.video.is_some() {
                        return Err(SdpError::Duplicate { media: "video" });
                    }
                    session.video = Some(VideoStream {
                        port: m.port,
                        rtcp: Rtcp::of(m),
                        payload_type,
                        codec: VideoCodec::H265,
                        params: h265_fmtp(fmtp)?.map(CodecParams::H265),
                    });
                }
                ("audio", "MPEG4-GENERIC") => {
                    if session.audio.is_some() {
                        return Err(SdpError::Duplicate { media: "audio" });
                    }
                    let (params, rtp) = aac_fmtp(fmtp, rate)?;
                    session.audio = Some(AudioStream {
                        port: m.port,
                        rtcp: Rtcp::of(m),
                        payload_type,
                        params,
                        rtp,
                    });
                }
                _ => return Err(codec_error()),
            }
        }
        if session.video.is_none() && session.audio.is_none() {
            return Err(SdpError::NoMedia);
        }
        Ok(session)
    }

    /// The UDP ports of the streams, video first.
    pub fn ports(&self) -> Vec<u16> {
        let video = self.video.as_ref().map(|v| v.port);
        let audio = self.audio.as_ref().map(|a| a.port);
        video.into_iter().chain(audio).collect()
    }
}

/// RFC 8866 §6.15 `a=fmtp:<format> <format specific parameters>`; media
/// type parameters are `name=value` separated by `;` (RFC 6184 §8.1, RFC
/// 3640 §4.1), names case-insensitive. ffmpeg writes `; ` or `;`.
fn fmtp_params(fmtp: &str) -> impl Iterator<Item = (String, &str)> {
    fmtp.split(';').filter_map(|p| {
        let p = p.trim();
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        (!name.is_empty()).then(|| (name.trim().to_ascii_lowercase(), value.trim()))
    })
}

/// RFC 7798 §7.1 parameters of an HEVC stream.
fn h265_fmtp(fmtp: &str) -> Result<Option<ferrocast_media::H265Params>, SdpError> {
    let unsupported = |parameter: &'static str, value: &str| SdpError::Parameter {
        media: "video",
        parameter,
        value: value.to_string(),
    };
    let mut sprop: [Option<&str>; 3] = [None; 3];
    for (name, value) in fmtp_params(fmtp) {
        match name.as_str() {
            // §7.1: "sprop-max-don-diff: ... If sprop-max-don-diff is
            // greater than 0 ... the DONL field ... MUST be present" in
            // every packet. This receiver reads no DONL field.
            "sprop-max-don-diff" if value != "0" => {
                return Err(unsupported("sprop-max-don-diff", value));
            }
            // §7.1: "sprop-depack-buf-nalus ... greater than 0 ... the
            // transmission order ... may differ from the decoding order"
            // (needs DON): refused for the same reason.
            "sprop-depack-buf-nalus" if value != "0" => {
                return Err(unsupported("sprop-depack-buf-nalus", value));
            }
            // §7.1: "tx-mode ... "SRST" ... single RTP stream", the default;
            // "MRST" and "MRMT" spread one bitstream over several streams.
            "tx-mode" if !value.eq_ignore_ascii_case("SRST") => {
                return Err(unsupported("tx-mode", value));
            }
            // "sprop-vps: ... one or more VPS NAL units ... base64
            // representation", likewise sprop-sps and sprop-pps, each a
            // comma-separated list.
            "sprop-vps" => sprop[0] = Some(value),
            "sprop-sps" => sprop[1] = Some(value),
            "sprop-pps" => sprop[2] = Some(value),
            _ => {}
        }
    }
    if sprop.iter().all(Option::is_none) {
        return Ok(None);
    }
    let bad = |reason: String| SdpError::HevcParameterSets { reason };
    let mut sets = Vec::with_capacity(3);
    for (name, value, expected) in [
        ("sprop-vps", sprop[0], h265::nal_type::VPS),
        ("sprop-sps", sprop[1], h265::nal_type::SPS),
        ("sprop-pps", sprop[2], h265::nal_type::PPS),
    ] {
        let value = value.ok_or_else(|| bad(format!("{name} is missing")))?;
        let mut first = None;
        for b64 in value.split(',').filter(|s| !s.is_empty()) {
            let nal = base64_decode(b64).ok_or_else(|| bad(format!("{b64:?} is not base64")))?;
            if h265::nal_unit_type(&nal) != Some(expected) {
                return Err(bad(format!("{name} holds a NAL unit of another type")));
            }
            first.get_or_insert(nal);
        }
        sets.push(Bytes::from(
            first.ok_or_else(|| bad(format!("{name} is empty")))?,
        ));
    }
    let [vps, sps, pps]: [Bytes; 3] = sets
        .try_into()
        .map_err(|_| bad("needs a VPS, an SPS and a PPS".to_string()))?;
    Ok(Some(h265::params_from_parameter_sets(vps, sps, pps)?))
}

/// RFC 6184 §8.1 parameters of the video stream.
fn h264_fmtp(fmtp: &str) -> Result<Option<ferrocast_media::H264Params>, SdpError> {
    let mut sprop = None;
    for (name, value) in fmtp_params(fmtp) {
        match name.as_str() {
            // "When the value of packetization-mode is equal to 0 or
            // packetization-mode is not present, the single NAL mode MUST
            // be used. ... equal to 1, the non-interleaved mode MUST be
            // used. ... equal to 2, the interleaved mode MUST be used."
            "packetization-mode" if value != "0" && value != "1" => {
                return Err(SdpError::Parameter {
                    media: "video",
                    parameter: "packetization-mode",
                    value: value.to_string(),
                });
            }
            // "sprop-parameter-sets: ... a comma-separated (',') list of
            // parameter set NAL units ... base64 representation".
            "sprop-parameter-sets" => sprop = Some(value),
            _ => {}
        }
    }
    let Some(sprop) = sprop else {
        return Ok(None);
    };
    let mut sps = None;
    let mut pps = None;
    for b64 in sprop.split(',').filter(|s| !s.is_empty()) {
        let nal = base64_decode(b64).ok_or_else(|| SdpError::ParameterSets {
            reason: format!("{b64:?} is not base64"),
        })?;
        match nal_unit_type(&nal) {
            Some(nal_type::SPS) if sps.is_none() => sps = Some(nal),
            Some(nal_type::PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return Err(SdpError::ParameterSets {
            reason: "needs one SPS and one PPS".to_string(),
        });
    };
    Ok(Some(params_from_parameter_sets(
        Bytes::from(sps),
        Bytes::from(pps),
    )?))
}

/// RFC 3640 §4.1 parameters of the audio stream, and §3.3.6 AAC-hbr /
/// §3.3.5 AAC-lbr modes.
fn aac_fmtp(fmtp: &str, clock_rate: u32) -> Result<(AacParams, AacRtpConfig), SdpError> {
    let unsupported = |parameter: &'static str, value: &str| SdpError::Parameter {
        media: "audio",
        parameter,
        value: value.to_string(),
    };
    let mut mode = None;
    let mut config = None;
    let mut lengths = [None::<u8>; 3];
    for (name, value) in fmtp_params(fmtp) {
        let small = |max: u8| value.parse::<u8>().ok().filter(|v| *v <= max);
        match name.as_str() {
            // "streamType: ... 5 (audio)". ffmpeg leaves it out.
            "streamtype" if value != "5" => return Err(unsupported("streamtype", value)),
            "mode" => {
                if !value.eq_ignore_ascii_case("AAC-hbr") && !value.eq_ignore_ascii_case("AAC-lbr")
                {
                    return Err(unsupported("mode", value));
                }
                mode = Some(value);
            }
            "config" => config = Some(value),
            "sizelength" => {
                lengths[0] = Some(small(16).ok_or_else(|| unsupported("sizelength", value))?)
            }
            "indexlength" => {
                lengths[1] = Some(small(8).ok_or_else(|| unsupported("indexlength", value))?)
            }
            "indexdeltalength" => {
                lengths[2] = Some(small(8).ok_or_else(|| unsupported("indexdeltalength", value))?)
            }
            // AU header fields this reader does not parse: refuse rather
            // than misread every packet.
            p @ ("ctsdeltalength"
            | "dtsdeltalength"
            | "randomaccessindication"
            | "streamstateindication"
            | "auxiliarydatasizelength")
                if value != "0" =>
            {
                let parameter = match p {
                    "ctsdeltalength" => "CTSDeltaLength",
                    "dtsdeltalength" => "DTSDeltaLength",
                    "randomaccessindication" => "randomAccessIndication",
                    "streamstateindication" => "streamStateIndication",
                    _ => "auxiliaryDataSizeLength",
                };
                return Err(unsupported(parameter, value));
            }
            "constantsize" => return Err(unsupported("constantSize", value)),
            _ => {}
        }
    }
    if mode.is_none() {
        return Err(SdpError::MissingParameter {
            media: "audio",
            parameter: "mode",
        });
    }
    let hex = config.ok_or(SdpError::MissingParameter {
        media: "audio",
        parameter: "config",
    })?;
    let asc = hex_decode(hex).ok_or_else(|| SdpError::AudioConfig {
        reason: format!("{hex:?} is not hex"),
    })?;
    let params = aac::parse_audio_specific_config(&asc).map_err(|e| SdpError::AudioConfig {
        reason: e.to_string(),
    })?;
    let [Some(size_length), index_length, index_delta_length] = lengths else {
        return Err(SdpError::MissingParameter {
            media: "audio",
            parameter: "sizelength",
        });
    };
    if size_length == 0 {
        return Err(unsupported("sizelength", "0"));
    }
    // One frame is 1024 samples at the AudioSpecificConfig's rate; the RTP
    // clock is the rtpmap's (the same for AAC-LC).
    let frame_ticks = u32::try_from(1024 * u64::from(clock_rate) / u64::from(params.sample_rate))
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| SdpError::AudioConfig {
            reason: format!(
                "RTP clock {clock_rate} Hz does not fit the {} Hz sample rate",
                params.sample_rate
            ),
        })?;
    Ok((
        params,
        AacRtpConfig {
            size_length,
            index_length: index_length.unwrap_or(0),
            index_delta_length: index_delta_length.unwrap_or(0),
            clock_rate,
            frame_ticks,
        },
    ))
}

/// Standard base64 (RFC 4648 §4), padding optional; `None` on any other
/// character or a dangling 6-bit group.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone 6-bit group cannot end a valid encoding.
    (bits < 6).then_some(out)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// Written by Debian's ffmpeg 5.1 for `-map 0:v -c:v libx264 -bf 0 -g 25
    /// -f rtp rtp://127.0.0.1:40000 -map 1:a -c:a aac -f rtp
    /// rtp://127.0.0.1:40002 -sdp_file x.sdp` (libx264 without a global
    /// header: no sprop-parameter-sets; `sine` is 44.1 kHz mono).
    const FFMPEG_IN_BAND: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
        a=tool:libavformat LIBAVFORMAT_VERSION\r\n\
        m=video 40000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
        m=audio 40002 RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\nb=AS:69\r\n\
        a=rtpmap:97 MPEG4-GENERIC/44100/1\r\n\
        a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=120856E500\r\n";

    /// The same with `-flags +global_header` and a 48 kHz sine.
    const FFMPEG_SPROP: &str = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nt=0 0\n\
        a=tool:libavformat LIBAVFORMAT_VERSION\n\
        m=video 40000 RTP/AVP 96\nc=IN IP4 127.0.0.1\na=rtpmap:96 H264/90000\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADayyAoP2AiAAAAMAIAAABkHihUk=,aOvDyyLA; profile-level-id=64000D\n\
        m=audio 40002 RTP/AVP 97\nc=IN IP4 127.0.0.1\nb=AS:69\n\
        a=rtpmap:97 MPEG4-GENERIC/48000/1\n\
        a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=118856E500\n";

    /// Video only: ffmpeg puts `c=` at session level then.
    const FFMPEG_VIDEO_ONLY: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat LIBAVFORMAT_VERSION\r\n\
        m=video 40000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n";

    /// Written by Debian's ffmpeg 5.1 for `-c:v libx265 -flags +global_header
    /// -f rtp rtp://127.0.0.1:40000 -sdp_file x.sdp` (320x240 testsrc2).
    const FFMPEG_HEVC: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat LIBAVFORMAT_VERSION\r\n\
        m=video 40000 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n\
        a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ; \
        sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZWaSTK8BaAgAAAwACAAADADIQ; \
        sprop-pps=RAHBcrRiQA==\r\n";

    #[test]
    fn reads_ffmpeg_hevc_sdp() {
        let s = SdpSession::from_sdp(FFMPEG_HEVC).unwrap();
        let v = s.video.unwrap();
        assert_eq!(
            (v.port, v.codec, v.rtcp),
            (40000, VideoCodec::H265, Rtcp::Port(40001))
        );
        let Some(CodecParams::H265(p)) = v.params else {
            panic!("{:?}", v.params)
        };
        assert_eq!((p.width, p.height), (320, 240));
        assert_eq!(p.general_profile_idc, 1);
        // In-band parameter sets: no fmtp at all.
        let bare = "v=0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=rtcp-mux\r\n";
        let v = SdpSession::from_sdp(bare).unwrap().video.unwrap();
        assert_eq!(
            (v.codec, v.params, v.rtcp),
            (VideoCodec::H265, None, Rtcp::Mux)
        );
        let with = |from: &str, to: &str| {
            assert!(FFMPEG_HEVC.contains(from), "{from}");
            SdpSession::from_sdp(&FFMPEG_HEVC.replace(from, to)).unwrap_err()
        };
        assert!(matches!(
            with("sprop-pps=", "sprop-max-don-diff=2; sprop-pps="),
            SdpError::Parameter {
                parameter: "sprop-max-don-diff",
                ..
            }
        ));
        assert!(matches!(
            with("sprop-pps=", "tx-mode=MRST; sprop-pps="),
            SdpError::Parameter {
                parameter: "tx-mode",
                ..
            }
        ));
        assert!(matches!(
            with(
                "sprop-pps=RAHBcrRiQA==",
                "sprop-pps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ"
            ),
            SdpError::HevcParameterSets { .. }
        ));
        assert!(matches!(
            with(
                "; \
        sprop-pps=RAHBcrRiQA==",
                ""
            ),
            SdpError::HevcParameterSets { .. }
        ));
        assert!(matches!(
            with("H265/90000", "H265/48000"),
            SdpError::Codec { .. }
        ));
        assert!(matches!(
            SdpSession::from_sdp(&FFMPEG_HEVC.replace("a=rtpmap", "a=rtcp:x\r\na=rtpmap")),
            Err(SdpError::Rtcp { line: 8 })
        ));
        let s = SdpSession::from_sdp(&FFMPEG_HEVC.replace("a=rtpmap", "a=rtcp:6000\r\na=rtpmap"))
            .unwrap();
        assert_eq!(s.video.unwrap().rtcp, Rtcp::Port(6000));
    }

    #[test]
    fn reads_ffmpeg_sdp_with_in_band_parameter_sets() {
        let s = SdpSession::from_sdp(FFMPEG_IN_BAND).unwrap();
        let v = s.video.as_ref().unwrap();
        assert_eq!(
            (v.port, v.payload_type, v.params.is_none()),
            (40000, 96, true)
        );
        let a = s.audio.as_ref().unwrap();
        assert_eq!((a.port, a.payload_type), (40002, 97));
        assert_eq!((a.params.sample_rate, a.params.channels), (44_100, 1));
        assert_eq!(a.params.codec_string(), "mp4a.40.2");
        assert_eq!(a.rtp, AacRtpConfig::hbr(44_100));
        assert_eq!(s.ports(), vec![40000, 40002]);
        let d = parse(FFMPEG_IN_BAND).unwrap();
        assert_eq!(d.media[0].connection, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn reads_ffmpeg_sdp_with_sprop_parameter_sets() {
        let s = SdpSession::from_sdp(FFMPEG_SPROP).unwrap();
        let v = s.video.unwrap();
        assert_eq!((v.codec, v.rtcp), (VideoCodec::H264, Rtcp::Port(40001)));
        let p = v.params.unwrap();
        assert_eq!(p.resolution(), Some((320, 240)));
        assert_eq!(p.codec_string(), "avc1.64000d");
        assert_eq!(s.audio.unwrap().params.sample_rate, 48_000);
        let s = SdpSession::from_sdp(FFMPEG_VIDEO_ONLY).unwrap();
        assert!(s.audio.is_none());
        assert_eq!(
            parse(FFMPEG_VIDEO_ONLY).unwrap().media[0].connection,
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn refuses_what_it_cannot_receive_by_name() {
        let with = |from: &str, to: &str| {
            assert!(FFMPEG_IN_BAND.contains(from), "{from}");
            SdpSession::from_sdp(&FFMPEG_IN_BAND.replace(from, to)).unwrap_err()
        };
        assert!(matches!(
            with("packetization-mode=1", "packetization-mode=2"),
            SdpError::Parameter {
                parameter: "packetization-mode",
                ..
            }
        ));
        assert!(matches!(
            with("H264/90000", "VP8/90000"),
            SdpError::Codec { encoding, .. } if encoding == "VP8/90000"
        ));
        assert!(matches!(
            with("MPEG4-GENERIC/44100/1", "opus/48000/2"),
            SdpError::Codec { .. }
        ));
        assert!(matches!(
            with(" config=120856E500", ""),
            SdpError::MissingParameter {
                parameter: "config",
                ..
            }
        ));
        assert!(matches!(
            with("config=120856E500", "config=12G8"),
            SdpError::AudioConfig { .. }
        ));
        assert!(matches!(
            with("mode=AAC-hbr", "mode=generic"),
            SdpError::Parameter {
                parameter: "mode",
                ..
            }
        ));
        assert!(matches!(
            with(
                "packetization-mode=1",
                "packetization-mode=1;sprop-parameter-sets=aOvDyyLA"
            ),
            SdpError::ParameterSets { .. }
        ));
        assert!(matches!(
            with("packetization-mode=1", "sprop-parameter-sets=Z2Q!,aOvDyyLA"),
            SdpError::ParameterSets { .. }
        ));
        assert!(matches!(
            with("RTP/AVP 96", "RTP/SAVP 96"),
            SdpError::Transport { .. }
        ));
        assert!(matches!(
            with("RTP/AVP 96", "RTP/AVP 96 98"),
            SdpError::PayloadTypes { count: 2, .. }
        ));
        assert!(matches!(
            with("a=rtpmap:96", "a=rtpmap:98"),
            SdpError::NoRtpmap {
                payload_type: 96,
                ..
            }
        ));
        assert!(matches!(
            with(
                "c=IN IP4 127.0.0.1\r\nb=AS",
                "c=IN IP4 239.1.1.1/16\r\nb=AS"
            ),
            SdpError::Multicast { .. }
        ));
        assert!(matches!(
            with("m=audio 40002 RTP/AVP 97", "m=video 40002 RTP/AVP 97"),
            SdpError::Codec { .. }
        ));
        assert!(matches!(
            with(
                "indexdeltalength=3;",
                "indexdeltalength=3;randomaccessindication=1;"
            ),
            SdpError::Parameter {
                parameter: "randomAccessIndication",
                ..
            }
        ));
        assert!(matches!(with("v=0", "v=1"), SdpError::Version));
        assert!(matches!(
            with("s=No Name", "s =No Name"),
            SdpError::Syntax { line: 3 }
        ));
        assert!(matches!(
            with("m=video 40000", "m=video 4x"),
            SdpError::Field { field: "m", .. }
        ));
        assert!(matches!(
            with(
                "c=IN IP4 127.0.0.1\r\na=rtpmap:96",
                "c=IN IP4 ::1\r\na=rtpmap:96"
            ),
            SdpError::Field { field: "c", .. }
        ));
        assert_eq!(SdpSession::from_sdp(""), Err(SdpError::Version));
        assert_eq!(
            SdpSession::from_sdp("v=0\r\ns=x\r\n"),
            Err(SdpError::NoMedia)
        );
        let two_videos =
            format!("{FFMPEG_VIDEO_ONLY}m=video 40004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        assert_eq!(
            SdpSession::from_sdp(&two_videos),
            Err(SdpError::Duplicate { media: "video" })
        );
    }

    #[test]
    fn base64_and_hex() {
        assert_eq!(
            base64_decode("aOvDyyLA").unwrap(),
            [0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0]
        );
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TWE").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("T"), None);
        assert_eq!(base64_decode("T-E="), None);
        assert_eq!(hex_decode("11 90"), None);
        assert_eq!(hex_decode("1190").unwrap(), [0x11, 0x90]);
        assert_eq!(hex_decode("119"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = SdpSession::from_sdp(&text);
        }

        /// Lines of plausible shape, mutated: still never a panic.
        #[test]
        fn mutated_ffmpeg_sdp_never_panics(cut in 0usize..700, junk in "[a-z0-9=/;:, \\r\\n-]{0,20}") {
            let mut s = FFMPEG_SPROP.to_string();
            let at = cut.min(s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, &junk);
            }
            let _ = SdpSession::from_sdp(&s);
        }
    }
}
