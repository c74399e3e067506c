use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hash, Hasher},
    net::SocketAddr,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

// ferrocast patch: the cookie was a SipHash with fixed (zero) keys of the
// caller's address and the time, so anyone could compute the cookie for an
// address they do not own and skip the induction round trip. It is now keyed
// with a secret drawn once per process.
fn cookie_key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

pub fn gen_cookie(saddr: &SocketAddr) -> i32 {
    // ferrocast patch: was `.expect(..)` on a clock before 1970.
    let time_mins = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);

    let mut hasher = cookie_key().build_hasher();
    saddr.hash(&mut hasher);
    time_mins.hash(&mut hasher);

    hasher.finish() as u32 as i32
}
