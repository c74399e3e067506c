//! The playlist rewriter on our packager's LL-HLS playlists, on foreign
//! ones (absolute URIs, byte ranges, keys, existing queries, CRLF), checked
//! byte for byte, with m3u8-rs as an independent parser, and by property.

// Helpers outside `#[test]` fns are not covered by clippy.toml's
// allow-unwrap-in-tests; a panic is the failure report here.
#![allow(clippy::unwrap_used)]

use ferrocast_edge::rewrite::{KeyUris, RewriteConfig, RewriteError, Rewriter, TemplateCache};
use proptest::prelude::*;

const T: &str = "AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq";

fn rewriter() -> Rewriter {
    Rewriter::new(&RewriteConfig {
        own_origins: vec!["https://live.example.com".into()],
        ..RewriteConfig::default()
    })
    .unwrap()
}

/// The values of every `token` parameter of a URI.
fn tokens_in(uri: &str) -> Vec<&str> {
    let uri = uri.split('#').next().unwrap();
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n == "token").then_some(v)
        })
        .collect()
}

/// A Media Playlist as `ferrocast_hls::LiveWindow::render` writes it
/// (crates/hls/src/render.rs): a delta update with a discontinuity, a new
/// init generation, parts, a preload hint and a rendition report.
const PACKAGER_MEDIA: &str = "\
#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=1.500
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=5
#EXT-X-MAP:URI=\"init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:30.000Z
#EXTINF:2.000,
seg5.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z
#EXT-X-PART:DURATION=0.500,URI=\"part6.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"part6.1.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"part6.2.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"part6.3.m4s\"
#EXTINF:2.000,
seg6.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z
#EXT-X-PART:DURATION=0.500,URI=\"part7.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"part7.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part7.2.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/audio.m3u8\",LAST-MSN=7,LAST-PART=1
";

/// The same with the token on every URI, written out by hand.
const PACKAGER_MEDIA_SIGNED: &str = "\
#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=1.500
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=5
#EXT-X-MAP:URI=\"init0.mp4?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:30.000Z
#EXTINF:2.000,
seg5.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z
#EXT-X-PART:DURATION=0.500,URI=\"part6.0.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"part6.1.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-PART:DURATION=0.500,URI=\"part6.2.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-PART:DURATION=0.500,URI=\"part6.3.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXTINF:2.000,
seg6.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init1.mp4?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z
#EXT-X-PART:DURATION=0.500,URI=\"part7.0.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"part7.1.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part7.2.m4s?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/audio.m3u8?token=AQEAAAAAaFB9gADmYkdZ3s4uVvJd1oBwVPiq\",LAST-MSN=7,LAST-PART=1
";

