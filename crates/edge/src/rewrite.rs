//! The playlist rewriter: puts `token=<edge token>` on every URI of a
//! Multivariant or Media Playlist and leaves every other byte alone.
//!
//! It works line by line on the text (m3u8-rs reads EXT-X-PART,
//! EXT-X-PRELOAD-HINT and EXT-X-RENDITION-REPORT as unknown tags of the next
//! segment and drops those after the last one), so tags it does not know, comments, attribute
//! order, `BYTERANGE`s and line endings (LF or CRLF) come out as they went
//! in. RFC 8216bis §4.1: "Each line is a URI, is blank, or starts with the
//! character '#'." URIs sit in two places:
//!
//! - **URI lines**: every non-blank line not starting with `#` (the
//!   segment after `EXTINF`, the Media Playlist after `EXT-X-STREAM-INF`);
//! - **URI attributes** (quoted-strings) of `EXT-X-MAP`, `EXT-X-PART`,
//!   `EXT-X-PRELOAD-HINT`, `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`,
//!   `EXT-X-I-FRAME-STREAM-INF`, `EXT-X-SESSION-DATA` (`URI`),
//!   `EXT-X-CONTENT-STEERING` (`SERVER-URI`), and `EXT-X-KEY` /
//!   `EXT-X-SESSION-KEY` (`URI`, unless [`KeyUris::Leave`]).
//!
//! Which URIs get a token:
//!
//! - relative references that stay on the playlist's host: always;
//! - `http:`/`https:` URIs and network-path references (`//host/...`):
//!   only when they point at one of the configured own origins (a token
//!   must not leak to a third party);
//! - any other scheme (`data:`, `skd:`, ...): never.
//!
//! **Where a URI points is decided the way a browser decides it**: by the
//! WHATWG URL Standard's basic URL parser (players in browsers resolve
//! playlist URIs with it), not by RFC 3986 alone. Leading and trailing C0
//! controls and spaces are stripped and every tab, LF and CR removed
//! before anything is looked at; for `http`/`https` (special schemes) a
//! `\` is a `/`, so `\\host/x`, `/\host/x` and `\/host/x` are
//! network-path references; schemes are case-insensitive. A URI that
//! points at a foreign host is **left as it is, without a token**, like
//! any other foreign URI (not refused: a playlist may legitimately name a
//! CDN, and a refusal would let an origin's odd spelling take the whole
//! playlist down). Where the standard would still reach some host but the
//! spelling is unusual (three slashes or more, `http:host` without
//! slashes, user info, percent-encoded hosts), the URI is treated as
//! foreign too: a token is only ever added where the host is certain.
//!
//! In a URI that gets one, an existing `token` parameter is replaced (not
//! duplicated), other query parameters keep their order and bytes (empty
//! ones, as in `a?x=1&&y=2`, are dropped), a fragment stays at the end.
//! Rewriting an already rewritten playlist with a new token gives the
//! same text as rewriting the original with it.
//!
//! **Per request, without re-parsing.** A playlist is reloaded by every
//! viewer and changes only a few times a second, while each viewer gets its
//! own token. [`Rewriter::template`] parses a playlist once into a
//! [`Template`] (the rewritten text with a hole where each token goes), and
//! [`Template::render`] fills the holes: one exact-size allocation and
//! copies. [`TemplateCache`] keeps templates per upstream body, so a server
//! pays for the parse once per playlist version. The output is byte for
//! byte what [`Rewriter::rewrite_bytes`] gives (one code path writes both).

mod template;

pub use template::{DEFAULT_TEMPLATE_CACHE_BYTES, Template, TemplateCache, TemplateCacheStats};

use serde::{Deserialize, Serialize};

/// Default of [`RewriteConfig::token_param`].
pub const DEFAULT_TOKEN_PARAM: &str = "token";
/// Default of [`RewriteConfig::max_playlist_bytes`]: 8 MiB.
pub const DEFAULT_MAX_PLAYLIST_BYTES: usize = 8 * 1024 * 1024;
/// Longest token value [`Rewriter::rewrite`] accepts.
pub const MAX_TOKEN_VALUE_LEN: usize = 512;

/// Whether key URIs (`EXT-X-KEY`, `EXT-X-SESSION-KEY`) get the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUris {
    /// Sign them like every other URI (a key server behind this edge).
    #[default]
    Sign,
    /// Leave them as they are (a key server that checks its own
    /// credentials).
    Leave,
}

