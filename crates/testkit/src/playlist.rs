//! Reading the numbers a test or a load tool checks in a media playlist
//! the packager wrote (`segN.m4s` segment lines, `?token=...` allowed).

/// `#EXT-X-MEDIA-SEQUENCE`, if listed.
pub fn media_sequence(playlist: &str) -> Option<u64> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .parse()
        .ok()
}

/// The media sequence number of a `segN.m4s` line.
pub fn segment_number(line: &str) -> Option<u64> {
    line.strip_prefix("seg")?.split('.').next()?.parse().ok()
}

/// The segment numbers the playlist lists, in order.
pub fn segment_numbers(playlist: &str) -> Vec<u64> {
    playlist.lines().filter_map(segment_number).collect()
}

/// Discontinuities the rendition has had so far: its discontinuity
/// sequence plus the EXT-X-DISCONTINUITY tags it lists.
pub fn discontinuities(playlist: &str) -> u64 {
    let sequence: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tags = playlist
        .lines()
        .filter(|l| *l == "#EXT-X-DISCONTINUITY")
        .count();
    sequence + tags as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_a_playlist() {
        let playlist = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n\
                        #EXTINF:1.0,\nseg7.m4s?token=x\n#EXT-X-DISCONTINUITY\n#EXTINF:1.0,\nseg8.m4s\n";
        assert_eq!(media_sequence(playlist), Some(7));
        assert_eq!(segment_numbers(playlist), vec![7, 8]);
        assert_eq!(discontinuities(playlist), 3);
        assert_eq!(media_sequence("#EXTM3U\n"), None);
    }
}
