//! Merging defaults, environment, file and flags into one [`Config`].

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::model::{Config, RtpFormat};

/// Prefix of the environment variables that set configuration values.
///
/// `FERROCAST_HTTP_LISTEN` sets `http_listen`; a double underscore descends
/// into a section: `FERROCAST_HLS__PART_TARGET_MS` sets `hls.part_target_ms`.
pub const ENV_PREFIX: &str = "FERROCAST_";

/// Environment variables with the prefix that are not configuration values.
const ENV_RESERVED: &[&str] = &["FERROCAST_CONFIG", "FERROCAST_LOG", "FERROCAST_LOG_FORMAT"];

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {origin} is not valid TOML: {source}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// The parser's message.
        source: Box<toml::de::Error>,
    },
    /// The merged configuration has an unknown key or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(Box<toml::de::Error>),
    /// A value is of the right type but out of range.
    #[error("invalid configuration: {0}")]
    Range(String),
}

/// Configuration layers, merged in the order they are added.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    merged: Table,
}

impl Layers {
    /// Merge `FERROCAST_*` variables from an iterator of (name, value) pairs
    /// (pass `std::env::vars()`).
    ///
    /// A value that parses as a TOML value (number, boolean, quoted string)
    /// is taken as that; anything else is taken as a plain string.
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut table = Table::new();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if ENV_RESERVED.contains(&name.as_str()) || key.is_empty() || is_service_link(&name) {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            insert_path(&mut table, &path, parse_env_value(&value));
        }
        merge(&mut self.merged, table);
        self
    }

    /// Merge a TOML file.
    pub fn with_file(self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.with_text(&text, &path.display().to_string())
    }

    /// Merge TOML text (as if it were a config file).
    pub fn with_file_text(self, text: &str) -> Result<Self, ConfigError> {
        self.with_text(text, "<text>")
    }

    fn with_text(mut self, text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            source: Box::new(e),
        })?;
        merge(&mut self.merged, table);
        Ok(self)
    }

    /// Merge one value at a dotted key path (`"hls.part_target_ms"`), as a
    /// command-line flag does.
    pub fn with_value(mut self, dotted_key: &str, value: impl Into<Value>) -> Self {
        let path: Vec<String> = dotted_key.split('.').map(str::to_owned).collect();
        let mut table = Table::new();
        insert_path(&mut table, &path, value.into());
        merge(&mut self.merged, table);
        self
    }

    /// Sets `dotted_key` to `value` unless a layer before already set it:
    /// a default of one command rather than of every process (like
    /// `ferrocast up`'s loopback `http_listen`).
    pub fn with_default(self, dotted_key: &str, value: impl Into<Value>) -> Self {
        let mut table = Some(&self.merged);
        let mut set = false;
        let path: Vec<&str> = dotted_key.split('.').collect();
        for (i, part) in path.iter().enumerate() {
            match table.and_then(|t| t.get(*part)) {
                Some(Value::Table(inner)) if i + 1 < path.len() => table = Some(inner),
                Some(_) if i + 1 == path.len() => set = true,
                _ => break,
            }
        }
        if set {
            self
        } else {
            self.with_value(dotted_key, value)
        }
    }

    /// Deserialise the merged layers over the defaults and validate ranges.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.build_for(Process::Everything)
    }

    /// Like [`Layers::build`] for a process that runs only part of
    /// Ferrocast: the sections it does not read are neither parsed nor
    /// checked (they keep their defaults in the result), so a cluster can
    /// share one configuration whose edge keys, say, only the edges can
    /// load. Keys Ferrocast does not know are refused as always.
    pub fn build_for(mut self, process: Process) -> Result<Config, ConfigError> {
        self.merged.retain(|key, _| process.reads(key));
        if let Some(Value::Table(edge)) = self.merged.get("edge")
            && (!edge.contains_key("jwt") || !edge.contains_key("token"))
        {
            return Err(ConfigError::Range(
                "edge: the edge needs [edge.jwt] (viewer JWT keys) and [edge.token] (edge \
                 token keys) in the config file; --https-listen, --tls-cert, --tls-key and \
                 --origin only adjust an [edge] section"
                    .to_owned(),
            ));
        }
        let config: Config = Value::Table(self.merged)
            .try_into()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        validate(&config, process)?;
        Ok(config)
    }
}

