#![allow(clippy::unwrap_used)]

//! Uploads end to end on an in-memory store: files made here by ffmpeg
//! are probed, transcoded to a small ladder, packaged and stored as VOD
//! (then decoded whole by ffmpeg from a copy of the store); bad files are
//! refused with the reason and leave nothing behind; a job the store
//! fails deletes what it wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_media::{StreamName, Time90k};
use ferrocast_packager::PackagerConfig;
use ferrocast_recorder::Layout;
use ferrocast_recorder::manifest::{ClosedBy, Summary};
use ferrocast_storage::{MemoryStore, ObjectStore, StoreError};
use ferrocast_transcode::ladder::Ladder;
use ferrocast_vod::{JobState, VodConfig, VodError, VodService};
use futures::FutureExt;
use futures::future::BoxFuture;

const LADDER: &str = r#"
name = "test"
keyframe_interval_ms = 2000
[[rungs]]
name = "180p"
height = 180
video_bitrate_kbps = 250
x264_preset = "ultrafast"
[[rungs]]
name = "144p"
height = 144
video_bitrate_kbps = 150
x264_preset = "ultrafast"
"#;

/// Runs ffmpeg to make a test file; panics with its output if it fails.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `secs` of test picture and tone as H.264/AAC in MP4 at `path`.
fn mp4(path: &Path, secs: u32, faststart: bool) {
    let duration = secs.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &duration,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "60",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
    ];
    if faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    let path = path.to_str().unwrap();
    args.push(path);
    ffmpeg(&args);
}

fn config(work_dir: PathBuf) -> VodConfig {
    VodConfig {
        layout: Layout::new("rec/"),
        work_dir,
        max_upload_bytes: 1 << 30,
        max_duration: Duration::from_secs(3600),
        max_waiting: 4,
        ladder: toml::from_str::<Ladder>(LADDER).unwrap(),
        packager: PackagerConfig {
            part_target: Time90k::from_millis(200),
            segment_min: Time90k::from_millis(2000),
            target_duration_secs: 4,
            window_segments: 4,
            max_hold: Duration::from_secs(3),
            reconnect_grace: Duration::from_secs(1),
            part_hold_back_parts: 3,
            separate_audio: false,
            rendition_wait: Duration::from_secs(3),
        },
        store_patience: Duration::from_secs(1),
    }
}

