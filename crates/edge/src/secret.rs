//! Secrets from configuration (HMAC keys, publish keys, SRT passphrases,
//! store credentials), kept out of logs and out of dumped configs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string. `Debug` and `Display` print
/// `[redacted]`, so a secret can sit in a struct that is logged without
/// leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself. Call this only where it is used (an HMAC keyed,
    /// a publish key compared, a passphrase handed to SRT), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    /// Serialises redacted: a config dumped for diagnosis never carries keys.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.expose(), "hunter2-hunter2");
        assert_eq!(s.len(), 15);
    }

    #[test]
    fn serialised_redacted_and_read_back_whole() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            key: Secret,
        }
        let held: Holder = toml::from_str("key = \"hunter2-hunter2\"").unwrap();
        assert_eq!(held.key.expose(), "hunter2-hunter2");
        assert_eq!(
            toml::to_string(&held).unwrap().trim(),
            "key = \"[redacted]\""
        );
    }
}