/// Whether `name` is one of the variables Kubernetes puts in every pod for
/// each Service (docker-links style): for a Service `ferrocast-edge`,
/// `FERROCAST_EDGE_SERVICE_HOST`, `FERROCAST_EDGE_SERVICE_PORT[_NAME]`,
/// `FERROCAST_EDGE_PORT` and `FERROCAST_EDGE_PORT_8443_TCP[_ADDR|_PORT|_PROTO]`.
/// A Service whose name starts with `ferrocast` makes them look like
/// settings; they are not (no key of ours looks like them: keys in
/// sections have a double underscore, and no top-level key ends so).
fn is_service_link(name: &str) -> bool {
    if name.contains("__") {
        return false;
    }
    let parts: Vec<&str> = name.split('_').collect();
    let is_protocol = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    let is_port = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (1..parts.len()).any(|i| {
        let rest = &parts[i + 1..];
        match parts[i] {
            "SERVICE" => rest == ["HOST"] || rest.first() == Some(&"PORT"),
            "PORT" => match rest {
                [] => true,
                [port, protocol] => is_port(port) && is_protocol(protocol),
                [port, protocol, field] => {
                    is_port(port)
                        && is_protocol(protocol)
                        && matches!(*field, "ADDR" | "PORT" | "PROTO")
                }
                _ => false,
            },
            _ => false,
        }
    })
}

/// What a process runs, which decides the sections of the configuration
/// it reads ([`Layers::build_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Process {
    /// `ferrocast up`: every section.
    Everything,
    /// `ferrocast ingest`: `srt_listen`, `[ingest]`, `[[streams]]`,
    /// `[[rtp]]`, `[transcode]` (whether streams are transcoded) and
    /// `[cluster]`.
    Ingest,
    /// `ferrocast transcode`: `[transcode]`, `[hls]` (segment timing for
    /// the keyframe cadence), `[ingest]` (the reconnect grace) and
    /// `[cluster]`.
    Transcode,
    /// `ferrocast package`: `[hls]`, `data_dir` (the recording spool),
    /// `[ingest]` (the reconnect grace), `[cluster]` and `[recording]`.
    Package,
    /// `ferrocast edge`: `[edge]`, `[cluster]` (routing through the
    /// registry) and `[recording]` (the recordings it serves).
    Edge,
    /// `ferrocast control`: the control plane's API and dashboard:
    /// `database_url`, `data_dir` (its SQLite default and the first admin
    /// token), `[cluster]` (notices to the ingest processes, live state)
    /// and `[edge]` (the key viewer tokens are signed with).
    Control,
}

/// Top-level keys every process reads: its operator listener and traces.
const COMMON_KEYS: &[&str] = &["http_listen", "http_connections", "telemetry"];

/// Every top-level key of [`Config`]; any other is refused.
const KNOWN_KEYS: &[&str] = &[
    "srt_listen",
    "http_listen",
    "http_connections",
    "data_dir",
    "ingest",
    "hls",
    "streams",
    "rtp",
    "transcode",
    "edge",
    "cluster",
    "telemetry",
    "database_url",
    "recording",
];

impl Process {
    /// The top-level keys of its own, beyond [`COMMON_KEYS`].
    fn own_keys(self) -> &'static [&'static str] {
        match self {
            Process::Everything => KNOWN_KEYS,
            Process::Ingest => &[
                "srt_listen",
                "ingest",
                "streams",
                "rtp",
                "transcode",
                "cluster",
                "database_url",
            ],
            Process::Transcode => &["transcode", "hls", "ingest", "cluster"],
            // database_url: the streams' own recording policies.
            Process::Package => &[
                "hls",
                "data_dir",
                "ingest",
                "cluster",
                "recording",
                "database_url",
            ],
            Process::Edge => &["edge", "cluster", "recording"],
            // recording, transcode, hls: VOD uploads, transcoded here to the
            // ladder with the packager's segment rules.
            Process::Control => &[
                "database_url",
                "data_dir",
                "cluster",
                "edge",
                "recording",
                "transcode",
                "hls",
            ],
        }
    }

    /// Whether it reads top-level key `key` (an unknown key is kept, to be
    /// refused).
    fn reads(self, key: &str) -> bool {
        !KNOWN_KEYS.contains(&key) || COMMON_KEYS.contains(&key) || self.own_keys().contains(&key)
    }
}

