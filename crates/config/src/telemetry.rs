//! `[telemetry]`: traces over OpenTelemetry. Metrics stay Prometheus
//! (`/metrics`).

use serde::{Deserialize, Serialize};

/// Trace export settings, read by every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC endpoint spans are exported to, like
    /// `http://otel-collector:4317`. Default: the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variable, else none: nothing is
    /// exported and units carry no trace context.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces (publisher sessions) recorded, 0.0 to 1.0.
    /// Default 1.0. Spans continued from another process follow that
    /// process's decision, so a trace is whole or absent.
    pub sample_ratio: SampleRatio,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sample_ratio: SampleRatio(1.0),
        }
    }
}

/// A ratio from 0.0 to 1.0 (compared by value, so the configuration
/// stays `Eq`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SampleRatio(pub f64);

impl PartialEq for SampleRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for SampleRatio {}

impl TelemetryConfig {
    /// Ranges checked when the configuration is built.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio.0) {
            return Err(format!(
                "telemetry.sample_ratio = {} is outside 0.0..=1.0",
                self.sample_ratio.0
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "telemetry.otlp_endpoint = {endpoint:?} is not an http:// or https:// URL \
                 (the OTLP/gRPC endpoint, like http://otel-collector:4317)"
            ));
        }
        Ok(())
    }

    /// The endpoint to export to: the setting, else `otel_env` (the value
    /// of `OTEL_EXPORTER_OTLP_ENDPOINT`), else none.
    pub fn endpoint(&self, otel_env: Option<String>) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or(otel_env.filter(|e| !e.trim().is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_wins_over_the_standard_variable() {
        let mut config = TelemetryConfig::default();
        assert_eq!(config.endpoint(None), None);
        assert_eq!(config.endpoint(Some(String::new())), None);
        assert_eq!(
            config.endpoint(Some("http://collector:4317".into())),
            Some("http://collector:4317".into())
        );
        config.otlp_endpoint = Some("http://mine:4317".into());
        assert_eq!(
            config.endpoint(Some("http://collector:4317".into())),
            Some("http://mine:4317".into())
        );
    }

    #[test]
    fn ratios_and_endpoints_are_checked() {
        let mut config = TelemetryConfig::default();
        assert!(config.validate().is_ok());
        config.sample_ratio = SampleRatio(1.5);
        assert!(config.validate().is_err());
        config.sample_ratio = SampleRatio(f64::NAN);
        assert!(config.validate().is_err());
        config.sample_ratio = SampleRatio(0.25);
        config.otlp_endpoint = Some("collector:4317".into());
        let err = config.validate().unwrap_err();
        assert!(err.contains("not an http://"), "{err}");
    }
}