/// A copy of `file` in the service's work directory, as the API leaves
/// a received upload.
fn received(service: &VodService, file: &Path) -> PathBuf {
    let path = service.incoming_path();
    std::fs::copy(file, &path).unwrap();
    path
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

async fn decode_seconds(url: &Path) -> f64 {
    let url = url.to_str().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i", &url, "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                &url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mp4_upload_becomes_a_vod_of_every_rung_that_decodes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("talk.mp4");
    mp4(&file, 9, false);
    let work = dir.path().join("work");
    let store = Arc::new(MemoryStore::default());
    let service = VodService::start(config(work.clone()), store.clone()).unwrap();
    let stream = StreamName::new("lectures").unwrap();

    let accepted = service
        .submit(stream, received(&service, &file))
        .await
        .unwrap();
    assert_eq!(accepted.source.video_codec, "h264");
    assert_eq!(accepted.source.audio_codec.as_deref(), Some("aac"));
    assert_eq!((accepted.source.width, accepted.source.height), (320, 240));
    assert!(
        accepted.source.format.contains("mp4"),
        "{:?}",
        accepted.source
    );
    assert_eq!(
        accepted.playlist_path,
        format!("/vod/lectures/{}/index.m3u8", accepted.id)
    );

    let done = tokio::time::timeout(Duration::from_secs(120), service.finished(&accepted.id))
        .await
        .expect("the job ends in time")
        .unwrap();
    assert_eq!(done.state, JobState::Ready, "{done:?}");
    assert_eq!(done.progress, 1.0);
    let mut renditions = done.renditions.clone();
    renditions.sort();
    assert_eq!(renditions, ["144p", "180p"]);
    assert!(
        files_in(&work).is_empty(),
        "left in the work dir: {:?}",
        files_in(&work)
    );

    let root = format!("rec/lectures/{}/", accepted.id);
    let summary: Summary = {
        let key = format!("{root}recording.json");
        ferrocast_recorder::manifest::read(&key, &store.get(&key).await.unwrap().unwrap()).unwrap()
    };
    assert_eq!(summary.closed_by, ClosedBy::Upload);
    assert!(
        (summary.duration_ms - 9000).abs() <= 2000,
        "{} ms packaged of 9 s",
        summary.duration_ms
    );
    // A copy of the store on disk, for ffmpeg.
    let copy = dir.path().join("copy");
    for key in store.list(&root).await.unwrap() {
        let path = copy.join(key.strip_prefix(&root).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, store.get(&key).await.unwrap().unwrap()).unwrap();
    }
    for rendition in ["144p", "180p"] {
        let playlist = std::fs::read_to_string(copy.join(rendition).join("index.m3u8")).unwrap();
        assert!(
            playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            "{playlist}"
        );
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        assert!(!playlist.contains("DISCONTINUITY"), "{playlist}");
        let seconds = decode_seconds(&copy.join(rendition).join("index.m3u8")).await;
        assert!((seconds - 9.0).abs() <= 2.0, "{rendition}: {seconds} s");
    }
    let seconds = decode_seconds(&copy.join("index.m3u8")).await;
    assert!((seconds - 9.0).abs() <= 2.0, "multivariant: {seconds} s");
    assert_eq!(service.list().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_with_the_reason_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(
        p("noise.mp4"),
        (0..200_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(p("notes.mp4"), "this is not a video\n".repeat(100)).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "2",
        "-c:a",
        "aac",
        p("tone.m4a").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=25",
        "-t",
        "2",
        "-c:v",
        "mpeg2video",
        p("old.ts").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "libmp3lame",
        p("mp3.mkv").to_str().unwrap(),
    ]);
    // An MP4 cut in half before its index (moov at the end): unreadable.
    mp4(&p("whole.mp4"), 4, false);
    let whole = std::fs::read(p("whole.mp4")).unwrap();
    std::fs::write(p("cut.mp4"), &whole[..whole.len() / 2]).unwrap();

    let work = dir.path().join("work");
    let store = Arc::new(MemoryStore::default());
    let service = VodService::start(config(work.clone()), store.clone()).unwrap();
    let stream = StreamName::new("lectures").unwrap();
    let refusal = |name: &'static str| {
        let service = service.clone();
        let stream = stream.clone();
        let file = p(name);
        async move {
            service
                .submit(stream, received(&service, &file))
                .await
                .expect_err(name)
        }
    };
    assert!(matches!(refusal("noise.mp4").await, VodError::NotMedia(_)));
    assert!(matches!(refusal("notes.mp4").await, VodError::NotMedia(_)));
    assert!(matches!(refusal("cut.mp4").await, VodError::NotMedia(_)));
    assert_eq!(refusal("tone.m4a").await, VodError::NoVideo);
    assert_eq!(
        refusal("old.ts").await,
        VodError::UnsupportedVideo("mpeg2video".into())
    );
    let mp3 = refusal("mp3.mkv").await;
    assert_eq!(mp3, VodError::UnsupportedAudio("mp3".into()));
    assert_eq!(
        mp3.to_string(),
        "audio codec mp3 is not accepted (AAC or Opus)"
    );
    assert!(refusal("noise.mp4").await.is_bad_file());

    assert!(files_in(&work).is_empty(), "left: {:?}", files_in(&work));
    assert!(store.list("").await.unwrap().is_empty());
    assert!(service.list().is_empty(), "a refused upload is no job");
}

/// A store that refuses every playlist: the job fails at its very end,
/// after its segments were stored.
#[derive(Debug, Default)]
struct NoPlaylists(MemoryStore);

impl ObjectStore for NoPlaylists {
    fn put(&self, key: &str, body: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        if key.ends_with(".m3u8") {
            return async { Err(StoreError::Refused("access denied".into())) }.boxed();
        }
        self.0.put(key, body)
    }
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>> {
        self.0.get(key)
    }
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        self.0.delete(key)
    }
    fn list_dirs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        self.0.list_dirs(prefix)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_deletes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("talk.mp4");
    mp4(&file, 5, true);
    let work = dir.path().join("work");
    let store = Arc::new(NoPlaylists::default());
    let service = VodService::start(config(work.clone()), store.clone()).unwrap();
    let accepted = service
        .submit(
            StreamName::new("lectures").unwrap(),
            received(&service, &file),
        )
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(120), service.finished(&accepted.id))
        .await
        .expect("the job ends in time")
        .unwrap();
    assert_eq!(done.state, JobState::Failed);
    assert!(
        done.error.as_deref().unwrap().contains("access denied"),
        "{done:?}"
    );
    assert!(
        store.list("").await.unwrap().is_empty(),
        "{:?}",
        store.list("").await
    );
    assert!(files_in(&work).is_empty(), "left: {:?}", files_in(&work));
}