/// `fixtures/packager_media.m3u8` was rendered by `ferrocast_hls`'s
/// `LiveWindow::render` (500 ms parts, 2 s segments, a discontinuity with a
/// new init generation, a rendition report).
#[test]
fn packager_media_fixture() {
    let input = include_str!("fixtures/packager_media.m3u8");
    let out = rewriter().rewrite(input, T).unwrap();
    let mut uris = 0;
    for (a, b) in input.lines().zip(out.lines()) {
        if a.contains("URI=\"") {
            let (head, tail) = a.split_once("URI=\"").unwrap();
            let (uri, rest) = tail.split_once('"').unwrap();
            assert_eq!(b, format!("{head}URI=\"{uri}?token={T}\"{rest}"));
            uris += 1;
        } else if !a.starts_with('#') {
            assert_eq!(b, format!("{a}?token={T}"));
            uris += 1;
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(input.lines().count(), out.lines().count());
    // 2 maps, 6 segments, 14 parts, 1 hint, 1 report.
    assert_eq!(uris, 24);
    assert_eq!(out.matches("?token=").count(), 24);
    // m3u8-rs (no LL-HLS) still reads the segments, signed.
    let parsed = m3u8_rs::parse_media_playlist_res(out.as_bytes()).unwrap();
    assert_eq!(parsed.segments.len(), 6);
    for s in &parsed.segments {
        assert_eq!(tokens_in(&s.uri), [T]);
    }
}

/// A Multivariant Playlist as `ferrocast_hls::render_multivariant` writes it.
const PACKAGER_MULTIVARIANT: &str = "\
#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000
video_720p.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.42e01e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=29.970
video_360p.m3u8
";

#[test]
fn packager_media_playlist() {
    let out = rewriter().rewrite(PACKAGER_MEDIA, T).unwrap();
    assert_eq!(out, PACKAGER_MEDIA_SIGNED);
    // Re-signing a signed playlist gives the same as signing the original.
    let again = rewriter().rewrite(&out, "fresh").unwrap();
    assert_eq!(again, PACKAGER_MEDIA_SIGNED.replace(T, "fresh"));
    assert_eq!(again, rewriter().rewrite(PACKAGER_MEDIA, "fresh").unwrap());
}

#[test]
fn packager_multivariant_playlist() {
    let out = rewriter().rewrite(PACKAGER_MULTIVARIANT, T).unwrap();
    assert_eq!(
        out,
        PACKAGER_MULTIVARIANT
            .replace("video_720p.m3u8", &format!("video_720p.m3u8?token={T}"))
            .replace("video_360p.m3u8", &format!("video_360p.m3u8?token={T}"))
    );
    // An independent parser reads the variants and their signed URIs.
    let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).unwrap();
    assert_eq!(parsed.variants.len(), 2);
    for v in &parsed.variants {
        assert_eq!(tokens_in(&v.uri), [T], "{}", v.uri);
    }
    assert_eq!(parsed.variants[0].bandwidth, 2_500_000);
}

/// The packager's Multivariant Playlist with `hls.audio = "separate"`, as
/// `ferrocast_hls::render_multivariant_with_audio` writes it.
const PACKAGER_MULTIVARIANT_AUDIO: &str = "\
#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/stream.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=2564000,AVERAGE-BANDWIDTH=2064000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"
stream.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=864000,CODECS=\"avc1.42e01e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=29.970,AUDIO=\"audio\"
360p/stream.m3u8
";

#[test]
fn packager_multivariant_playlist_with_an_audio_rendition() {
    let out = rewriter().rewrite(PACKAGER_MULTIVARIANT_AUDIO, T).unwrap();
    assert_eq!(
        out,
        PACKAGER_MULTIVARIANT_AUDIO
            .replace(
                "\"audio/stream.m3u8\"",
                &format!("\"audio/stream.m3u8?token={T}\"")
            )
            .replace("\nstream.m3u8\n", &format!("\nstream.m3u8?token={T}\n"))
            .replace("360p/stream.m3u8", &format!("360p/stream.m3u8?token={T}"))
    );
    // An independent parser reads the audio rendition and the variants
    // that name it, every URI signed.
    let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).unwrap();
    assert_eq!(parsed.alternatives.len(), 1);
    let audio = &parsed.alternatives[0];
    assert_eq!(audio.group_id, "audio");
    assert_eq!(tokens_in(audio.uri.as_deref().unwrap()), [T]);
    assert_eq!(parsed.variants.len(), 2);
    for v in &parsed.variants {
        assert_eq!(v.audio.as_deref(), Some("audio"));
        assert_eq!(tokens_in(&v.uri), [T], "{}", v.uri);
    }
}

/// A foreign Multivariant Playlist, CRLF, with every URI-bearing tag of
/// one, absolute URIs to us and to others, and tags we do not know.
const FOREIGN_MULTIVARIANT: &str = "#EXTM3U\r\n\
#EXT-X-VERSION:7\r\n\
#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steering?video=00012\",PATHWAY-ID=\"CDN-A\"\r\n\
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",URI=\"title.json\"\r\n\
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.lyrics\",VALUE=\"la la\"\r\n\
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"skd://key-42\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\r\n\
#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"https://live.example.com/keys/k1?kid=1\"\r\n\
#EXT-X-DEFINE:NAME=\"host\",VALUE=\"live.example.com\"\r\n\
# a comment with URI=\"not-a-uri\"\r\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE=\"en\",URI=\"audio/en.m3u8\"\r\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Main\",DEFAULT=NO\r\n\
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Deutsch\",LANGUAGE=\"de\",URI=\"https://cdn.other.net/subs/de.m3u8\"\r\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,CODECS=\"avc1.4d001f\",URI=\"iframes.m3u8?x=1\"\r\n\
\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d001f,mp4a.40.2\",AUDIO=\"aac\",SUBTITLES=\"subs\"\r\n\
https://live.example.com/live/s/720p.m3u8?token=stale&lang=en\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=640000,CODECS=\"avc1.42e01e,mp4a.40.2\"\r\n\
https://backup.other.net/live/s/360p.m3u8\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=320000\r\n\
low/index.m3u8#anchor\r\n";