/// Rewriter settings (`[edge.rewrite]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// This edge's own origins, `scheme://host[:port]` (e.g.
    /// `https://live.example.com`): absolute URIs are signed only when
    /// they point at one of these. Default: none (only relative URIs are
    /// signed).
    #[serde(default)]
    pub own_origins: Vec<String>,
    /// Key URIs. Default `sign`.
    #[serde(default)]
    pub key_uris: KeyUris,
    /// The query parameter name. Default `token`.
    #[serde(default = "default_token_param")]
    pub token_param: String,
    /// Largest playlist accepted, bytes. Default 8 MiB.
    #[serde(default = "default_max_playlist_bytes")]
    pub max_playlist_bytes: usize,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            own_origins: Vec::new(),
            key_uris: KeyUris::default(),
            token_param: default_token_param(),
            max_playlist_bytes: DEFAULT_MAX_PLAYLIST_BYTES,
        }
    }
}

fn default_token_param() -> String {
    DEFAULT_TOKEN_PARAM.to_owned()
}

fn default_max_playlist_bytes() -> usize {
    DEFAULT_MAX_PLAYLIST_BYTES
}

/// A rewriter configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteConfigError {
    /// An own origin that is not `http[s]://host[:port]` (no path, query,
    /// fragment or user info).
    #[error("edge.rewrite: own origin {0:?} is not scheme://host[:port]")]
    BadOrigin(String),
    /// A parameter name that is empty or has characters beyond
    /// `[A-Za-z0-9._~-]`.
    #[error("edge.rewrite: token_param {0:?} must be 1+ characters of [A-Za-z0-9._~-]")]
    BadParam(String),
}

/// Why a playlist could not be rewritten. The server answers 502: the
/// origin (or the upstream) sent something that is not a playlist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// Larger than the configured bound.
    #[error("playlist is {len} bytes, more than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not UTF-8 (RFC 8216bis §4.1: "Playlist files MUST be encoded in
    /// UTF-8").
    #[error("playlist is not UTF-8")]
    NotUtf8,
    /// The first line is not `#EXTM3U` (§4.4.1.1: "It MUST be the first
    /// line of every Media Playlist and every Multivariant Playlist"); a
    /// byte order mark also lands here (§4.1: "MUST NOT contain any Byte
    /// Order Mark").
    #[error("not a playlist: first line is not #EXTM3U")]
    NotAPlaylist,
    /// The token value is empty, too long, or has characters that would
    /// need escaping (anything beyond `[A-Za-z0-9._~-]`).
    #[error("token value is not URL-safe")]
    BadToken,
}

/// An own origin: scheme, and authority lower-cased without its default
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// `host` or `host:port`, lower-case, without a default port.
    authority: String,
}

impl Origin {
    fn parse(s: &str) -> Option<Origin> {
        let s = s.strip_suffix('/').unwrap_or(s);
        let (scheme, rest) = s.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        Some(Origin {
            https,
            authority: without_default_port(rest, https)?.to_ascii_lowercase(),
        })
    }
}

/// An authority without the scheme's default port (`host:443` for https,
/// `host:80` for http, or an empty port); `None` if it has user info or a
/// non-numeric port. Compared case-insensitively, so nothing is allocated.
fn without_default_port(authority: &str, https: bool) -> Option<&str> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // The port follows the last ':' unless that is inside an IPv6 literal.
    match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port = &authority[colon + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let default = if https { "443" } else { "80" };
            if port.is_empty() || port.trim_start_matches('0') == default {
                Some(&authority[..colon])
            } else {
                Some(authority)
            }
        }
        _ => Some(authority),
    }
}

/// Rewrites playlists for one edge. Build once from [`RewriteConfig`].
#[derive(Debug, Clone)]
pub struct Rewriter {
    origins: Vec<Origin>,
    key_uris: KeyUris,
    param: String,
    max_len: usize,
}

/// Which attribute of a tag line holds a URI.
fn uri_attribute(tag: &str, key_uris: KeyUris) -> Option<&'static str> {
    match tag {
        "#EXT-X-MAP"
        | "#EXT-X-PART"
        | "#EXT-X-PRELOAD-HINT"
        | "#EXT-X-RENDITION-REPORT"
        | "#EXT-X-MEDIA"
        | "#EXT-X-I-FRAME-STREAM-INF"
        | "#EXT-X-SESSION-DATA" => Some("URI"),
        "#EXT-X-KEY" | "#EXT-X-SESSION-KEY" if key_uris == KeyUris::Sign => Some("URI"),
        "#EXT-X-CONTENT-STEERING" => Some("SERVER-URI"),
        _ => None,
    }
}

