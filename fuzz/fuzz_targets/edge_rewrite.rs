//! The playlist rewriter on arbitrary bytes: never a panic; what it
//! accepts keeps its line count and `#EXTM3U` first line, and re-signing
//! a rewritten playlist gives what signing the original gives.
#![no_main]

use ferrocast_edge::rewrite::{RewriteConfig, Rewriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rewriter) = Rewriter::new(&RewriteConfig {
        own_origins: vec!["https://live.example.com".into()],
        ..RewriteConfig::default()
    }) else {
        return;
    };
    let Ok(out) = rewriter.rewrite_bytes(data, "tok1") else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        unreachable!("accepted non-UTF-8 input");
    };
    assert!(out.starts_with("#EXTM3U"));
    assert_eq!(
        out.split_inclusive('\n').count(),
        text.split_inclusive('\n').count()
    );
    let again = rewriter.rewrite(&out, "tok2").ok();
    assert_eq!(again, rewriter.rewrite(text, "tok2").ok());
});
