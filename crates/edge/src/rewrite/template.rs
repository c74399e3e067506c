//! Rewrite templates: a playlist parsed once, signed per request by
//! filling holes, and a bounded cache of them keyed by the upstream body.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::{RewriteError, Rewriter, Sink, check_token};

/// Default bound of a [`TemplateCache`]: 16 MiB.
pub const DEFAULT_TEMPLATE_CACHE_BYTES: usize = 16 << 20;

/// A playlist rewritten with a hole where each token goes
/// ([`Rewriter::template`]).
///
/// Holds the upstream body it was made from, so that a cache can check
/// that a body is really the one it was made from.
#[derive(Debug, Clone)]
pub struct Template {
    /// The upstream body.
    source: Bytes,
    /// The rewritten text without the tokens.
    literal: Box<str>,
    /// Byte offsets into `literal` where a token goes, ascending.
    holes: Box<[usize]>,
}

impl Template {
    /// The playlist with `token` in every hole: what
    /// [`Rewriter::rewrite_bytes`] gives for the same body and token. One
    /// allocation of the exact size.
    pub fn render(&self, token: &str) -> Result<Bytes, RewriteError> {
        check_token(token)?;
        let mut out = Vec::with_capacity(self.literal.len() + self.holes.len() * token.len());
        let literal = self.literal.as_bytes();
        let mut at = 0;
        for &hole in self.holes.iter() {
            out.extend_from_slice(&literal[at..hole]);
            out.extend_from_slice(token.as_bytes());
            at = hole;
        }
        out.extend_from_slice(&literal[at..]);
        Ok(Bytes::from(out))
    }

    /// The upstream body this template was made from.
    pub fn source(&self) -> &Bytes {
        &self.source
    }

    /// How many tokens a rendering holds.
    pub fn holes(&self) -> usize {
        self.holes.len()
    }

    /// Bytes this template is charged in a cache: its source, its text,
    /// its holes and some bookkeeping.
    fn size(&self) -> usize {
        const OVERHEAD: usize = 128;
        OVERHEAD
            + self.source.len()
            + self.literal.len()
            + self.holes.len() * std::mem::size_of::<usize>()
    }
}

/// The template's [`Sink`]: text accumulates, the token leaves a hole.
pub(super) struct Recorder {
    literal: String,
    holes: Vec<usize>,
}

impl Recorder {
    pub(super) fn with_capacity(len: usize) -> Self {
        Recorder {
            literal: String::with_capacity(len + len / 8),
            holes: Vec::new(),
        }
    }

    pub(super) fn finish(self, source: Bytes) -> Template {
        Template {
            source,
            literal: self.literal.into_boxed_str(),
            holes: self.holes.into_boxed_slice(),
        }
    }
}

impl Sink for Recorder {
    fn text(&mut self, s: &str) {
        self.literal.push_str(s);
    }

    fn token(&mut self) {
        self.holes.push(self.literal.len());
    }
}

/// Templates of recent upstream playlists, so that a playlist reloaded by
/// many viewers is parsed once per version rather than once per request.
///
/// Keyed by a hash of the body; an entry is used only when its source is
/// byte for byte the body asked about, so a changed playlist never gets a
/// stale template. Least recently used entries go first once the entries'
/// bytes (source, text, holes) pass the bound. Cheap to share: one lock
/// around a map lookup.
#[derive(Debug)]
pub struct TemplateCache {
    rewriter: Rewriter,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    map: HashMap<u64, Entry>,
    /// Buffer identity (address, length) → key, for the bodies an entry
    /// holds: the same `Bytes` asked about again (a playlist the
    /// coalescing layer answers many viewers with) is found without
    /// hashing or comparing it.
    by_buffer: HashMap<(usize, usize), u64>,
    /// Last use → key; the first is the least recently used.
    order: BTreeMap<u64, u64>,
    tick: u64,
    bytes: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Entry {
    template: Arc<Template>,
    /// The latest buffer with the template's source text that was asked
    /// about, when it is not the source itself. Held, so that its address
    /// cannot be reused by another body while it is in `by_buffer`.
    latest: Option<Bytes>,
    used: u64,
}

impl Entry {
    /// Bytes charged: the template, and the other buffer held.
    fn size(&self) -> usize {
        self.template.size() + self.latest.as_ref().map_or(0, Bytes::len)
    }
}

/// A buffer's identity: where it is and how long.
fn identity(body: &Bytes) -> (usize, usize) {
    (body.as_ptr() as usize, body.len())
}

/// A [`TemplateCache`]'s counters and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateCacheStats {
    /// Rewrites that found their template.
    pub hits: u64,
    /// Rewrites that had to parse the body.
    pub misses: u64,
    /// Templates held now.
    pub entries: u64,
    /// Bytes they are charged.
    pub bytes: u64,
}