#[test]
fn foreign_multivariant_playlist() {
    let out = rewriter().rewrite(FOREIGN_MULTIVARIANT, T).unwrap();
    let expected = FOREIGN_MULTIVARIANT
        .replace(
            "SERVER-URI=\"/steering?video=00012\"",
            &format!("SERVER-URI=\"/steering?video=00012&token={T}\""),
        )
        .replace("\"title.json\"", &format!("\"title.json?token={T}\""))
        .replace(
            "\"https://live.example.com/keys/k1?kid=1\"",
            &format!("\"https://live.example.com/keys/k1?kid=1&token={T}\""),
        )
        .replace("\"audio/en.m3u8\"", &format!("\"audio/en.m3u8?token={T}\""))
        .replace(
            "\"iframes.m3u8?x=1\"",
            &format!("\"iframes.m3u8?x=1&token={T}\""),
        )
        .replace(
            "720p.m3u8?token=stale&lang=en\r\n",
            &format!("720p.m3u8?lang=en&token={T}\r\n"),
        )
        .replace(
            "low/index.m3u8#anchor",
            &format!("low/index.m3u8?token={T}#anchor"),
        );
    assert_eq!(out, expected);
    // Foreign and non-http URIs untouched; CRLF everywhere still.
    assert!(out.contains("URI=\"skd://key-42\""));
    assert!(out.contains("URI=\"https://cdn.other.net/subs/de.m3u8\""));
    assert!(out.contains("\r\nhttps://backup.other.net/live/s/360p.m3u8\r\n"));
    assert_eq!(out.matches('\n').count(), out.matches("\r\n").count());

    let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).unwrap();
    let uris: Vec<&str> = parsed.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            // m3u8-rs lists I-frame variants first.
            format!("iframes.m3u8?x=1&token={T}").as_str(),
            format!("https://live.example.com/live/s/720p.m3u8?lang=en&token={T}").as_str(),
            "https://backup.other.net/live/s/360p.m3u8",
            format!("low/index.m3u8?token={T}#anchor").as_str(),
        ]
    );
}

/// A foreign VOD-style Media Playlist: byte ranges, keys, a `data:` map,
/// existing queries, an absolute own URI.
const FOREIGN_MEDIA: &str = "\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:6
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"data:video/mp4;base64,AAAAGGZ0eXBpc281\",BYTERANGE=\"24@0\"
#EXT-X-KEY:METHOD=AES-128,URI=\"keys/k1.bin\",IV=0x0123456789ABCDEF0123456789ABCDEF
#EXTINF:6.006,Opening titles
#EXT-X-BYTERANGE:1000000@24
main.mp4
#EXTINF:6.006,
#EXT-X-BYTERANGE:980000
main.mp4
#EXT-X-KEY:METHOD=NONE
#EXTINF:5.000,
https://live.example.com/vod/seg3.ts?session=abc&token=old&token=older
#EXT-X-GAP
#EXTINF:5.000,
seg4.ts?cb=1&
#EXT-X-ENDLIST
";

#[test]
fn foreign_media_playlist() {
    let out = rewriter().rewrite(FOREIGN_MEDIA, T).unwrap();
    let expected = FOREIGN_MEDIA
        .replace("\"keys/k1.bin\"", &format!("\"keys/k1.bin?token={T}\""))
        .replace("\nmain.mp4\n", &format!("\nmain.mp4?token={T}\n"))
        .replace(
            "seg3.ts?session=abc&token=old&token=older",
            &format!("seg3.ts?session=abc&token={T}"),
        )
        .replace("seg4.ts?cb=1&", &format!("seg4.ts?cb=1&token={T}"));
    assert_eq!(out, expected);
    // The data: map, its BYTERANGE and the EXT-X-BYTERANGE lines as they were.
    assert!(out.contains(
        "#EXT-X-MAP:URI=\"data:video/mp4;base64,AAAAGGZ0eXBpc281\",BYTERANGE=\"24@0\"\n"
    ));
    assert!(out.contains("#EXT-X-BYTERANGE:1000000@24\n"));

    let parsed = m3u8_rs::parse_media_playlist_res(out.as_bytes()).unwrap();
    assert_eq!(parsed.segments.len(), 4);
    for s in &parsed.segments {
        assert_eq!(tokens_in(&s.uri), [T], "{}", s.uri);
    }
    assert_eq!(
        parsed.segments[0]
            .byte_range
            .as_ref()
            .map(|r| (r.length, r.offset)),
        Some((1_000_000, Some(24)))
    );
}

