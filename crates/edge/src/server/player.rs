//! The player page, `/play/NAME`: hls.js in low-latency mode on the edge's
//! own origin, so it needs no CORS and no server of its own.
//!
//! The viewer JWT rides in the URL's fragment (`/play/NAME#token=JWT`, the
//! link the control plane's API hands out): browsers never send a fragment,
//! so the token stays out of access logs and `Referer` headers. The page
//! presents it as `Authorization: Bearer` on the Multivariant Playlist
//! request only; every later URI carries the edge's own short-lived token.
//!
//! The page shows the live latency (hls.js's estimate from the playlist's
//! program date-time), the rendition playing and a shareable link; its
//! state is also in `window.ferrocastPlayer` for tests and embedders.

use bytes::Bytes;
use ferrocast_media::StreamName;
use http::{HeaderValue, Response, StatusCode, header};

/// Where the page loads hls.js from unless `[edge] player_script_url`
/// says otherwise: jsDelivr's copy of the npm release the tests run.
pub const DEFAULT_HLS_JS_URL: &str = "https://cdn.jsdelivr.net/npm/hls.js@1.7.4/dist/hls.min.js";

/// Subresource Integrity of [`DEFAULT_HLS_JS_URL`]: the browser refuses
/// any other bytes (a compromised CDN cannot run code in the page).
pub const DEFAULT_HLS_JS_INTEGRITY: &str =
    "sha384-p9vgU/7IYJWd3I4STrtqxqR/2cAQlhIX7D/HrTnIMEjjcUox165b7se7sxmm3zDg";

/// The stream of a player page path: `/play/NAME` with a valid name.
pub(crate) fn stream_of(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/play/")?;
    StreamName::new(name).ok()?;
    Some(name)
}

/// The page for `stream` (already validated: `[A-Za-z0-9._-]` only, so it
/// needs no escaping), loading hls.js from `script_url` (a validated
/// URL), with its integrity when it is the default.
pub(crate) fn page(stream: &str, script_url: Option<&str>) -> Response<Bytes> {
    let script = match script_url {
        None => format!(
            r#"<script src="{DEFAULT_HLS_JS_URL}" integrity="{DEFAULT_HLS_JS_INTEGRITY}" crossorigin="anonymous"></script>"#
        ),
        Some(url) => format!(r#"<script src="{url}"></script>"#),
    };
    let html = TEMPLATE
        .replace("{{STREAM}}", stream)
        .replace("{{HLS_JS}}", &script);
    let mut response = Response::new(Bytes::from(html));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page never sends its address (and so never the token, should a
    // browser keep the fragment) to another site.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    response
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{STREAM}} · Ferrocast</title>
<style>
  body { margin: 0; font: 15px/1.4 system-ui, sans-serif; background: #111; color: #eee; }
  main { max-width: 1280px; margin: 0 auto; padding: 12px; }
  video { width: 100%; background: #000; aspect-ratio: 16 / 9; }
  .bar { display: flex; flex-wrap: wrap; gap: 18px; align-items: center; margin: 8px 0; }
  .bar b { color: #8cf; }
  #share { flex: 1; min-width: 240px; background: #222; color: #eee; border: 1px solid #444; padding: 4px; }
  #status.error { color: #f77; }
</style>
</head>
<body>
<main>
  <h1>{{STREAM}}</h1>
  <video id="video" controls muted autoplay playsinline></video>
  <div class="bar">
    <span>Latency <b id="latency">–</b></span>
    <span>Rendition <b id="rendition">–</b></span>
    <span id="status">loading</span>
  </div>
  <div class="bar">
    <label for="share">Share</label>
    <input id="share" readonly>
    <button id="copy" type="button">Copy</button>
  </div>
</main>
{{HLS_JS}}
<script>
"use strict";
(() => {
  const stream = "{{STREAM}}";
  const playlist = "/live/" + stream + "/index.m3u8";
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const video = document.getElementById("video");
  const status = document.getElementById("status");
  const state = { stream, latency: null, rendition: null, level: null, playing: false, error: null };
  window.ferrocastPlayer = state;
  const share = document.getElementById("share");
  share.value = location.href;
  document.getElementById("copy").onclick = () => navigator.clipboard.writeText(share.value);
  const fail = (text) => {
    state.error = text;
    status.textContent = text;
    status.className = "error";
  };
  if (!token) { fail("this link has no viewer token (#token=…)"); return; }
  if (typeof Hls === "undefined" || !Hls.isSupported()) { fail("this browser cannot play HLS with hls.js"); return; }
  const hls = new Hls({
    lowLatencyMode: true,
    xhrSetup(xhr, url) {
      // The JWT goes to the Multivariant Playlist only; every later URI
      // carries the edge's own token.
      if (new URL(url, location.href).pathname === playlist) {
        xhr.setRequestHeader("Authorization", "Bearer " + token);
      }
    },
  });
  state.hls = hls;
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
    const level = hls.levels[data.level];
    state.level = data.level;
    state.rendition = level ? (level.height ? level.height + "p" : "audio") + " · " + Math.round(level.bitrate / 1000) + " kb/s" : null;
    document.getElementById("rendition").textContent = state.rendition ?? "–";
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (!data.fatal) return;
    const code = data.response && data.response.code;
    fail(code === 401 || code === 403 ? "the viewer token was refused (" + code + ")" : "playback failed: " + data.details);
  });
  video.addEventListener("playing", () => { state.playing = true; status.textContent = "playing"; status.className = ""; });
  video.addEventListener("waiting", () => { status.textContent = "buffering"; });
  setInterval(() => {
    if (Number.isFinite(hls.latency) && hls.latency > 0) {
      state.latency = hls.latency;
      document.getElementById("latency").textContent = hls.latency.toFixed(2) + " s";
    }
  }, 500);
  hls.loadSource(playlist);
  hls.attachMedia(video);
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_stream_names_get_a_page() {
        assert_eq!(stream_of("/play/news-1"), Some("news-1"));
        for bad in [
            "/play/",
            "/play/a/b",
            "/play/..",
            "/play/<script>",
            "/play/a%2Fb",
            "/live/a",
        ] {
            assert_eq!(stream_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_page_names_its_stream_and_pins_the_default_script() {
        let response = page("news-1", None);
        assert_eq!(response.status(), StatusCode::OK);
        let html = std::str::from_utf8(response.body()).unwrap();
        assert!(html.contains(r#"const stream = "news-1";"#));
        assert!(html.contains(DEFAULT_HLS_JS_INTEGRITY));
        assert!(!html.contains("{{"));
        let own = page("news-1", Some("/assets/hls.min.js"));
        let html = std::str::from_utf8(own.body()).unwrap();
        assert!(html.contains(r#"<script src="/assets/hls.min.js"></script>"#));
        assert!(!html.contains("integrity"));
    }

    #[test]
    fn script_urls_cannot_leave_their_attribute() {
        assert!(crate::valid_player_script_url(
            "https://cdn.example/hls.min.js"
        ));
        assert!(crate::valid_player_script_url("/static/hls.min.js"));
        for bad in [
            "http://cdn.example/hls.js",
            "//cdn.example/hls.js",
            "javascript:alert(1)",
            "https://x\"onload=\"alert(1)",
            "https://x/a b.js",
            "https://x/<",
            "",
        ] {
            assert!(!crate::valid_player_script_url(bad), "{bad}");
        }
    }
}
