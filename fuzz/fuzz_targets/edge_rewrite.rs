//! The playlist rewriter on arbitrary bytes: never a panic; what it
//! accepts keeps its line count and `#EXTM3U` first line, re-signing a
//! rewritten playlist gives what signing the original gives, and the
//! template the edge serves from renders byte for byte what the rewriter
//! writes (and refuses what it refuses).
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
    let template = rewriter.template(bytes::Bytes::copy_from_slice(data));
    let direct = rewriter.rewrite_bytes(data, "tok1");
    match (&template, &direct) {
        (Ok(template), Ok(out)) => {
            assert_eq!(template.render("tok1").ok().as_deref(), Some(out.as_bytes()));
        }
        (Err(_), Err(_)) => {}
        _ => panic!("template and rewriter disagree on accepting the input"),
    }
    let Ok(out) = direct else {
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