#[test]
fn key_uris_can_be_left_alone() {
    let leave = Rewriter::new(&RewriteConfig {
        key_uris: KeyUris::Leave,
        ..RewriteConfig::default()
    })
    .unwrap();
    let out = leave.rewrite(FOREIGN_MEDIA, T).unwrap();
    assert!(out.contains("URI=\"keys/k1.bin\","));
    assert!(out.contains(&format!("\nmain.mp4?token={T}\n")));
    let out = leave.rewrite(FOREIGN_MULTIVARIANT, T).unwrap();
    assert!(out.contains("URI=\"https://live.example.com/keys/k1?kid=1\""));
}

#[test]
fn custom_parameter_name() {
    let r = Rewriter::new(&RewriteConfig {
        token_param: "fc".into(),
        ..RewriteConfig::default()
    })
    .unwrap();
    let out = r
        .rewrite("#EXTM3U\nseg1.m4s?token=x&fc=old\n", "new")
        .unwrap();
    assert_eq!(out, "#EXTM3U\nseg1.m4s?token=x&fc=new\n");
}

#[test]
fn not_a_playlist() {
    let r = rewriter();
    assert_eq!(
        r.rewrite("<html>502 Bad Gateway</html>", T),
        Err(RewriteError::NotAPlaylist)
    );
    assert_eq!(
        r.rewrite_bytes(b"\x00\x00\x00\x18ftypiso5", T),
        Err(RewriteError::NotAPlaylist)
    );
}

// ---- properties ---------------------------------------------------------

/// One generated playlist line and what the rewriter must do with it.
#[derive(Debug, Clone)]
enum Line {
    /// Must come out byte-identical.
    Same(String),
    /// A URI line: `uri` must come out with exactly one token.
    Uri(String),
    /// A tag with a URI attribute: `prefix` + signed `uri` + `suffix`.
    Tag {
        prefix: String,
        uri: String,
        suffix: String,
    },
}

fn relative_uri() -> impl Strategy<Value = String> {
    (
        "(\\.\\./)?[a-z0-9_-]{1,8}(/[a-z0-9_.-]{1,8}){0,2}\\.(m4s|mp4|m3u8|ts)",
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                Just("token=old".to_string()),
                Just("token".to_string()),
                Just(String::new()),
                "[a-z_]{1,6}=[A-Za-z0-9,%.]{0,6}",
            ],
            0..4,
        )),
        proptest::option::of("#[a-z0-9=?&]{0,6}"),
    )
        .prop_map(|(path, query, fragment)| {
            let mut u = path;
            if let Some(q) = query {
                u.push('?');
                u.push_str(&q.join("&"));
            }
            if let Some(f) = fragment {
                u.push_str(&f);
            }
            u
        })
}

