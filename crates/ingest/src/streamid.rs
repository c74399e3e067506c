//! Parsing the SRT `streamid` a caller sends in its handshake.
//!
//! Two forms are accepted:
//!
//! * the simple form `MODE:live/NAME[?key=KEY]`, for example
//!   `publish:live/cam1?key=s3cretkey`;
//! * the SRT Access Control form (SRT `docs/features/access-control.md`):
//!   `#!::` followed by comma-separated `key=value` pairs, of which Ferrocast
//!   reads `r` (resource name, `live/NAME`), `m` (mode: `request`,
//!   `publish` or `bidirectional`; "the default is `request`") and `t`, which
//!   carries the publish key, and ignores the other standard keys (`u`, `h`,
//!   `s`).
//!
//! The publish key is wrapped in a [`Secret`] as soon as it is parsed, so it
//! cannot reach a log line by accident.
//!
//! The streamid comes from the network: this parser is strict, bounded and
//! never panics (SRT caps the field at 512 bytes).

use ferrocast_config::Secret;
use ferrocast_media::{StreamName, StreamNameError};

/// Longest streamid SRT can carry, in bytes.
pub const MAX_STREAMID_LEN: usize = 512;

/// What the caller wants to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Push media into Ferrocast.
    Publish,
    /// Pull media out (not served over SRT).
    Request,
    /// Both directions (not served).
    Bidirectional,
}

/// A parsed streamid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The stream addressed.
    pub name: StreamName,
    /// What the caller wants.
    pub mode: Mode,
    /// The publish key the caller presented, if any.
    pub key: Option<Secret>,
}

/// Longest accepted publish key.
pub const MAX_KEY_LEN: usize = 128;

/// Why a streamid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// No streamid at all.
    #[error("no streamid: expected publish:live/NAME or #!::r=live/NAME,m=publish")]
    Missing,
    /// Longer than SRT allows.
    #[error("streamid longer than {MAX_STREAMID_LEN} bytes")]
    TooLong,
    /// Neither of the accepted forms.
    #[error("streamid is not of the form publish:live/NAME or #!::r=live/NAME,m=publish")]
    Syntax,
    /// An unknown mode.
    #[error("unknown mode in streamid (expected publish, request or bidirectional)")]
    Mode,
    /// A key given twice in the Access Control form.
    #[error("key {0:?} given twice in streamid")]
    DuplicateKey(String),
    /// The publish key is empty, too long or has characters outside
    /// `[A-Za-z0-9._~-]` (its value is not echoed).
    #[error("malformed publish key in streamid")]
    Key,
    /// The resource is not a valid stream name.
    #[error("bad stream name in streamid: {0}")]
    Name(#[from] StreamNameError),
}

/// Parse a streamid.
pub fn parse(streamid: &str) -> Result<StreamRequest, StreamIdError> {
    if streamid.is_empty() {
        return Err(StreamIdError::Missing);
    }
    if streamid.len() > MAX_STREAMID_LEN {
        return Err(StreamIdError::TooLong);
    }
    match streamid.strip_prefix("#!::") {
        Some(pairs) => parse_access_control(pairs),
        None => parse_simple(streamid),
    }
}

fn parse_mode(mode: &str) -> Result<Mode, StreamIdError> {
    match mode {
        "publish" => Ok(Mode::Publish),
        "request" => Ok(Mode::Request),
        "bidirectional" => Ok(Mode::Bidirectional),
        _ => Err(StreamIdError::Mode),
    }
}

fn parse_key(key: &str) -> Result<Secret, StreamIdError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(allowed) {
        return Err(StreamIdError::Key);
    }
    Ok(Secret::new(key))
}

fn parse_simple(streamid: &str) -> Result<StreamRequest, StreamIdError> {
    let (mode, rest) = streamid.split_once(':').ok_or(StreamIdError::Syntax)?;
    let (resource, key) = match rest.split_once('?') {
        Some((resource, query)) => {
            let key = query.strip_prefix("key=").ok_or(StreamIdError::Syntax)?;
            (resource, Some(parse_key(key)?))
        }
        None => (rest, None),
    };
    Ok(StreamRequest {
        mode: parse_mode(mode)?,
        name: StreamName::from_resource(resource)?,
        key,
    })
}