fn key_of(body: &[u8]) -> u64 {
    // Fixed keys: the hash only spreads entries; equality decides a hit.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

impl TemplateCache {
    /// A cache for `rewriter`'s templates, charged at most `capacity`
    /// bytes (a template larger than that is used once and not kept).
    pub fn new(rewriter: Rewriter, capacity: usize) -> Self {
        TemplateCache {
            rewriter,
            state: Mutex::new(State {
                map: HashMap::new(),
                by_buffer: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                bytes: 0,
                capacity,
                hits: 0,
                misses: 0,
            }),
        }
    }

    /// The rewriter the templates come from.
    pub fn rewriter(&self) -> &Rewriter {
        &self.rewriter
    }

    /// `body` rewritten with `token`: byte for byte (and error for error)
    /// [`Rewriter::rewrite_bytes`], from a cached template when `body` was
    /// seen before.
    pub fn rewrite(&self, body: &Bytes, token: &str) -> Result<Bytes, RewriteError> {
        self.rewriter.check_len(body.len())?;
        if let Some(template) = self.lookup_buffer(body) {
            return template.render(token);
        }
        let key = key_of(body);
        let template = match self.lookup(key, body) {
            Some(template) => template,
            None => {
                let template = match self.rewriter.template(body.clone()) {
                    Ok(template) => Arc::new(template),
                    // The direct rewrite checks the token before the header.
                    Err(RewriteError::NotAPlaylist) if check_token(token).is_err() => {
                        return Err(RewriteError::BadToken);
                    }
                    Err(e) => return Err(e),
                };
                self.insert(key, template.clone());
                template
            }
        };
        template.render(token)
    }

    /// Counters and size now.
    pub fn stats(&self) -> TemplateCacheStats {
        let state = self.lock();
        TemplateCacheStats {
            hits: state.hits,
            misses: state.misses,
            entries: state.map.len() as u64,
            bytes: state.bytes as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the maps consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The template of a buffer an entry holds (this very `Bytes`, not
    /// just equal text): immutable, so its text is the entry's.
    fn lookup_buffer(&self, body: &Bytes) -> Option<Arc<Template>> {
        let mut state = self.lock();
        let state = &mut *state;
        let key = *state.by_buffer.get(&identity(body))?;
        let entry = state.map.get_mut(&key)?;
        let held = identity(&entry.template.source) == identity(body)
            || entry.latest.as_ref().map(identity) == Some(identity(body));
        if !held {
            return None;
        }
        state.tick += 1;
        state.order.remove(&entry.used);
        entry.used = state.tick;
        state.order.insert(state.tick, key);
        state.hits += 1;
        Some(entry.template.clone())
    }

    fn lookup(&self, key: u64, body: &Bytes) -> Option<Arc<Template>> {
        let mut state = self.lock();
        let state = &mut *state;
        let found = match state.map.get_mut(&key) {
            Some(entry) if entry.template.source == *body => {
                state.tick += 1;
                state.order.remove(&entry.used);
                entry.used = state.tick;
                state.order.insert(state.tick, key);
                // Remember this buffer too (in place of the previous one,
                // and within the bound): its next requests are found by
                // identity.
                let held = entry.latest.as_ref().map_or(0, Bytes::len);
                if state.bytes - held + body.len() <= state.capacity {
                    if let Some(old) = entry.latest.replace(body.clone()) {
                        state.by_buffer.remove(&identity(&old));
                    }
                    state.bytes = state.bytes - held + body.len();
                    state.by_buffer.insert(identity(body), key);
                }
                Some(entry.template.clone())
            }
            _ => None,
        };
        match found {
            Some(_) => state.hits += 1,
            None => state.misses += 1,
        }
        found
    }

    /// Removes an entry and everything that points at it.
    fn remove(state: &mut State, key: u64) {
        if let Some(old) = state.map.remove(&key) {
            state.order.remove(&old.used);
            state.bytes -= old.size();
            state.by_buffer.remove(&identity(&old.template.source));
            if let Some(latest) = &old.latest {
                state.by_buffer.remove(&identity(latest));
            }
        }
    }

    fn insert(&self, key: u64, template: Arc<Template>) {
        let size = template.size();
        let mut state = self.lock();
        let state = &mut *state;
        if size > state.capacity {
            return;
        }
        // A colliding key with another body is replaced.
        Self::remove(state, key);
        while state.bytes + size > state.capacity {
            let Some((_, oldest)) = state.order.first_key_value().map(|(t, k)| (*t, *k)) else {
                break;
            };
            Self::remove(state, oldest);
        }
        state.tick += 1;
        let tick = state.tick;
        state.order.insert(tick, key);
        state.by_buffer.insert(identity(&template.source), key);
        state.map.insert(
            key,
            Entry {
                template,
                latest: None,
                used: tick,
            },
        );
        state.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::RewriteConfig;

    fn cache(capacity: usize) -> TemplateCache {
        TemplateCache::new(Rewriter::new(&RewriteConfig::default()).unwrap(), capacity)
    }

    fn playlist(n: u32) -> Bytes {
        Bytes::from(format!(
            "#EXTM3U\n#EXT-X-MAP:URI=\"init0.mp4\"\n#EXTINF:1.0,\nseg{n}.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{n}.0.m4s?x=1\"\n"
        ))
    }

    #[test]
    fn holes_are_where_the_tokens_go() {
        let r = Rewriter::new(&RewriteConfig::default()).unwrap();
        let body = playlist(3);
        let template = r.template(body.clone()).unwrap();
        assert_eq!(template.holes(), 3);
        assert_eq!(template.source(), &body);
        for token in ["T", "a-much-longer-token_value.~"] {
            let direct = r.rewrite_bytes(&body, token).unwrap();
            assert_eq!(template.render(token).unwrap(), direct.as_bytes());
        }
        assert_eq!(template.render("bad token"), Err(RewriteError::BadToken));
    }

    /// URIs a browser reads as another host leave no hole: the template
    /// path decides like the rewriter (one walk writes both).
    #[test]
    fn other_hosts_leave_no_hole() {
        let r = Rewriter::new(&RewriteConfig {
            own_origins: vec!["https://edge.example.com".into()],
            ..RewriteConfig::default()
        })
        .unwrap();
        let body = Bytes::from_static(
            b"#EXTM3U\n\
              #EXT-X-MAP:URI=\"\\\\evil.net/init0.mp4\"\n\
              #EXT-X-PART:DURATION=1,URI=\" //evil.net/p.m4s\"\n\
              #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/\t/evil.net/p.m4s\"\n\
              #EXTINF:1.0,\n\
              \x0c/\\evil.net/seg1.m4s\n\
              #EXTINF:1.0,\n\
              HTTPS:\\\\evil.net/seg2.m4s\n\
              #EXTINF:1.0,\n\
              hTtPs://edge.example.com/seg3.m4s\n\
              #EXTINF:1.0,\n\
              seg4.m4s\n",
        );
        let template = r.template(body.clone()).unwrap();
        assert_eq!(template.holes(), 2);
        let direct = r.rewrite_bytes(&body, "T").unwrap();
        assert_eq!(template.render("T").unwrap(), direct.as_bytes());
        assert_eq!(direct.matches("token=T").count(), 2);
        assert!(direct.contains("hTtPs://edge.example.com/seg3.m4s?token=T\n"));
        assert!(direct.contains("\nseg4.m4s?token=T\n"));
    }

    #[test]
    fn a_changed_playlist_never_gets_a_stale_template() {
        let cache = cache(1 << 20);
        let r = cache.rewriter().clone();
        for round in 0..3 {
            for n in 0..4 {
                let body = playlist(n);
                let out = cache.rewrite(&body, "T").unwrap();
                assert_eq!(out, r.rewrite_bytes(&body, "T").unwrap().as_bytes());
                // An equal body in another buffer is a hit too.
                let copy = Bytes::from(body.to_vec());
                assert_eq!(
                    cache.rewrite(&copy, "U").unwrap(),
                    r.rewrite_bytes(&body, "U").unwrap().as_bytes()
                );
                let _ = round;
            }
        }
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits, stats.entries), (4, 20, 4));
    }

    #[test]
    fn the_same_buffer_is_found_by_identity_and_stays_bounded() {
        let cache = cache(1 << 20);
        let body = playlist(1);
        let copy = Bytes::from(body.to_vec());
        let other = Bytes::from(body.to_vec());
        for b in [&body, &body, &copy, &copy, &other, &copy] {
            let out = cache.rewrite(b, "T").unwrap();
            assert_eq!(
                out,
                cache.rewriter().rewrite_bytes(b, "T").unwrap().as_bytes()
            );
        }
        let state = cache.lock();
        let entry = state.map.values().next().unwrap();
        // The source and the latest other buffer are known by identity.
        assert_eq!(state.map.len(), 1);
        assert_eq!(state.by_buffer.len(), 2);
        assert_eq!(entry.latest.as_ref().map(identity), Some(identity(&copy)));
        assert_eq!(state.bytes, entry.size());
        drop(state);
        // Evicted: nothing points at the old entry any more.
        let small = TemplateCache::new(cache.rewriter().clone(), entry_size_of(&body) + 10);
        small.rewrite(&body, "T").unwrap();
        small.rewrite(&copy, "T").unwrap();
        small.rewrite(&playlist(2), "T").unwrap();
        let state = small.lock();
        assert_eq!(
            (state.map.len(), state.by_buffer.len(), state.order.len()),
            (1, 1, 1)
        );
        assert!(state.bytes <= entry_size_of(&body) + 10);
    }

    fn entry_size_of(body: &Bytes) -> usize {
        cache(usize::MAX)
            .rewriter()
            .template(body.clone())
            .unwrap()
            .size()
    }

    #[test]
    fn a_colliding_key_is_checked_against_the_body() {
        let cache = cache(1 << 20);
        let a = playlist(1);
        let b = playlist(2);
        cache.insert(
            key_of(&b),
            Arc::new(cache.rewriter().template(a.clone()).unwrap()),
        );
        // b's key holds a's template: not used for b.
        let out = cache.rewrite(&b, "T").unwrap();
        assert_eq!(
            out,
            cache.rewriter().rewrite_bytes(&b, "T").unwrap().as_bytes()
        );
        assert!(
            std::str::from_utf8(&out)
                .unwrap()
                .contains("seg2.m4s?token=T")
        );
    }

    #[test]
    fn bounded_in_bytes_least_recently_used_first() {
        let one = cache(usize::MAX)
            .rewriter()
            .template(playlist(0))
            .unwrap()
            .size();
        let cache = cache(one * 3 + one / 2);
        for n in 0..3 {
            cache.rewrite(&playlist(n), "T").unwrap();
        }
        // Touch 0: 1 is now the least recently used.
        cache.rewrite(&playlist(0), "T").unwrap();
        cache.rewrite(&playlist(3), "T").unwrap();
        let stats = cache.stats();
        assert_eq!(stats.entries, 3);
        assert!(stats.bytes as usize <= one * 3 + one / 2);
        let misses = stats.misses;
        cache.rewrite(&playlist(0), "T").unwrap();
        assert_eq!(cache.stats().misses, misses, "0 was kept");
        cache.rewrite(&playlist(1), "T").unwrap();
        assert_eq!(cache.stats().misses, misses + 1, "1 was evicted");
        // Larger than the whole cache: rewritten, not kept.
        let tiny = TemplateCache::new(cache.rewriter().clone(), 10);
        assert!(tiny.rewrite(&playlist(0), "T").is_ok());
        assert_eq!(tiny.stats().entries, 0);
    }

    #[test]
    fn errors_are_the_rewriters_and_are_not_kept() {
        let cache = cache(1 << 20);
        let r = cache.rewriter().clone();
        for (body, token) in [
            (&b"not a playlist"[..], "T"),
            (b"not a playlist", "bad token"),
            (b"#EXTM3U\n\xff\n", "bad token"),
            (b"#EXTM3U\nseg.m4s\n", "bad token"),
            (b"#EXTM3U\nseg.m4s\n", ""),
        ] {
            let body = Bytes::copy_from_slice(body);
            assert_eq!(
                cache.rewrite(&body, token).map(|b| b.to_vec()),
                r.rewrite_bytes(&body, token).map(String::into_bytes),
            );
        }
        assert_eq!(cache.stats().entries, 1, "only the valid playlist");
    }
}