fn line() -> impl Strategy<Value = Line> {
    let same = prop_oneof![
        Just(String::new()),
        "# [ -~]{0,30}",
        "#EXT-X-[A-Z-]{1,12}:[A-Z]{1,6}=[0-9]{1,4}",
        Just("#EXT-X-BYTERANGE:1000@24".to_string()),
        Just("#EXTINF:2.000,".to_string()),
        Just("#EXT-X-DATERANGE:ID=\"ad\",X-URI=\"seg.ts\"".to_string()),
        Just("#EXT-X-KEY:METHOD=NONE".to_string()),
        Just("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\"".to_string()),
        Just("#EXT-X-MAP:URI=\"data:video/mp4;base64,AAAA\"".to_string()),
        Just("#EXT-X-MAP:URI=\"https://cdn.other.net/init.mp4\"".to_string()),
        Just("https://cdn.other.net/seg1.ts?token=theirs".to_string()),
        Just("#EXT-X-PART:URI=\"\",DURATION=1".to_string()),
        // What a browser reads as another host (WHATWG URL Standard).
        Just("\\\\cdn.other.net/seg1.m4s".to_string()),
        Just("/\\cdn.other.net/seg1.m4s".to_string()),
        Just("\u{b}//cdn.other.net/seg1.m4s".to_string()),
        Just("/\t/cdn.other.net/seg1.m4s".to_string()),
        Just("HTTPS:\\\\live.example.com.evil.net/seg1.m4s".to_string()),
        Just("#EXT-X-MAP:URI=\"\\\\cdn.other.net/init.mp4\"".to_string()),
        Just("#EXT-X-PART:DURATION=1,URI=\" /\t/cdn.other.net/p.m4s\"".to_string()),
    ]
    .prop_map(Line::Same);
    let tag = prop_oneof![
        Just("#EXT-X-MAP:"),
        Just("#EXT-X-PART:DURATION=0.500,"),
        Just("#EXT-X-PRELOAD-HINT:TYPE=PART,"),
        Just("#EXT-X-RENDITION-REPORT:"),
        Just("#EXT-X-MEDIA:TYPE=AUDIO,NAME=\"a,URI=b\","),
        Just("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,"),
        Just("#EXT-X-SESSION-DATA:DATA-ID=\"x\","),
        Just("#EXT-X-KEY:METHOD=AES-128,"),
        Just("#EXT-X-SESSION-KEY:METHOD=AES-128,"),
    ];
    let suffix = prop_oneof![
        Just(""),
        Just(",INDEPENDENT=YES"),
        Just(",BYTERANGE=\"100@0\""),
        Just(",LAST-MSN=7,LAST-PART=1"),
    ];
    prop_oneof![
        3 => same,
        2 => relative_uri().prop_map(Line::Uri),
        2 => (tag, relative_uri(), suffix).prop_map(|(t, uri, s)| Line::Tag {
            prefix: format!("{t}URI=\""),
            uri,
            suffix: format!("\"{s}"),
        }),
        1 => (relative_uri(), "[A-Z-]{0,8}").prop_map(|(uri, id)| Line::Tag {
            prefix: "#EXT-X-CONTENT-STEERING:SERVER-URI=\"".into(),
            uri,
            suffix: format!("\",PATHWAY-ID=\"{id}\""),
        }),
    ]
}

fn render(lines: &[Line], crlf: &[bool]) -> String {
    let mut s = String::from("#EXTM3U\n");
    for (l, cr) in lines.iter().zip(crlf.iter().cycle()) {
        match l {
            Line::Same(t) | Line::Uri(t) => s.push_str(t),
            Line::Tag {
                prefix,
                uri,
                suffix,
            } => {
                s.push_str(prefix);
                s.push_str(uri);
                s.push_str(suffix);
            }
        }
        s.push_str(if *cr { "\r\n" } else { "\n" });
    }
    s
}

/// The input URI with its `token` parameters and empty parameters removed:
/// what a signed URI must be once its token is taken out again.
fn without_tokens(uri: &str) -> String {
    let (rest, fragment) = match uri.find('#') {
        Some(i) => uri.split_at(i),
        None => (uri, ""),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("token"))
        .collect();
    format!("{path}?{}{fragment}", kept.join("&"))
}

fn check_signed(input_uri: &str, output_uri: &str, token: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(tokens_in(output_uri), [token], "{}", output_uri);
    // Only the token parameter changed.
    let with_amp = format!("&token={token}");
    let stripped = if output_uri.contains(&with_amp) {
        output_uri.replacen(&with_amp, "", 1)
    } else {
        output_uri.replacen(&format!("token={token}"), "", 1)
    };
    prop_assert_eq!(stripped, without_tokens(input_uri));
    Ok(())
}

