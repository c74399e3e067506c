//! The SRT streamid parser: arbitrary text never panics, and whatever it
//! accepts names a valid stream and, if present, a well-formed key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = ferrocast_ingest::streamid::parse(text) {
        assert!(ferrocast_media::StreamName::new(request.name.as_str()).is_ok());
        if let Some(key) = &request.key {
            let key = key.expose();
            assert!(!key.is_empty() && key.len() <= ferrocast_ingest::streamid::MAX_KEY_LEN);
        }
    }
});
