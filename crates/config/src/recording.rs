//! `[recording]`: live streams recorded to S3-compatible object storage
//! as they are packaged (`ferrocast up` and `ferrocast package`).

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Recording settings. Absent (the default): nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// The streams recorded: every stream when absent, else only these
    /// names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    /// Key prefix of every object, like `recordings/`. Default: none.
    #[serde(default)]
    pub prefix: String,
    /// The most bytes the local spool (`data_dir/spool`) holds while the
    /// store is away; beyond it new segments are dropped, counted and
    /// logged. Default 1 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// A recording whose writer has not said it is alive for this long is
    /// closed by whichever process sees it. Default 120.
    #[serde(default = "default_stale_after_secs")]
    pub stale_after_secs: u64,
    /// How often a writer says it is alive. Default 30; less than
    /// `stale_after_secs`.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Recordings are deleted this many seconds after they started
    /// (`604800`: a week). Default 0: kept for ever.
    #[serde(default)]
    pub retention_secs: u64,
    /// How far behind live a viewer may go, in seconds: each recorded
    /// rendition gets a DVR playlist (`dvr.m3u8`) of its recorded segments
    /// this far back. Default 0: no DVR.
    #[serde(default)]
    pub dvr_window_secs: u64,
    /// The largest file `POST /api/v1/vod` takes, bytes. Default 4 GiB.
    #[serde(default = "default_upload_max_bytes")]
    pub upload_max_bytes: u64,
    /// The longest media an upload may hold, seconds. Default 14400 (4 h).
    #[serde(default = "default_upload_max_duration_secs")]
    pub upload_max_duration_secs: u64,
    /// Uploads that may wait for the transcoder (one is transcoded at a
    /// time); more are refused with 503. Default 8.
    #[serde(default = "default_upload_queue")]
    pub upload_queue: usize,
    /// The object store.
    pub s3: S3Config,
}

/// Where recordings are stored: S3 or an S3-compatible server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Its region. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3-compatible server's URL, like `http://minio:9000`. Default:
    /// AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`), which most
    /// S3-compatible servers need. Default false.
    #[serde(default)]
    pub path_style: bool,
    /// Access key id; with `secret_access_key`. Default: the standard AWS
    /// credential chain (environment, profile, instance or pod role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Secret access key (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Create the bucket at start if it does not exist. Default false.
    #[serde(default)]
    pub create_bucket: bool,
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

fn default_upload_max_bytes() -> u64 {
    4 << 30
}

fn default_upload_max_duration_secs() -> u64 {
    4 * 3600
}

fn default_upload_queue() -> usize {
    8
}

fn default_stale_after_secs() -> u64 {
    120
}

fn default_heartbeat_secs() -> u64 {
    30
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

impl RecordingConfig {
    /// Ranges checked when the configuration is built.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.s3.bucket.trim().is_empty() {
            return Err("recording.s3.bucket is empty".to_owned());
        }
        if self.heartbeat_secs == 0 || self.heartbeat_secs >= self.stale_after_secs {
            return Err(format!(
                "recording.heartbeat_secs = {} must be at least 1 and less than \
                 recording.stale_after_secs = {}",
                self.heartbeat_secs, self.stale_after_secs
            ));
        }
        if self.spool_max_bytes < 1 << 20 {
            return Err(format!(
                "recording.spool_max_bytes = {} is less than 1 MiB",
                self.spool_max_bytes
            ));
        }
        if self.upload_max_bytes == 0
            || self.upload_max_duration_secs == 0
            || self.upload_queue == 0
        {
            return Err(
                "recording.upload_max_bytes, upload_max_duration_secs and upload_queue must be                  at least 1"
                    .to_owned(),
            );
        }
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(
                "recording.s3: access_key_id and secret_access_key go together (or neither, \
                 for the standard AWS credential chain)"
                    .to_owned(),
            );
        }
        if let Some(endpoint) = &self.s3.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "recording.s3.endpoint = {endpoint:?} is not an http:// or https:// URL"
            ));
        }
        let prefix_ok = self
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
            && !self.prefix.split('/').any(|s| s == "." || s == "..");
        if !prefix_ok {
            return Err(format!(
                "recording.prefix = {:?} may hold only letters, digits, '/', '.', '_' and '-'",
                self.prefix
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RecordingConfig, String> {
        let config: RecordingConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_a_full_section() {
        let config = parse("[s3]\nbucket = \"media\"\n").unwrap();
        assert_eq!(config.s3.region, "us-east-1");
        assert_eq!(config.spool_max_bytes, 1 << 30);
        assert_eq!(config.streams, None);
        let config = parse(
            "streams = [\"cam\"]\nprefix = \"rec/\"\n[s3]\nbucket = \"media\"\n\
             endpoint = \"http://127.0.0.1:9000\"\npath_style = true\n\
             access_key_id = \"id\"\nsecret_access_key = \"shh\"\n",
        )
        .unwrap();
        assert_eq!(
            config.s3.secret_access_key.as_ref().unwrap().expose(),
            "shh"
        );
        assert!(
            !format!("{config:?}").contains("shh"),
            "the secret is not printed"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, needle) in [
            ("[s3]\nbucket = \"\"\n", "bucket is empty"),
            (
                "heartbeat_secs = 200\n[s3]\nbucket = \"b\"\n",
                "heartbeat_secs",
            ),
            (
                "[s3]\nbucket = \"b\"\naccess_key_id = \"id\"\n",
                "go together",
            ),
            (
                "[s3]\nbucket = \"b\"\nendpoint = \"minio:9000\"\n",
                "endpoint",
            ),
            ("prefix = \"../x\"\n[s3]\nbucket = \"b\"\n", "prefix"),
            ("[s3]\nbucket = \"b\"\nregoin = \"x\"\n", "regoin"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
