//! Publish keys and API tokens: made here from 32 random bytes, shown
//! once, stored only as their SHA-256, and checked in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How many characters of a key or token are kept in clear to tell them
/// apart (in lists, in the audit log): 8 of 64, no help to a guesser.
pub const PREFIX_CHARS: usize = 8;

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A new secret: 32 random bytes as 64 hex characters (256 bits: a hash
/// needs no salt or stretching against guessing).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    to_hex(&bytes)
}

/// The SHA-256 of `secret`, hex: what is stored.
pub fn hash(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

/// The first characters of `secret`, kept to tell secrets apart.
pub fn prefix(secret: &str) -> String {
    secret.chars().take(PREFIX_CHARS).collect()
}

/// Whether `given` hashes to `stored`, in time independent of where they
/// differ.
pub fn matches(given: &str, stored: &str) -> bool {
    hash(given).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// A new sortable id: the time in zero-padded milliseconds, then 8 random
/// hex characters.
pub(crate) fn new_id(now_ms: i64) -> String {
    let mut bytes = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{now_ms:013}{}", to_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_its_hash_and_nothing_else() {
        let key = generate();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, generate());
        let stored = hash(&key);
        assert!(matches(&key, &stored));
        assert!(!matches(&generate(), &stored));
        assert!(!matches("", &stored));
        assert_eq!(prefix(&key), &key[..8]);
        // The known SHA-256 of "abc".
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_id(1_700_000_000_000);
        let b = new_id(1_700_000_000_001);
        assert!(a < b);
        assert_eq!(a.len(), 21);
    }
}