/// Characters a token value or parameter name may hold: RFC 3986
/// "unreserved", safe unescaped in a query and inside a quoted-string.
fn is_url_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Where the rewriter writes: text, and the places the token goes.
///
/// One walk over the playlist serves both the direct rewrite (the token
/// written in place) and the template (a hole recorded), so the two cannot
/// disagree.
trait Sink {
    fn text(&mut self, s: &str);
    fn token(&mut self);
}

/// Writes the token in place.
struct Direct<'a> {
    out: String,
    token: &'a str,
}

impl Sink for Direct<'_> {
    fn text(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn token(&mut self) {
        self.out.push_str(self.token);
    }
}

/// Checks a token value: URL-safe and not too long.
fn check_token(token: &str) -> Result<(), RewriteError> {
    if token.len() > MAX_TOKEN_VALUE_LEN || !is_url_safe(token) {
        return Err(RewriteError::BadToken);
    }
    Ok(())
}

impl Rewriter {
    /// Builds a rewriter, checking the origins and parameter name.
    pub fn new(config: &RewriteConfig) -> Result<Self, RewriteConfigError> {
        if !is_url_safe(&config.token_param) {
            return Err(RewriteConfigError::BadParam(config.token_param.clone()));
        }
        let origins = config
            .own_origins
            .iter()
            .map(|o| Origin::parse(o).ok_or_else(|| RewriteConfigError::BadOrigin(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Rewriter {
            origins,
            key_uris: config.key_uris,
            param: config.token_param.clone(),
            max_len: config.max_playlist_bytes,
        })
    }

    /// As [`rewrite`](Self::rewrite), for a body that may not be UTF-8.
    pub fn rewrite_bytes(&self, playlist: &[u8], token: &str) -> Result<String, RewriteError> {
        if playlist.len() > self.max_len {
            return Err(RewriteError::TooLarge {
                len: playlist.len(),
                max: self.max_len,
            });
        }
        let text = std::str::from_utf8(playlist).map_err(|_| RewriteError::NotUtf8)?;
        self.rewrite(text, token)
    }

    /// Returns `playlist` with `token` on every URI that should carry it.
    ///
    /// One output `String`, sized up front for one token per line; no
    /// other allocation.
    pub fn rewrite(&self, playlist: &str, token: &str) -> Result<String, RewriteError> {
        self.check_len(playlist.len())?;
        check_token(token)?;
        check_header(playlist)?;
        let lines = playlist.bytes().filter(|b| *b == b'\n').count() + 1;
        // Each line gains at most "&token=<value>" (more only on a line
        // with several URI attributes, which no tag we sign has).
        let per_line = 2 + self.param.len() + token.len();
        let mut out = Direct {
            out: String::with_capacity(playlist.len() + lines.min(1 << 20) * per_line),
            token,
        };
        self.write_playlist(&mut out, playlist);
        Ok(out.out)
    }

    /// Parses `playlist` once into a [`Template`]: its rewritten text with
    /// a hole where each token goes. The same checks as
    /// [`rewrite_bytes`](Self::rewrite_bytes) but the token's (done by
    /// [`Template::render`]).
    pub fn template(&self, playlist: bytes::Bytes) -> Result<Template, RewriteError> {
        self.check_len(playlist.len())?;
        let text = std::str::from_utf8(&playlist).map_err(|_| RewriteError::NotUtf8)?;
        check_header(text)?;
        let mut recorder = template::Recorder::with_capacity(text.len());
        self.write_playlist(&mut recorder, text);
        Ok(recorder.finish(playlist))
    }

    fn check_len(&self, len: usize) -> Result<(), RewriteError> {
        if len > self.max_len {
            return Err(RewriteError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        Ok(())
    }

    fn write_playlist(&self, out: &mut impl Sink, playlist: &str) {
        for raw in playlist.split_inclusive('\n') {
            let (line, eol) = split_eol(raw);
            if line.starts_with('#') {
                self.write_tag_line(out, line);
            } else {
                self.write_uri_line(out, line);
            }
            out.text(eol);
        }
    }

    /// A URI line: the URI is the line less surrounding blanks, which stay.
    fn write_uri_line(&self, out: &mut impl Sink, line: &str) {
        let uri = line.trim_matches([' ', '\t']);
        if uri.is_empty() {
            out.text(line);
            return;
        }
        let lead = line.len() - line.trim_start_matches([' ', '\t']).len();
        out.text(&line[..lead]);
        self.write_uri(out, uri);
        out.text(&line[lead + uri.len()..]);
    }

    fn write_tag_line(&self, out: &mut impl Sink, line: &str) {
        let Some((tag, attrs)) = line.split_once(':') else {
            out.text(line);
            return;
        };
        let Some(name) = uri_attribute(tag, self.key_uris) else {
            out.text(line);
            return;
        };
        let Some((start, end)) = find_quoted_attribute(attrs, name) else {
            // No such attribute (EXT-X-KEY:METHOD=NONE), or an attribute
            // list we cannot read: leave it as it is.
            out.text(line);
            return;
        };
        let offset = tag.len() + 1;
        out.text(&line[..offset + start]);
        self.write_uri(out, &attrs[start..end]);
        out.text(&line[offset + end..]);
    }

    /// Writes `uri`, with the token if it should carry one.
    ///
    /// The leading and trailing C0 controls and spaces a browser strips
    /// (see [`url_input`]) stay where they are, around the signed URI, so
    /// that the token lands inside what the browser reads.
    fn write_uri(&self, out: &mut impl Sink, uri: &str) {
        let inner = uri.trim_matches(is_c0_or_space);
        if !self.should_sign(inner) {
            out.text(uri);
            return;
        }
        let lead = uri.len() - uri.trim_start_matches(is_c0_or_space).len();
        out.text(&uri[..lead]);
        write_with_param(out, inner, &self.param);
        out.text(&uri[lead + inner.len()..]);
    }

    fn should_sign(&self, uri: &str) -> bool {
        match resolve(&url_input(uri)) {
            Reach::Nothing | Reach::Foreign => false,
            Reach::BaseHost => true,
            Reach::Authority { https, authority } => self.origins.iter().any(|o| {
                // A network-path reference takes the playlist's scheme,
                // which the edge does not know here (HTTPS, or the
                // development listener's HTTP): the host must be ours
                // under the origin's own scheme.
                https.is_none_or(|https| https == o.https)
                    && without_default_port(authority, o.https)
                        .is_some_and(|a| a.eq_ignore_ascii_case(&o.authority))
            }),
        }
    }
}

/// WHATWG URL Standard: "A C0 control or space is a C0 control or U+0020
/// SPACE", and "A C0 control is a code point in the range U+0000 NULL to
/// U+001F INFORMATION SEPARATOR ONE, inclusive."
fn is_c0_or_space(c: char) -> bool {
    c <= ' '
}

/// WHATWG URL Standard: "An ASCII tab or newline is U+0009 TAB, U+000A LF,
/// or U+000D CR."
fn is_tab_or_newline(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
}

/// `uri` as the WHATWG URL Standard's basic URL parser reads it:
///
/// > 1. If input contains any leading or trailing C0 control or space,
/// >    invalid-URL-unit validation error. Remove any leading and trailing
/// >    C0 control or space from input.
/// > 2. If input contains any ASCII tab or newline, invalid-URL-unit
/// >    validation error.
/// > 3. Remove all ASCII tab or newline from input.
///
/// Borrowed unless a tab or newline has to go.
fn url_input(uri: &str) -> std::borrow::Cow<'_, str> {
    let uri = uri.trim_matches(is_c0_or_space);
    if uri.contains(is_tab_or_newline) {
        std::borrow::Cow::Owned(uri.chars().filter(|&c| !is_tab_or_newline(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(uri)
    }
}

/// Where a browser that loaded a playlist from this edge (an `https:` or
/// `http:` URL, both special schemes) goes for a URI in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach<'a> {
    /// An empty reference (the playlist itself): nothing to sign.
    Nothing,
    /// The playlist's own host: a path, a query or a fragment.
    BaseHost,
    /// The host and port in `authority`, under `https` (`None`: the
    /// playlist's scheme, for a network-path reference).
    Authority {
        https: Option<bool>,
        authority: &'a str,
    },
    /// Another scheme, or a spelling not worth resolving: never signed.
    Foreign,
}

/// For special schemes the URL Standard reads `\` as `/` (e.g. "relative
/// state": "Otherwise, if url is special and c is U+005C (`\`),
/// invalid-reverse-solidus validation error. Set state to relative slash
/// state.").
fn is_slash(b: u8) -> bool {
    matches!(b, b'/' | b'\\')
}

/// Where `input` (already through [`url_input`]) reaches, following the
/// URL Standard's basic URL parser with a special base URL.
///
/// - "scheme start state": an ASCII alpha starts a scheme, then "scheme
///   state": ASCII alphanumerics, `+`, `-`, `.` up to a `:`; anything else
///   means no scheme ("no scheme state", then "relative state").
/// - With a scheme: `http` and `https` go on ("special authority slashes
///   state" or, same scheme as the base, "special relative or authority
///   state"); any other scheme is not ours. Exactly two slashes (`/` or
///   `\`) then an authority is an absolute URL; anything else is treated
///   as foreign: `https:x` is a path on the base host only if the base
///   was HTTPS, `http:x` under an HTTPS base is host `x` ("special
///   authority ignore slashes state" skips any number of slashes).
/// - Without a scheme ("relative state", then "relative slash state"):
///   two slashes (`/` or `\`) start an authority (a network-path
///   reference; a third is skipped by the standard, and treated as
///   foreign here), one or none stays on the base host.
/// - "authority state" ends at `/`, `\`, `?` or `#`.
fn resolve(input: &str) -> Reach<'_> {
    if input.is_empty() {
        return Reach::Nothing;
    }
    let (https, rest) = match scheme(input) {
        None => (None, input),
        Some(scheme) => {
            let https = if scheme.eq_ignore_ascii_case("https") {
                true
            } else if scheme.eq_ignore_ascii_case("http") {
                false
            } else {
                return Reach::Foreign;
            };
            (Some(https), &input[scheme.len() + 1..])
        }
    };
    let b = rest.as_bytes();
    let slashes = b.iter().take(3).take_while(|&&c| is_slash(c)).count();
    match (https, slashes) {
        (None, 0 | 1) => Reach::BaseHost,
        (_, 2) => {
            let rest = &rest[2..];
            let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
            Reach::Authority {
                https,
                authority: &rest[..end],
            }
        }
        _ => Reach::Foreign,
    }
}

/// The scheme of an absolute URL: URL Standard "scheme start state" and
/// "scheme state" (as RFC 3986 §3.1, `ALPHA *( ALPHA / DIGIT / "+" / "-"
/// / "." )` followed by `:`), or `None` for a relative reference (the
/// first character that cannot be part of a scheme comes before any `:`).
fn scheme(uri: &str) -> Option<&str> {
    let b = uri.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    (b[end] == b':').then(|| &uri[..end])
}

/// The first line must be `#EXTM3U`.
fn check_header(playlist: &str) -> Result<(), RewriteError> {
    let first = playlist.split('\n').next().unwrap_or("");
    if first.trim_end_matches(['\r', ' ', '\t']) != "#EXTM3U" {
        return Err(RewriteError::NotAPlaylist);
    }
    Ok(())
}

/// Writes `uri` with `param=<token>` as its last query parameter: earlier
/// `param` parameters and empty ones dropped, the fragment kept last.
fn write_with_param(out: &mut impl Sink, uri: &str, param: &str) {
    let (before_fragment, fragment) = match uri.find('#') {
        Some(i) => uri.split_at(i),
        None => (uri, ""),
    };
    let (path, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], &before_fragment[i + 1..]),
        None => (before_fragment, ""),
    };
    out.text(path);
    out.text("?");
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        // Compared as the browser will send it, tabs and newlines removed
        // (see `url_input`): `to<TAB>ken=old` is a `token` parameter too.
        let same = name
            .chars()
            .filter(|&c| !is_tab_or_newline(c))
            .eq(param.chars());
        if pair.is_empty() || same {
            continue;
        }
        out.text(pair);
        out.text("&");
    }
    out.text(param);
    out.text("=");
    out.token();
    out.text(fragment);
}

/// Splits a line from `split_inclusive('\n')` into its text and its
/// terminator (`"\r\n"`, `"\n"`, or `""` for a last line without one; a
/// lone `\r` at the very end counts as a terminator too).
fn split_eol(raw: &str) -> (&str, &str) {
    let text_len = if raw.ends_with("\r\n") {
        raw.len() - 2
    } else if raw.ends_with('\n') || raw.ends_with('\r') {
        raw.len() - 1
    } else {
        raw.len()
    };
    raw.split_at(text_len)
}

/// Finds the quoted-string value of attribute `name` in an attribute list,
/// returning the byte range of the text between the quotes.
///
/// RFC 8216bis §4.2: "An attribute-list is a comma-separated list of
/// attribute/value pairs with no whitespace. An attribute/value pair has
/// the following syntax: AttributeName=AttributeValue"; a quoted-string
/// is "a string of characters within a pair of double quotes (0x22). The
/// following characters MUST NOT appear in a quoted-string: line feed
/// (0xA), carriage return (0xD), or double quote (0x22)." Unquoted values
/// hold no comma. Blanks around names are tolerated.
fn find_quoted_attribute(attrs: &str, name: &str) -> Option<(usize, usize)> {
    let b = attrs.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let name_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        if b[i] == b',' {
            // A name without a value: skip it.
            i += 1;
            continue;
        }
        let this = attrs[name_start..i].trim_matches([' ', '\t']);
        i += 1;
        if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let end = start + attrs[start..].find('"')?;
            if this == name {
                return Some((start, end));
            }
            i = end + 1;
        } else if this == name {
            // The attribute is there but not quoted: not ours to touch.
            return None;
        }
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter(origins: &[&str]) -> Rewriter {
        Rewriter::new(&RewriteConfig {
            own_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..RewriteConfig::default()
        })
        .unwrap()
    }