fn validate(config: &Config, process: Process) -> Result<(), ConfigError> {
    config
        .http_connections
        .validate()
        .map_err(|e| ConfigError::Range(format!("http_connections: {e}")))?;
    if process.reads("hls") {
        validate_hls(&config.hls)?;
    }
    if process.reads("streams") {
        validate_streams(&config.streams)?;
    }
    if process.reads("rtp") {
        validate_rtp(config)?;
    }
    if process.reads("transcode") {
        config
            .transcode
            .validate()
            .map_err(|e| ConfigError::Range(e.to_string()))?;
    }
    if let Some(edge) = &config.edge {
        edge.validate()
            .map_err(|e| ConfigError::Range(e.to_string()))?;
        if edge.https_listen.port() != 0 && edge.https_listen == config.http_listen {
            return Err(ConfigError::Range(format!(
                "edge.https_listen = {} is also http_listen (the origin's address)",
                edge.https_listen
            )));
        }
    }
    config.cluster.validate().map_err(ConfigError::Range)?;
    config.telemetry.validate().map_err(ConfigError::Range)?;
    if let Some(recording) = &config.recording {
        recording.validate().map_err(ConfigError::Range)?;
    }
    Ok(())
}

fn validate_hls(hls: &crate::model::HlsConfig) -> Result<(), ConfigError> {
    if !(50..=2000).contains(&hls.part_target_ms) {
        return Err(ConfigError::Range(format!(
            "hls.part_target_ms = {} is outside 50..=2000",
            hls.part_target_ms
        )));
    }
    if hls.target_duration_secs == 0
        || u64::from(hls.target_duration_secs) * 1000 < hls.segment_min_ms
    {
        return Err(ConfigError::Range(format!(
            "hls.target_duration_secs = {} must be at least hls.segment_min_ms = {} ms",
            hls.target_duration_secs, hls.segment_min_ms
        )));
    }
    if hls.segment_min_ms < hls.part_target_ms {
        return Err(ConfigError::Range(
            "hls.segment_min_ms must be at least hls.part_target_ms".to_owned(),
        ));
    }
    if !(2..=10).contains(&hls.part_hold_back_parts) {
        return Err(ConfigError::Range(format!(
            "hls.part_hold_back_parts = {} is outside 2..=10 (RFC 8216bis: PART-HOLD-BACK is at least twice the part target)",
            hls.part_hold_back_parts
        )));
    }
    if !(3..=1000).contains(&hls.window_segments) {
        return Err(ConfigError::Range(format!(
            "hls.window_segments = {} is outside 3..=1000",
            hls.window_segments
        )));
    }
    Ok(())
}

/// Characters allowed in a publish key: unreserved URL characters, so that
/// no sender has to escape them (Debian's ffmpeg does not URL-decode the
/// streamid).
/// Whether `passphrase` is one SRT takes ("SRTO_PASSPHRASE ... string of
/// length 10..79") made of the characters a streamid can carry
/// (`[A-Za-z0-9._~-]`).
pub fn valid_srt_passphrase(passphrase: &str) -> bool {
    (10..=79).contains(&passphrase.len()) && passphrase.bytes().all(is_key_char)
}

pub(crate) fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// The stream name rule of `ferrocast_media::StreamName`, repeated here so
/// the config crate stays free of media types.
fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Longest accepted `jitter_ms` of an `[[rtp]]` entry.
const MAX_RTP_JITTER_MS: u64 = 5000;

