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

/// A new sortable id: the time in zero-padded milliseconds, a sequence
/// number, then 8 random hex characters. Ids made by one process sort in
/// the order they were made, also within one millisecond and when the
/// clock steps back (the time part never goes below the last one used);
/// ids made by two processes in the same millisecond sort by chance.
pub(crate) fn new_id(now_ms: i64) -> String {
    let (ms, seq) = ID_CLOCK.next(now_ms);
    let mut bytes = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{ms:013}{seq:04x}{}", to_hex(&bytes))
}

/// The last time and sequence number an id was made with, per process.
static ID_CLOCK: IdClock = IdClock {
    last: std::sync::Mutex::new((0, 0)),
};

struct IdClock {
    last: std::sync::Mutex<(i64, u32)>,
}

impl IdClock {
    /// The (time, sequence) for a new id at `now_ms`: after every earlier
    /// one. 65 536 ids in one millisecond move on to the next one.
    fn next(&self, now_ms: i64) -> (i64, u32) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let next = if now_ms > last.0 {
            (now_ms, 0)
        } else if last.1 < 0xffff {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = next;
        next
    }
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
        assert_eq!(a.len(), 25);
    }

    #[test]
    fn ids_made_in_one_millisecond_or_after_a_clock_step_back_keep_their_order() {
        let clock = IdClock {
            last: std::sync::Mutex::new((0, 0)),
        };
        let mut made = vec![clock.next(5), clock.next(5), clock.next(4), clock.next(6)];
        assert_eq!(made, vec![(5, 0), (5, 1), (5, 2), (6, 0)]);
        for _ in 0..0x1_0000 {
            made.push(clock.next(6));
        }
        assert_eq!(made.last(), Some(&(7, 0)));
        assert!(made.windows(2).all(|w| w[0] < w[1]));
        let ids: Vec<String> = (0..1000).map(|_| new_id(1_700_000_000_000)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