    fn uri(r: &Rewriter, u: &str) -> String {
        let mut out = Direct {
            out: String::new(),
            token: "T",
        };
        r.write_uri(&mut out, u);
        out.out
    }

    #[test]
    fn query_and_fragment_handling() {
        let r = rewriter(&[]);
        assert_eq!(uri(&r, "seg1.m4s"), "seg1.m4s?token=T");
        assert_eq!(uri(&r, "a.m3u8?x=1"), "a.m3u8?x=1&token=T");
        assert_eq!(uri(&r, "a.m3u8?"), "a.m3u8?token=T");
        assert_eq!(uri(&r, "a?token=old"), "a?token=T");
        assert_eq!(uri(&r, "a?token"), "a?token=T");
        assert_eq!(uri(&r, "a?x=1&token=old&y=2"), "a?x=1&y=2&token=T");
        assert_eq!(
            uri(&r, "a?tokens=1&xtoken=2"),
            "a?tokens=1&xtoken=2&token=T"
        );
        assert_eq!(uri(&r, "a?x=1&&y=&"), "a?x=1&y=&token=T");
        assert_eq!(uri(&r, "a#t=10"), "a?token=T#t=10");
        assert_eq!(uri(&r, "a?x=1#frag?no"), "a?x=1&token=T#frag?no");
        assert_eq!(uri(&r, "../v/720p.m3u8"), "../v/720p.m3u8?token=T");
        assert_eq!(uri(&r, "/live/s/seg1.m4s"), "/live/s/seg1.m4s?token=T");
        assert_eq!(uri(&r, "./a:b.m4s"), "./a:b.m4s?token=T");
    }