proptest! {
    #[test]
    fn lines_keep_their_bytes_and_uris_get_one_token(
        lines in proptest::collection::vec(line(), 0..40),
        crlf in proptest::collection::vec(any::<bool>(), 1..4),
        token in "[A-Za-z0-9_-]{1,40}",
    ) {
        let input = render(&lines, &crlf);
        let out = rewriter().rewrite(&input, &token).unwrap();
        let in_lines: Vec<&str> = input.split_inclusive('\n').collect();
        let out_lines: Vec<&str> = out.split_inclusive('\n').collect();
        prop_assert_eq!(in_lines.len(), out_lines.len());
        prop_assert_eq!(out_lines[0], "#EXTM3U\n");
        for ((line, inl), outl) in lines.iter().zip(&in_lines[1..]).zip(&out_lines[1..]) {
            let eol = if inl.ends_with("\r\n") { "\r\n" } else { "\n" };
            prop_assert!(outl.ends_with(eol));
            let outl = &outl[..outl.len() - eol.len()];
            match line {
                Line::Same(_) => prop_assert_eq!(*inl, format!("{outl}{eol}")),
                Line::Uri(uri) => check_signed(uri, outl, &token)?,
                Line::Tag { prefix, uri, suffix } => {
                    prop_assert!(outl.starts_with(prefix.as_str()), "{}", outl);
                    prop_assert!(outl.ends_with(suffix.as_str()), "{}", outl);
                    let signed = &outl[prefix.len()..outl.len() - suffix.len()];
                    check_signed(uri, signed, &token)?;
                }
            }
        }
    }

    #[test]
    fn re_signing_is_idempotent(
        lines in proptest::collection::vec(line(), 0..30),
        crlf in proptest::collection::vec(any::<bool>(), 1..3),
        first in "[A-Za-z0-9_-]{1,40}",
        second in "[A-Za-z0-9_-]{1,40}",
    ) {
        let r = rewriter();
        let input = render(&lines, &crlf);
        let once = r.rewrite(&input, &first).unwrap();
        let twice = r.rewrite(&once, &second).unwrap();
        prop_assert_eq!(&twice, &r.rewrite(&input, &second).unwrap());
        prop_assert_eq!(r.rewrite(&twice, &second).unwrap(), twice);
    }

    #[test]
    fn arbitrary_text_never_panics_and_keeps_other_lines(body in "\\PC{0,400}", crlf in any::<bool>()) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let input = format!("#EXTM3U{eol}{}", body.replace('\n', eol));
        let out = rewriter().rewrite(&input, "T").unwrap();
        let in_lines: Vec<&str> = input.split_inclusive('\n').collect();
        let out_lines: Vec<&str> = out.split_inclusive('\n').collect();
        prop_assert_eq!(in_lines.len(), out_lines.len());
        for (a, b) in in_lines.iter().zip(&out_lines) {
            let tagged = a.starts_with('#') && !a.starts_with("#EXT-X-");
            if tagged || a.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = rewriter().rewrite_bytes(&bytes, "T");
        let mut with_header = b"#EXTM3U\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = rewriter().rewrite_bytes(&with_header, "T");
    }

    /// The template path gives byte for byte (and error for error) what
    /// the direct rewrite gives, for our playlists' lines, arbitrary text
    /// and arbitrary bytes, from a fresh template and from the cache.
    #[test]
    fn templates_render_what_the_rewriter_writes(
        lines in proptest::collection::vec(line(), 0..40),
        crlf in proptest::collection::vec(any::<bool>(), 1..4),
        text in "\\PC{0,300}",
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        tokens in proptest::collection::vec(
            prop_oneof![4 => "[A-Za-z0-9._~-]{1,40}", 1 => "[ -~]{0,8}"],
            1..4,
        ),
        key_uris in prop_oneof![Just(KeyUris::Sign), Just(KeyUris::Leave)],
    ) {
        let r = Rewriter::new(&RewriteConfig {
            own_origins: vec!["https://live.example.com".into()],
            key_uris,
            max_playlist_bytes: 4096,
            ..RewriteConfig::default()
        })
        .unwrap();
        let cache = TemplateCache::new(r.clone(), 1 << 20);
        let mut with_header = b"#EXTM3U\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let bodies = [
            render(&lines, &crlf).into_bytes(),
            format!("#EXTM3U\n{text}").into_bytes(),
            text.into_bytes(),
            bytes,
            with_header,
        ];
        for body in bodies {
            let body = bytes::Bytes::from(body);
            for token in &tokens {
                let direct = r.rewrite_bytes(&body, token).map(String::into_bytes);
                let template = r
                    .template(body.clone())
                    .and_then(|t| t.render(token))
                    .map(|b| b.to_vec());
                if let Ok(direct) = &direct {
                    prop_assert_eq!(template.as_ref(), Ok(direct));
                }
                // Twice: a miss, then a hit.
                for _ in 0..2 {
                    let cached = cache.rewrite(&body, token).map(|b| b.to_vec());
                    prop_assert_eq!(&cached, &direct);
                }
            }
        }
    }
}