fn parse_access_control(pairs: &str) -> Result<StreamRequest, StreamIdError> {
    let mut resource = None;
    let mut mode = None;
    let mut publish_key = None;
    for pair in pairs.split(',') {
        let (key, value) = pair.split_once('=').ok_or(StreamIdError::Syntax)?;
        let slot = match key {
            "r" => &mut resource,
            "m" => &mut mode,
            "t" => &mut publish_key,
            // Standard keys Ferrocast does not use (user, host, session).
            "u" | "h" | "s" => continue,
            _ => return Err(StreamIdError::Syntax),
        };
        if slot.replace(value).is_some() {
            return Err(StreamIdError::DuplicateKey(key.to_owned()));
        }
    }
    Ok(StreamRequest {
        name: StreamName::from_resource(resource.ok_or(StreamIdError::Syntax)?)?,
        // "m: Mode expected for this connection ... default: request"
        mode: mode.map_or(Ok(Mode::Request), parse_mode)?,
        key: publish_key.map(parse_key).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn publish(name: &str) -> StreamRequest {
        StreamRequest {
            name: StreamName::new(name).unwrap(),
            mode: Mode::Publish,
            key: None,
        }
    }

    fn with_key(name: &str, key: &str) -> StreamRequest {
        StreamRequest {
            key: Some(Secret::new(key)),
            ..publish(name)
        }
    }

    #[test]
    fn keys_in_both_forms() {
        assert_eq!(
            parse("publish:live/cam1?key=s3cret.K-y~").unwrap(),
            with_key("cam1", "s3cret.K-y~")
        );
        assert_eq!(
            parse("#!::r=live/cam1,m=publish,t=abc123").unwrap(),
            with_key("cam1", "abc123")
        );
        assert_eq!(parse("publish:live/cam1?key="), Err(StreamIdError::Key));
        assert_eq!(parse("publish:live/cam1?key=a b"), Err(StreamIdError::Key));
        assert_eq!(
            parse("publish:live/cam1?pass=x"),
            Err(StreamIdError::Syntax)
        );
        assert_eq!(
            parse("#!::r=live/cam1,t=a,t=b"),
            Err(StreamIdError::DuplicateKey("t".into()))
        );
        let long = format!("publish:live/a?key={}", "k".repeat(129));
        assert_eq!(parse(&long), Err(StreamIdError::Key));
        // The key never shows in a message or a debug print.
        let err = parse("publish:live/cam1?key=bad%key")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("bad%key"), "{err}");
        assert!(
            !format!("{:?}", parse("publish:live/a?key=hidden-k").unwrap()).contains("hidden-k")
        );
    }

    #[test]
    fn simple_form() {
        assert_eq!(parse("publish:live/cam1").unwrap(), publish("cam1"));
        assert_eq!(parse("request:live/cam1").unwrap().mode, Mode::Request);
        assert_eq!(
            parse("publish:vod/cam1"),
            Err(StreamIdError::Name(StreamNameError::Character))
        );
        assert_eq!(parse("push:live/cam1"), Err(StreamIdError::Mode));
        assert_eq!(parse("live/cam1"), Err(StreamIdError::Syntax));
        assert_eq!(parse(""), Err(StreamIdError::Missing));
    }

    #[test]
    fn access_control_form() {
        assert_eq!(parse("#!::r=live/cam1,m=publish").unwrap(), publish("cam1"));
        assert_eq!(
            parse("#!::m=publish,u=alice,r=live/cam1").unwrap(),
            publish("cam1")
        );
        assert_eq!(parse("#!::r=live/cam1").unwrap().mode, Mode::Request);
        assert_eq!(parse("#!::m=publish"), Err(StreamIdError::Syntax));
        assert_eq!(
            parse("#!::r=live/a,r=live/b,m=publish"),
            Err(StreamIdError::DuplicateKey("r".into()))
        );
        assert_eq!(parse("#!::r=live/a,x=1"), Err(StreamIdError::Syntax));
        assert_eq!(
            parse("#!::r=live/../etc,m=publish").unwrap_err(),
            StreamIdError::Name(StreamNameError::Character)
        );
    }

    #[test]
    fn bounded() {
        let long = format!("publish:live/{}", "a".repeat(600));
        assert_eq!(parse(&long), Err(StreamIdError::TooLong));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,600}") {
            let _ = parse(&s);
        }

        #[test]
        fn valid_names_round_trip(name in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}") {
            prop_assert_eq!(parse(&format!("publish:live/{name}")).unwrap(), publish(&name));
            prop_assert_eq!(parse(&format!("#!::m=publish,r=live/{name}")).unwrap(), publish(&name));
        }

        #[test]
        fn valid_keys_round_trip(name in "[a-z0-9]{1,20}", key in "[A-Za-z0-9._~-]{1,128}") {
            prop_assert_eq!(parse(&format!("publish:live/{name}?key={key}")).unwrap(), with_key(&name, &key));
            prop_assert_eq!(parse(&format!("#!::t={key},m=publish,r=live/{name}")).unwrap(), with_key(&name, &key));
        }
    }
}