    #[test]
    fn absolute_uris_only_to_own_origins() {
        let r = rewriter(&["https://Edge.Example.com", "http://10.0.0.1:8080/"]);
        for own in [
            "https://edge.example.com/s/seg1.m4s",
            "HTTPS://EDGE.EXAMPLE.COM:443/s/seg1.m4s",
            "https://edge.example.com",
            "https://edge.example.com?x=1",
            "http://10.0.0.1:8080/a.m3u8",
            "//edge.example.com/a.m3u8",
        ] {
            assert!(uri(&r, own).contains("token=T"), "{own}");
        }
        for foreign in [
            "https://cdn.other.net/s/seg1.m4s",
            "http://edge.example.com/s/seg1.m4s",
            "https://edge.example.com:8443/x",
            "https://edge.example.com.evil.net/x",
            "https://edge.example.com@evil.net/x",
            "https://evil.net@edge.example.com/x",
            "http://10.0.0.1/a.m3u8",
            "//cdn.other.net/a.m3u8",
            "data:text/plain;base64,AAAA",
            "skd://key-id-123",
            "urn:uuid:1234",
            "https:relative-looking",
        ] {
            assert_eq!(uri(&r, foreign), foreign, "{foreign}");
        }
        // No origins configured: absolute URIs are never signed.
        let none = rewriter(&[]);
        let u = "https://edge.example.com/a";
        assert_eq!(uri(&none, u), u);
    }