fn validate_rtp(config: &Config) -> Result<(), ConfigError> {
    let mut ports = std::collections::HashSet::new();
    let mut streams = std::collections::HashSet::new();
    for (index, rtp) in config.rtp.iter().enumerate() {
        let at = format!("rtp[{index}] (listen {})", rtp.listen);
        if !is_stream_name(&rtp.stream) {
            return Err(ConfigError::Range(format!(
                "{at}: stream {:?} is not a valid stream name (1 to 64 of [A-Za-z0-9._-], not starting with '.')",
                rtp.stream
            )));
        }
        if !streams.insert(rtp.stream.as_str()) {
            return Err(ConfigError::Range(format!(
                "{at}: stream {:?} is fed by another [[rtp]] entry already",
                rtp.stream
            )));
        }
        if rtp.listen.port() == 0 {
            return Err(ConfigError::Range(format!(
                "{at}: listen needs a fixed port, senders must know where to send"
            )));
        }
        if !ports.insert(rtp.listen) || rtp.listen == config.srt_listen {
            return Err(ConfigError::Range(format!(
                "{at}: the address is already used by another listener"
            )));
        }
        match (rtp.format, &rtp.sdp) {
            (RtpFormat::Sdp, None) => {
                return Err(ConfigError::Range(format!(
                    "{at}: format = \"sdp\" needs sdp = \"PATH\" (the SDP file describing the session)"
                )));
            }
            (RtpFormat::Mpegts, Some(_)) => {
                return Err(ConfigError::Range(format!(
                    "{at}: sdp is only read with format = \"sdp\"; format = \"mpegts\" needs none"
                )));
            }
            _ => {}
        }
        if !(1..=MAX_RTP_JITTER_MS).contains(&rtp.jitter_ms) {
            return Err(ConfigError::Range(format!(
                "{at}: jitter_ms = {} is outside 1..={MAX_RTP_JITTER_MS}",
                rtp.jitter_ms
            )));
        }
    }
    Ok(())
}

