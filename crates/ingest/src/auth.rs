//! Who may publish: the [`PublishAuthorizer`] decides from the streamid,
//! before the SRT handshake completes.
//!
//! [`StaticAuthorizer`] reads the `[[streams]]` list of the config file;
//! `ferrocast-control`'s authoriser reads the control-plane database
//! behind the same trait. With no streams configured,
//! publishing is open: any valid stream name, no key — the embedded default
//! for trying Ferrocast out, logged at start.

use std::collections::HashMap;

use ferrocast_config::{DuplicatePublisher, Secret, StreamConfig};
use subtle::ConstantTimeEq;

use crate::streamid::StreamRequest;

/// What an authorised publisher gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishGrant {
    /// SRT passphrase the caller must encrypt with, if any.
    pub passphrase: Option<Secret>,
    /// What to do when the stream already has a live publisher.
    pub on_duplicate: DuplicatePublisher,
}

/// Why a publisher was refused. Messages never carry the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The stream is not in the list.
    #[error("unknown stream")]
    UnknownStream,
    /// The stream needs a key and none was given.
    #[error("no publish key given")]
    MissingKey,
    /// The key does not match.
    #[error("wrong publish key")]
    WrongKey,
    /// The list of streams could not be read (the control-plane database
    /// has not answered since this process started): nobody is let in
    /// on a guess.
    #[error("stream list not available yet")]
    Unavailable,
}

/// Decides whether a caller may publish.
pub trait PublishAuthorizer: Send + Sync {
    /// Authorise `request` (already parsed and in publish mode).
    fn authorize(&self, request: &StreamRequest) -> Result<PublishGrant, AuthError>;

    /// True when anyone may publish any stream.
    fn is_open(&self) -> bool;
}

#[derive(Debug)]
struct Entry {
    key: Secret,
    grant: PublishGrant,
}

/// Authorises against a fixed list of streams and keys.
#[derive(Debug, Default)]
pub struct StaticAuthorizer {
    streams: HashMap<String, Entry>,
}

impl StaticAuthorizer {
    /// From the config file's `[[streams]]` (validated by the config crate).
    pub fn from_config(streams: &[StreamConfig]) -> Self {
        StaticAuthorizer {
            streams: streams
                .iter()
                .map(|s| {
                    let entry = Entry {
                        key: s.publish_key.clone(),
                        grant: PublishGrant {
                            passphrase: s.passphrase.clone(),
                            on_duplicate: s.on_duplicate,
                        },
                    };
                    (s.name.clone(), entry)
                })
                .collect(),
        }
    }
}

impl PublishAuthorizer for StaticAuthorizer {
    fn authorize(&self, request: &StreamRequest) -> Result<PublishGrant, AuthError> {
        if self.streams.is_empty() {
            return Ok(PublishGrant {
                passphrase: None,
                on_duplicate: DuplicatePublisher::Reject,
            });
        }
        let entry = self
            .streams
            .get(request.name.as_str())
            .ok_or(AuthError::UnknownStream)?;
        let given = request.key.as_ref().ok_or(AuthError::MissingKey)?;
        // Constant time in the key's content (its length may show).
        let matches: bool = given
            .expose()
            .as_bytes()
            .ct_eq(entry.key.expose().as_bytes())
            .into();
        if matches {
            Ok(entry.grant.clone())
        } else {
            Err(AuthError::WrongKey)
        }
    }

    fn is_open(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streamid::parse;

    fn authorizer() -> StaticAuthorizer {
        StaticAuthorizer::from_config(&[StreamConfig {
            name: "cam1".into(),
            publish_key: Secret::new("right-key-1"),
            passphrase: Some(Secret::new("0123456789abcdef")),
            on_duplicate: DuplicatePublisher::TakeOver,
        }])
    }

    #[test]
    fn listed_stream_needs_its_key() {
        let auth = authorizer();
        assert!(!auth.is_open());
        let grant = auth
            .authorize(&parse("publish:live/cam1?key=right-key-1").unwrap())
            .unwrap();
        assert_eq!(grant.passphrase, Some(Secret::new("0123456789abcdef")));
        assert_eq!(grant.on_duplicate, DuplicatePublisher::TakeOver);
        assert_eq!(
            auth.authorize(&parse("#!::r=live/cam1,m=publish,t=right-key-1").unwrap()),
            Ok(grant)
        );
        assert_eq!(
            auth.authorize(&parse("publish:live/cam1?key=right-key-2").unwrap()),
            Err(AuthError::WrongKey)
        );
        assert_eq!(
            auth.authorize(&parse("publish:live/cam1?key=right-key-11").unwrap()),
            Err(AuthError::WrongKey)
        );
        assert_eq!(
            auth.authorize(&parse("publish:live/cam1").unwrap()),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            auth.authorize(&parse("publish:live/cam2?key=right-key-1").unwrap()),
            Err(AuthError::UnknownStream)
        );
    }

    #[test]
    fn empty_list_is_open() {
        let auth = StaticAuthorizer::default();
        assert!(auth.is_open());
        let grant = auth
            .authorize(&parse("publish:live/anything?key=whatever").unwrap())
            .unwrap();
        assert_eq!(grant.passphrase, None);
    }
}