    /// WHATWG URL Standard spellings of another host: backslashes for
    /// slashes, C0 controls and spaces around, tabs and newlines inside,
    /// any case in the scheme. None gets the token.
    #[test]
    fn what_a_browser_reads_as_another_host_is_foreign() {
        let r = rewriter(&["https://edge.example.com"]);
        for foreign in [
            "\\\\evil.net/x",
            "/\\evil.net/x",
            "\\/evil.net/x",
            "\\\\evil.net",
            "\\\\edge.example.com.evil.net/x",
            "//evil.net\\@edge.example.com/x",
            "\\\\evil.net\\@edge.example.com/x",
            "\t//evil.net/x",
            "/\t/evil.net/x",
            "/\r/evil.net/x",
            "\\\t\\evil.net/x",
            "\u{0}//evil.net/x",
            "\u{1f}\\\\evil.net/x",
            "\u{b}\u{c}//evil.net/x",
            " //evil.net/x",
            "//evil.net/x\u{1}",
            "///evil.net/x",
            "\\\\\\evil.net/x",
            "///edge.example.com/x",
            "HTTPS://evil.net/x",
            "hTtPs://evil.net/x",
            "https:\\\\evil.net/x",
            "https:/\\evil.net/x",
            "hTtP:\\/evil.net/x",
            "https:\t//evil.net/x",
            "ht\ttps://evil.net/x",
            "h\rttps://evil.net/x",
            "https://evil.net\\edge.example.com/x",
            "http:evil.net/x",
            "https:evil.net/x",
            "https:///evil.net/x",
            "\u{1}hTtPs://evil.net/x",
            "//edge.example.com%2eevil.net/x",
            "javascript:alert(1)",
            "\tdata:,x",
            "",
            "\u{0}",
        ] {
            assert_eq!(uri(&r, foreign), foreign, "{foreign:?}");
        }
    }