fn validate_streams(streams: &[crate::model::StreamConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for stream in streams {
        let name = &stream.name;
        if !is_stream_name(name) {
            return Err(ConfigError::Range(format!(
                "streams: {name:?} is not a valid stream name (1 to 64 of [A-Za-z0-9._-], not starting with '.')"
            )));
        }
        if !names.insert(name.as_str()) {
            return Err(ConfigError::Range(format!(
                "streams: {name:?} is listed twice"
            )));
        }
        let key = stream.publish_key.expose();
        if !(8..=128).contains(&key.len()) || !key.bytes().all(is_key_char) {
            return Err(ConfigError::Range(format!(
                "streams: publish_key of {name:?} must be 8 to 128 characters of [A-Za-z0-9._~-]"
            )));
        }
        if let Some(passphrase) = &stream.passphrase
            && !valid_srt_passphrase(passphrase.expose())
        {
            return Err(ConfigError::Range(format!(
                "streams: passphrase of {name:?} must be 10 to 79 characters of [A-Za-z0-9._~-]"
            )));
        }
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> Value {
    // `toml::Value` parses only documents, so parse "v = <raw>".
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn insert_path(table: &mut Table, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_layers() {
        assert_eq!(Layers::default().build().unwrap(), Config::default());
    }

    #[test]
    fn a_command_default_applies_only_where_nothing_set_the_key() {
        let unset = Layers::default()
            .with_default("http_listen", "127.0.0.1:8080")
            .build()
            .unwrap();
        assert_eq!(unset.http_listen.to_string(), "127.0.0.1:8080");
        let from_env = Layers::default()
            .with_env(env(&[("FERROCAST_HTTP_LISTEN", "0.0.0.0:9")]))
            .with_default("http_listen", "127.0.0.1:8080")
            .build()
            .unwrap();
        assert_eq!(from_env.http_listen.to_string(), "0.0.0.0:9");
        let nested = Layers::default()
            .with_file_text("[hls]\npart_target_ms = 250")
            .unwrap()
            .with_default("hls.part_target_ms", 300)
            .with_default("hls.segment_min_ms", 1500)
            .build()
            .unwrap();
        assert_eq!(nested.hls.part_target_ms, 250);
        assert_eq!(nested.hls.segment_min_ms, 1500);
    }

    #[test]
    fn flags_beat_file_beat_env() {
        let config = Layers::default()
            .with_env(env(&[
                ("FERROCAST_HTTP_LISTEN", "127.0.0.1:1"),
                ("FERROCAST_SRT_LISTEN", "127.0.0.1:2"),
                ("FERROCAST_DATA_DIR", "/from-env"),
                ("FERROCAST_HLS__PART_TARGET_MS", "250"),
                ("FERROCAST_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ]))
            .with_file_text("http_listen = \"127.0.0.1:3\"\nsrt_listen = \"127.0.0.1:4\"")
            .unwrap()
            .with_value("http_listen", "127.0.0.1:5")
            .with_default("http_listen", "127.0.0.1:6")
            .with_default("hls.part_target_ms", 300)
            .build()
            .unwrap();
        assert_eq!(config.http_listen.port(), 5, "flag wins over file");
        assert_eq!(config.srt_listen.port(), 4, "file wins over env");
        assert_eq!(config.data_dir, PathBuf::from("/from-env"));
        assert_eq!(config.hls.part_target_ms, 250);
        assert_eq!(config.hls.window_segments, 6, "untouched default");
    }

    #[test]
    fn a_process_reads_and_checks_only_its_own_sections() {
        // An edge section without its keys, a ladder that does not exist,
        // a publish key too short, a bad part target: each is an error
        // only for the processes that read that section.
        let sections = [
            ("edge", "[edge]\nhttps_listen = \"127.0.0.1:0\"\n"),
            ("transcode", "[transcode]\nladder = \"no-such-ladder\"\n"),
            ("streams", "[[streams]]\nname = \"cam\"\nkey = \"short\"\n"),
            ("hls", "[hls]\npart_target_ms = 5\n"),
            ("cluster", "[cluster]\nprefix = \"fc\"\n"),
        ];
        let only = |keep: &[&str]| -> String {
            sections
                .iter()
                .filter(|(name, _)| keep.contains(name))
                .map(|(_, text)| *text)
                .collect()
        };
        let all = only(&["edge", "transcode", "streams", "hls", "cluster"]);
        for process in [
            Process::Everything,
            Process::Ingest,
            Process::Transcode,
            Process::Package,
            Process::Edge,
            Process::Control,
        ] {
            let built = Layers::default()
                .with_file_text(&all)
                .unwrap()
                .build_for(process);
            assert!(built.is_err(), "{process:?} loaded a broken section");
        }
        // Without the sections each reads, each loads: what it does not
        // read keeps its default, what it reads is taken.
        let package = Layers::default()
            .with_file_text(&only(&["edge", "transcode", "streams", "cluster"]))
            .unwrap()
            .build_for(Process::Package)
            .unwrap();
        assert_eq!(package.edge, None);
        assert_eq!(package.streams, Vec::new());
        assert_eq!(package.transcode, crate::TranscodeConfig::default());
        assert_eq!(package.cluster.prefix, "fc");
        let edge = Layers::default()
            .with_file_text(&only(&["transcode", "streams", "hls"]))
            .unwrap()
            .build_for(Process::Edge)
            .unwrap();
        assert_eq!(edge.hls, crate::model::HlsConfig::default());
        let transcode = Layers::default()
            .with_file_text(&only(&["edge", "streams"]))
            .unwrap()
            .build_for(Process::Transcode)
            .unwrap();
        assert_eq!(transcode.edge, None);
        // A key no process knows is refused by every one.
        let err = Layers::default()
            .with_file_text("[edgee]\nx = 1")
            .unwrap()
            .build_for(Process::Transcode)
            .unwrap_err();
        assert!(err.to_string().contains("edgee"), "{err}");
    }

    #[test]
    fn control_reads_what_vod_uploads_need_and_package_the_database() {
        let text = "database_url = \"sqlite:x.db\"\n[transcode]\nladder = \"small\"\n\
                    [hls]\npart_target_ms = 250\n[recording]\n[recording.s3]\nbucket = \"media\"\n";
        let control = Layers::default()
            .with_file_text(text)
            .unwrap()
            .build_for(Process::Control)
            .unwrap();
        assert_eq!(
            control.recording.map(|r| r.s3.bucket).as_deref(),
            Some("media")
        );
        assert_eq!(control.transcode.ladder, "small");
        assert_eq!(control.hls.part_target_ms, 250);
        let package = Layers::default()
            .with_file_text(text)
            .unwrap()
            .build_for(Process::Package)
            .unwrap();
        assert!(package.database_url.is_some());
    }

    #[test]
    fn kubernetes_service_links_are_not_settings() {
        // What a pod gets for Services `ferrocast` and `ferrocast-edge`.
        let injected = [
            ("FERROCAST_SERVICE_HOST", "10.96.0.10"),
            ("FERROCAST_SERVICE_PORT", "9000"),
            ("FERROCAST_SERVICE_PORT_SRT", "9000"),
            ("FERROCAST_PORT", "udp://10.96.0.10:9000"),
            ("FERROCAST_PORT_9000_UDP", "udp://10.96.0.10:9000"),
            ("FERROCAST_PORT_9000_UDP_PROTO", "udp"),
            ("FERROCAST_PORT_9000_UDP_PORT", "9000"),
            ("FERROCAST_PORT_9000_UDP_ADDR", "10.96.0.10"),
            ("FERROCAST_EDGE_SERVICE_HOST", "10.96.0.11"),
            ("FERROCAST_EDGE_SERVICE_PORT_HTTPS", "8443"),
            ("FERROCAST_EDGE_PORT_8443_TCP_ADDR", "10.96.0.11"),
            ("FERROCAST_HLS__PART_TARGET_MS", "250"),
        ];
        let config = Layers::default().with_env(env(&injected)).build().unwrap();
        assert_eq!(config.hls.part_target_ms, 250, "real settings still apply");
        // Near misses are still settings, and so still refused.
        for name in [
            "FERROCAST_SERVICE",
            "FERROCAST_PORTS",
            "FERROCAST_PORT_X_TCP",
            "FERROCAST_PORT_9000_HTTP",
            "FERROCAST_HLS__PORT",
            "FERROCAST_SERVICE_HOSTS",
        ] {
            let built = Layers::default().with_env(env(&[(name, "1")])).build();
            assert!(built.is_err(), "{name} was ignored");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Layers::default()
            .with_file_text("[hls]\nprat_target_ms = 5")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("prat_target_ms"), "{err}");

        let err = Layers::default()
            .with_env(env(&[("FERROCAST_HTTP_LISTN", "x")]))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("http_listn"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        let err = Layers::default()
            .with_file_text("http_listen = \"not an address\"")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
        let err = Layers::default()
            .with_value("hls.part_target_ms", 5)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Range(_)), "{err}");
        for parts in [0, 1, 11] {
            let err = Layers::default()
                .with_value("hls.part_hold_back_parts", parts)
                .build()
                .unwrap_err();
            assert!(
                err.to_string().contains("part_hold_back_parts"),
                "{parts}: {err}"
            );
        }
        let two = Layers::default()
            .with_value("hls.part_hold_back_parts", 2)
            .build()
            .unwrap();
        assert_eq!(two.hls.part_hold_back_parts, 2);
        assert!(matches!(
            Layers::default().with_file_text("= broken"),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn streams_are_validated_and_secrets_redacted() {
        let good = "[[streams]]\nname = \"cam1\"\npublish_key = \"k3y-for-cam1\"\npassphrase = \"0123456789abcdef\"\non_duplicate = \"take_over\"\n";
        let config = Layers::default()
            .with_file_text(good)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.streams.len(), 1);
        assert_eq!(
            config.streams[0].on_duplicate,
            crate::DuplicatePublisher::TakeOver
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("k3y-for-cam1") && !debug.contains("0123456789abcdef"),
            "{debug}"
        );

        for bad in [
            "[[streams]]\nname = \"../x\"\npublish_key = \"k3y-for-cam1\"\n",
            "[[streams]]\nname = \"a\"\npublish_key = \"short\"\n",
            "[[streams]]\nname = \"a\"\npublish_key = \"has space in it\"\n",
            "[[streams]]\nname = \"a\"\npublish_key = \"k3y-for-cam1\"\npassphrase = \"too-short\"\n",
            "[[streams]]\nname = \"a\"\npublish_key = \"k3y-for-cam1\"\n[[streams]]\nname = \"a\"\npublish_key = \"k3y-for-cam2\"\n",
        ] {
            let err = Layers::default()
                .with_file_text(bad)
                .unwrap()
                .build()
                .unwrap_err();
            assert!(matches!(err, ConfigError::Range(_)), "{bad}: {err}");
            assert!(
                !err.to_string().contains("k3y-for"),
                "secret in error: {err}"
            );
        }
        let err = Layers::default()
            .with_file_text("[[streams]]\nname = \"a\"\npublish_key = \"k3y-for-cam1\"\non_duplicate = \"steal\"\n")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }

    #[test]
    fn rtp_entries_are_validated() {
        let config = Layers::default()
            .with_file_text(
                "[[rtp]]\nlisten = \"0.0.0.0:5004\"\nstream = \"cam-rtp\"\nformat = \"mpegts\"\n\
                 [[rtp]]\nlisten = \"127.0.0.1:5006\"\nstream = \"cam2\"\nformat = \"sdp\"\nsdp = \"/etc/cam2.sdp\"\njitter_ms = 120\n",
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.rtp.len(), 2);
        assert_eq!(config.rtp[0].format, RtpFormat::Mpegts);
        assert_eq!(config.rtp[0].jitter_ms, crate::DEFAULT_RTP_JITTER_MS);
        assert_eq!(
            config.rtp[1].sdp.as_deref(),
            Some(Path::new("/etc/cam2.sdp"))
        );
        assert_eq!(config.rtp[1].jitter_ms, 120);

        let entry = |body: &str| format!("[[rtp]]\n{body}\n");
        for (bad, expect) in [
            (
                entry("listen = \"0.0.0.0:5004\"\nstream = \"../x\"\nformat = \"mpegts\""),
                "not a valid stream name",
            ),
            (
                entry("listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"sdp\""),
                "needs sdp",
            ),
            (
                entry(
                    "listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"\nsdp = \"x.sdp\"",
                ),
                "only read with",
            ),
            (
                entry(
                    "listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"\njitter_ms = 0",
                ),
                "jitter_ms",
            ),
            (
                entry(
                    "listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"\njitter_ms = 9000",
                ),
                "jitter_ms",
            ),
            (
                entry("listen = \"0.0.0.0:0\"\nstream = \"a\"\nformat = \"mpegts\""),
                "fixed port",
            ),
            (
                entry("listen = \"0.0.0.0:9000\"\nstream = \"a\"\nformat = \"mpegts\""),
                "already used",
            ),
            (
                entry("listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"")
                    + &entry("listen = \"0.0.0.0:5004\"\nstream = \"b\"\nformat = \"mpegts\""),
                "already used",
            ),
            (
                entry("listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"")
                    + &entry("listen = \"0.0.0.0:5006\"\nstream = \"a\"\nformat = \"mpegts\""),
                "another [[rtp]]",
            ),
        ] {
            let err = Layers::default()
                .with_file_text(&bad)
                .unwrap()
                .build()
                .unwrap_err();
            assert!(matches!(err, ConfigError::Range(_)), "{bad}: {err}");
            assert!(err.to_string().contains(expect), "{bad}: {err}");
            assert!(err.to_string().contains("rtp["), "{bad}: {err}");
        }
        for bad in [
            entry("listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"rtsp\""),
            entry("listen = \"0.0.0.0:5004\"\nstream = \"a\""),
            entry("listen = \"0.0.0.0:5004\"\nstream = \"a\"\nformat = \"mpegts\"\njiter_ms = 5"),
        ] {
            let err = Layers::default()
                .with_file_text(&bad)
                .unwrap()
                .build()
                .unwrap_err();
            assert!(matches!(err, ConfigError::Invalid(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn transcode_section_layers() {
        let config = Layers::default()
            .with_env(env(&[("FERROCAST_TRANSCODE__LADDER", "small")]))
            .build()
            .unwrap();
        assert_eq!(config.transcode.ladder, "small");
        let config = Layers::default()
            .with_env(env(&[("FERROCAST_TRANSCODE__LADDER", "small")]))
            .with_file_text("[transcode]\nshed_lag_ms = 900\n[[transcode.ladders]]\nname = \"t\"\n[[transcode.ladders.rungs]]\nname = \"240p\"\nheight = 240\nvideo_bitrate_kbps = 300\n")
            .unwrap()
            .with_value("transcode.ladder", "off")
            .build()
            .unwrap();
        assert_eq!(config.transcode.ladder, "off", "flag wins");
        assert_eq!(config.transcode.shed_lag_ms, 900);
        assert_eq!(config.transcode.ladders[0].rungs[0].height, 240);
        for (bad, expect) in [
            ("[transcode]\nladder = \"nope\"\n", "no ladder named"),
            (
                "[[transcode.ladders]]\nname = \"t\"\n[[transcode.ladders.rungs]]\nname = \"x\"\nheight = 241\nvideo_bitrate_kbps = 300\n",
                "must be even",
            ),
        ] {
            let err = Layers::default()
                .with_file_text(bad)
                .unwrap()
                .build()
                .unwrap_err();
            assert!(matches!(err, ConfigError::Range(_)), "{bad}: {err}");
            assert!(err.to_string().contains(expect), "{bad}: {err}");
        }
        let err = Layers::default()
            .with_file_text("[transcode]\nladdr = \"small\"\n")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("laddr"), "{err}");
    }

    #[test]
    fn reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferrocast.toml");
        std::fs::write(&path, "[ingest]\nreconnect_grace_ms = 1234\n").unwrap();
        let config = Layers::default().with_file(&path).unwrap().build().unwrap();
        assert_eq!(config.ingest.reconnect_grace_ms, 1234);
        assert!(matches!(
            Layers::default().with_file(&dir.path().join("missing.toml")),
            Err(ConfigError::Read { .. })
        ));
    }

    const EDGE: &str = r#"
[edge]
tls_cert = "/etc/ferrocast/cert.pem"
tls_key = "/etc/ferrocast/key.pem"
[edge.jwt]
audience = "ferrocast"
[[edge.jwt.keys]]
kid = "k1"
algorithm = "HS256"
secret = "0123456789abcdef0123456789abcdef"
[edge.token]
keys = [{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }]
"#;

    #[test]
    fn edge_section_is_optional_and_layers() {
        assert_eq!(Layers::default().build().unwrap().edge, None);
        let config = Layers::default()
            .with_env(env(&[("FERROCAST_EDGE__HTTP3", "false")]))
            .with_file_text(EDGE)
            .unwrap()
            .with_value("edge.https_listen", "127.0.0.1:9443")
            .build()
            .unwrap();
        let edge = config.edge.unwrap();
        assert_eq!(edge.https_listen.port(), 9443);
        assert!(!edge.http3);
        assert_eq!(edge.jwt.audience, "ferrocast");
        assert!(
            !format!("{edge:?}").contains("0123456789abcdef"),
            "secrets redacted"
        );
    }

    #[test]
    fn edge_origin_comes_from_the_file_then_the_flag() {
        assert_eq!(
            Layers::default()
                .with_file_text(EDGE)
                .unwrap()
                .build()
                .unwrap()
                .edge
                .unwrap()
                .origin,
            None
        );
        let text = format!("{EDGE}[edge.origin]\nbase_url = \"http://a:8080\"\nmax_retries = 0\n");
        let config = Layers::default()
            .with_file_text(&text)
            .unwrap()
            .with_value("edge.origin.base_url", "http://b:8080")
            .build()
            .unwrap();
        let origin = config.edge.unwrap().origin.unwrap();
        assert_eq!(origin.base_url, "http://b:8080");
        assert_eq!(origin.max_retries, 0);
        // A knob without the URL, or a misspelt knob, is an error.
        let no_url = format!("{EDGE}[edge.origin]\nmax_retries = 0\n");
        let error = Layers::default()
            .with_file_text(&no_url)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(format!("{error:?}").contains("base_url"), "{error:?}");
        let typo = format!("{EDGE}[edge.origin]\nbase_url = \"http://a\"\nretries = 1\n");
        assert!(
            Layers::default()
                .with_file_text(&typo)
                .unwrap()
                .build()
                .is_err()
        );
    }

    #[test]
    fn edge_flags_without_an_edge_section_say_what_is_missing() {
        let error = Layers::default()
            .with_value("edge.https_listen", "127.0.0.1:9443")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("[edge.jwt]"), "{error}");
    }

    #[test]
    fn edge_section_is_validated() {
        let text = EDGE.replace("tls_key = \"/etc/ferrocast/key.pem\"\n", "");
        let error = Layers::default()
            .with_file_text(&text)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            error.to_string().contains("tls_cert and tls_key"),
            "{error}"
        );
        let text = EDGE.replace("0123456789abcdef0123456789abcdef", "short");
        assert!(
            Layers::default()
                .with_file_text(&text)
                .unwrap()
                .build()
                .is_err()
        );
        let text = format!(
            "http_listen = \"127.0.0.1:8443\"\n{}",
            EDGE.replace("[edge]\n", "[edge]\nhttps_listen = \"127.0.0.1:8443\"\n")
        );
        let error = Layers::default()
            .with_file_text(&text)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("also http_listen"), "{error}");
    }
}