/// What a browser's URL parser (the WHATWG URL Standard, as the `url`
/// crate behind reqwest implements it) makes of `uri` in a playlist loaded
/// from `base`: the host and the values of its `token` parameters, for
/// `http`/`https` URLs only.
fn browser_reads(base: &str, uri: &str) -> Option<(String, Vec<String>)> {
    let url = reqwest::Url::parse(base).unwrap().join(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let tokens = url
        .query_pairs()
        .filter(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .collect();
    Some((url.host_str()?.to_owned(), tokens))
}

/// URIs spelled the ways a browser forgives: C0 controls and spaces
/// around, a tab or CR anywhere, backslashes for slashes, any case in the
/// scheme, one to three slashes, own and foreign hosts.
fn spelled_uri() -> impl Strategy<Value = String> {
    let around = prop_oneof![
        Just(""),
        Just(" "),
        Just("\t"),
        Just("\u{0}"),
        Just("\u{b}"),
        Just("\u{1f}"),
    ];
    let scheme = prop_oneof![
        3 => Just(""),
        1 => Just("https:"),
        1 => Just("HTTPS:"),
        1 => Just("hTtP:"),
        1 => Just("http:"),
        1 => Just("wss:"),
        1 => Just("h\ttps:"),
    ];
    let slashes = proptest::collection::vec(prop_oneof![Just('/'), Just('\\')], 0..4);
    let host = prop_oneof![
        Just("live.example.com"),
        Just("LIVE.Example.COM"),
        Just("live.example.com:443"),
        Just("live.example.com:8443"),
        Just("live.exa\tmple.com"),
        Just("cdn.other.net"),
        Just("live.example.com.evil.net"),
        Just("evil.net\\@live.example.com"),
        Just("live.example.com@evil.net"),
        Just("evil.net%2flive.example.com"),
        Just("seg1.m4s"),
    ];
    let path = prop_oneof![
        Just(""),
        Just("/seg1.m4s"),
        Just("\\seg1.m4s"),
        Just("?x=1"),
        Just("#f"),
        Just("/a?token=old&x=1#f"),
        Just("/a?to\tken=old"),
    ];
    let inserted = prop_oneof![Just(""), Just("\t"), Just("\r")];
    (
        around.clone(),
        scheme,
        slashes,
        host,
        path,
        inserted,
        any::<usize>(),
        around,
    )
        .prop_map(|(lead, scheme, slashes, host, path, inserted, at, trail)| {
            let slashes: String = slashes.into_iter().collect();
            let mut core = format!("{scheme}{slashes}{host}{path}");
            core.insert_str(at % (core.len() + 1), inserted);
            // A trailing tab would be taken for the URI line's blanks.
            let trail = if trail == "\t" { "" } else { trail };
            format!("{lead}{core}{trail}")
        })
}

proptest! {
    /// The token only ever goes where a browser takes this edge's host to
    /// be, and never to a URI a browser resolves to another host; what
    /// is left unsigned comes out byte for byte. The oracle is an
    /// independent implementation of the URL Standard.
    #[test]
    fn tokens_go_only_where_a_browser_reaches_this_host(uri in spelled_uri()) {
        prop_assume!(!uri.trim_start_matches([' ', '\t']).starts_with('#'));
        let playlist = format!("#EXTM3U\n{uri}\n#EXT-X-MAP:URI=\"{uri}\"\n");
        let r = rewriter();
        let out = r.rewrite(&playlist, "T").unwrap();
        let template = r.template(bytes::Bytes::from(playlist.clone())).unwrap();
        prop_assert_eq!(&template.render("T").unwrap()[..], out.as_bytes());
        let lines: Vec<&str> = out.split('\n').collect();
        let attribute = lines[2]
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        for written in [lines[1], attribute] {
            let signed = written != uri;
            for base in [
                "https://live.example.com/live/cam/stream.m3u8",
                "http://live.example.com/live/cam/stream.m3u8",
            ] {
                let before = browser_reads(base, &uri);
                let after = browser_reads(base, written);
                if signed {
                    prop_assert_eq!(
                        after.as_ref().map(|(host, tokens)| (host.as_str(), tokens.clone())),
                        Some(("live.example.com", vec!["T".to_owned()])),
                        "{:?} -> {:?} from {}", uri, written, base
                    );
                }
                if before.as_ref().map(|(host, _)| host.as_str()) != Some("live.example.com") {
                    prop_assert!(!signed, "{:?} -> {:?} from {}", uri, written, base);
                }
            }
        }
    }
}