    /// The same spellings for this edge's own host are signed, the token
    /// inside what the browser reads.
    #[test]
    fn what_a_browser_reads_as_this_host_is_signed() {
        let r = rewriter(&["https://edge.example.com"]);
        for (own, signed) in [
            ("\\\\edge.example.com/x", "\\\\edge.example.com/x?token=T"),
            ("/\\edge.example.com/x", "/\\edge.example.com/x?token=T"),
            (
                "hTtPs://EDGE.example.com/x",
                "hTtPs://EDGE.example.com/x?token=T",
            ),
            (
                "HTTPS:\\\\edge.example.com:443/x",
                "HTTPS:\\\\edge.example.com:443/x?token=T",
            ),
            ("\t//edge.example.com/x", "\t//edge.example.com/x?token=T"),
            ("//edge.ex\tample.com/x", "//edge.ex\tample.com/x?token=T"),
            ("//edge.example.com\\x", "//edge.example.com\\x?token=T"),
            // Relative references stay on the playlist's host.
            ("/x\\evil.net/y", "/x\\evil.net/y?token=T"),
            ("\\x/y", "\\x/y?token=T"),
            ("a\\\\evil.net", "a\\\\evil.net?token=T"),
            ("\u{0}seg1.m4s\u{b}", "\u{0}seg1.m4s?token=T\u{b}"),
            (" seg1.m4s#f ", " seg1.m4s?token=T#f "),
            ("a?to\tken=old&x=1", "a?x=1&token=T"),
            ("a\\b:c", "a\\b:c?token=T"),
        ] {
            assert_eq!(uri(&r, own), signed, "{own:?}");
        }
    }

    #[test]
    fn urls_as_the_parser_reads_them() {
        assert_eq!(url_input(" \u{0}a\tb\nc\rd\u{1f} "), "abcd");
        assert!(matches!(
            url_input("seg1.m4s"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(scheme("hTtPs://x"), Some("hTtPs"));
        assert_eq!(scheme("a+b-c.d:x"), Some("a+b-c.d"));
        for none in [
            "1a:x", "a_b:x", "a\\b:x", "seg1.m4s", "a?b:c", "/a:b", ":x", "",
        ] {
            assert_eq!(scheme(none), None, "{none:?}");
        }
        assert_eq!(resolve(""), Reach::Nothing);
        assert_eq!(resolve("a/b"), Reach::BaseHost);
        assert_eq!(resolve("/a"), Reach::BaseHost);
        assert_eq!(resolve("\\a"), Reach::BaseHost);
        assert_eq!(resolve("?x"), Reach::BaseHost);
        assert_eq!(
            resolve("\\/h:8080?x"),
            Reach::Authority {
                https: None,
                authority: "h:8080"
            }
        );
        assert_eq!(
            resolve("HTTP:/\\h#x"),
            Reach::Authority {
                https: Some(false),
                authority: "h"
            }
        );
        assert_eq!(resolve("///h"), Reach::Foreign);
        assert_eq!(resolve("https:h"), Reach::Foreign);
        assert_eq!(resolve("wss://h"), Reach::Foreign);
    }

    #[test]
    fn origins_are_checked() {
        for bad in [
            "edge.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://",
            "https://x:port",
        ] {
            let c = RewriteConfig {
                own_origins: vec![bad.into()],
                ..RewriteConfig::default()
            };
            assert!(Rewriter::new(&c).is_err(), "{bad}");
        }
        let c = RewriteConfig {
            token_param: "to ken".into(),
            ..RewriteConfig::default()
        };
        assert!(matches!(
            Rewriter::new(&c),
            Err(RewriteConfigError::BadParam(_))
        ));
        let o = Origin::parse("https://[::1]:443").unwrap();
        assert_eq!(o.authority, "[::1]");
        let o = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!(o.authority, "[::1]:8080");
    }

    #[test]
    fn attribute_lists() {
        let f = find_quoted_attribute;
        let a = r#"TYPE=PART,URI="part1.2.m4s""#;
        assert_eq!(
            &a[f(a, "URI").unwrap().0..f(a, "URI").unwrap().1],
            "part1.2.m4s"
        );
        // A quoted value holding "URI=" and commas is not the attribute.
        let a = r#"NAME="URI=x,URI=\"",URI="real""#;
        assert_eq!(f(a, "URI").map(|(s, e)| &a[s..e]), Some("real"));
        let a = r#"NAME="a,URI=b",URI="real""#;
        assert_eq!(f(a, "URI").map(|(s, e)| &a[s..e]), Some("real"));
        let a = r#"X-URI="no",URI="yes""#;
        assert_eq!(f(a, "URI").map(|(s, e)| &a[s..e]), Some("yes"));
        assert_eq!(f("METHOD=NONE", "URI"), None);
        assert_eq!(f(r#"URI="unterminated"#, "URI"), None);
        assert_eq!(f("URI=unquoted", "URI"), None);
        assert_eq!(f("", "URI"), None);
        assert_eq!(f(",,=,", "URI"), None);
        let a = r#"BANDWIDTH=1, URI="spaced""#;
        assert_eq!(f(a, "URI").map(|(s, e)| &a[s..e]), Some("spaced"));
    }

    #[test]
    fn refusals() {
        let r = rewriter(&[]);
        assert_eq!(r.rewrite("", "T"), Err(RewriteError::NotAPlaylist));
        assert_eq!(r.rewrite("seg.ts\n", "T"), Err(RewriteError::NotAPlaylist));
        assert_eq!(
            r.rewrite("\u{feff}#EXTM3U\n", "T"),
            Err(RewriteError::NotAPlaylist)
        );
        assert_eq!(
            r.rewrite("#EXTM3U8\n", "T"),
            Err(RewriteError::NotAPlaylist)
        );
        assert_eq!(r.rewrite("#EXTM3U\n", "a b"), Err(RewriteError::BadToken));
        assert_eq!(r.rewrite("#EXTM3U\n", "a\"b"), Err(RewriteError::BadToken));
        assert_eq!(r.rewrite("#EXTM3U\n", ""), Err(RewriteError::BadToken));
        assert_eq!(
            r.rewrite_bytes(b"#EXTM3U\n\xff\n", "T"),
            Err(RewriteError::NotUtf8)
        );
        let small = Rewriter::new(&RewriteConfig {
            max_playlist_bytes: 10,
            ..RewriteConfig::default()
        })
        .unwrap();
        assert_eq!(
            small.rewrite("#EXTM3U\nabcdefgh\n", "T"),
            Err(RewriteError::TooLarge { len: 17, max: 10 })
        );
        assert_eq!(r.rewrite("#EXTM3U", "T").unwrap(), "#EXTM3U");
        assert_eq!(r.rewrite("#EXTM3U\r\n", "T").unwrap(), "#EXTM3U\r\n");
    }
}
