//! Counting connections in, overall and per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::{ConnectionLimits, ip_key};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The listener holds `max_connections`.
    #[error("the listener is at its connection limit")]
    Full,
    /// The client holds `max_connections_per_client`.
    #[error("the client is at its connection limit")]
    ClientFull,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Full => "listener_full",
            Refusal::ClientFull => "client_full",
        }
    }
}

/// The connection metrics of one role, by listener (`https`, `h3`,
/// `http`...): open connections, refusals by reason, idle closes.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    closed_idle: IntCounterVec,
}

impl ConnectionMetrics {
    /// Register `ferrocast_{role}_connections_open{listener}`,
    /// `ferrocast_{role}_connections_refused_total{listener,reason}` and
    /// `ferrocast_{role}_connections_closed_idle_total{listener}` in
    /// `registry`.
    pub fn new(role: &str, registry: &Registry) -> prometheus::Result<ConnectionMetrics> {
        let open = IntGaugeVec::new(
            Opts::new(
                format!("ferrocast_{role}_connections_open"),
                "Connections open, by listener.",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                format!("ferrocast_{role}_connections_refused_total"),
                "Connections refused at a connection limit, by listener and reason.",
            ),
            &["listener", "reason"],
        )?;
        let closed_idle = IntCounterVec::new(
            Opts::new(
                format!("ferrocast_{role}_connections_closed_idle_total"),
                "Connections closed after idle_timeout_ms without a request, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed_idle.clone()))?;
        Ok(ConnectionMetrics {
            open,
            refused,
            closed_idle,
        })
    }

    fn listener(&self, listener: &str) -> ListenerMetrics {
        ListenerMetrics {
            open: self.open.with_label_values(&[listener]),
            refused_full: self
                .refused
                .with_label_values(&[listener, Refusal::Full.label()]),
            refused_client: self
                .refused
                .with_label_values(&[listener, Refusal::ClientFull.label()]),
            closed_idle: self.closed_idle.with_label_values(&[listener]),
        }
    }
}

#[derive(Debug)]
struct ListenerMetrics {
    open: IntGauge,
    refused_full: IntCounter,
    refused_client: IntCounter,
    closed_idle: IntCounter,
}

/// Admits connections of one listener within [`ConnectionLimits`].
#[derive(Debug)]
pub struct Admission {
    max: usize,
    max_per_client: usize,
    ipv6_prefix_len: u8,
    state: Mutex<State>,
    metrics: ListenerMetrics,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_client: HashMap<u128, usize>,
}

impl Admission {
    /// An admission for listener `listener` (the metric label; use
    /// [`Admission::new`] for one called `default`).
    pub fn for_listener(
        limits: &ConnectionLimits,
        metrics: &ConnectionMetrics,
        listener: &str,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            max: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            ipv6_prefix_len: limits.ipv6_prefix_len,
            state: Mutex::new(State::default()),
            metrics: metrics.listener(listener),
        })
    }

    /// [`Admission::for_listener`] with the label `default`.
    pub fn new(limits: &ConnectionLimits, metrics: ConnectionMetrics) -> Arc<Admission> {
        Admission::for_listener(limits, &metrics, "default")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit a connection from `ip`, or refuse it (counted). The
    /// connection counts until the [`Permit`] is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let key = ip_key(ip, self.ipv6_prefix_len);
        let mut state = self.lock();
        if state.open >= self.max {
            drop(state);
            self.metrics.refused_full.inc();
            return Err(Refusal::Full);
        }
        let client = state.per_client.entry(key).or_insert(0);
        if *client >= self.max_per_client {
            drop(state);
            self.metrics.refused_client.inc();
            return Err(Refusal::ClientFull);
        }
        *client += 1;
        state.open += 1;
        self.metrics.open.set(state.open as i64);
        Ok(Permit {
            admission: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Count a connection closed for being idle.
    pub fn closed_idle(&self) {
        self.metrics.closed_idle.inc();
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    key: u128,
}

impl Permit {
    /// The admission this permit counts against.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(count) = state.per_client.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.per_client.remove(&self.key);
            }
        }
        self.admission.metrics.open.set(state.open as i64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn admission(max: usize, per_client: usize) -> (Arc<Admission>, Registry) {
        let registry = Registry::new();
        let limits = ConnectionLimits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..ConnectionLimits::default()
        };
        let metrics = ConnectionMetrics::new("test", &registry).unwrap();
        (Admission::for_listener(&limits, &metrics, "tcp"), registry)
    }

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn caps_per_client_and_overall_and_frees_on_drop() {
        let (admission, registry) = admission(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::ClientFull);
        let _b1 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Full);
        assert_eq!(admission.open(), 3);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _b2 = admission.admit(b).unwrap();
        let text = render(&registry);
        assert!(text.contains(
            "ferrocast_test_connections_refused_total{listener=\"tcp\",reason=\"client_full\"} 1"
        ));
        assert!(text.contains(
            "ferrocast_test_connections_refused_total{listener=\"tcp\",reason=\"listener_full\"} 1"
        ));
        assert!(text.contains("ferrocast_test_connections_open{listener=\"tcp\"} 3"));
    }

    #[test]
    fn ipv6_clients_count_by_prefix_and_mapped_v4_as_v4() {
        let (admission, _registry) = admission(10, 1);
        let _one = admission.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            admission.admit("2001:db8::2".parse().unwrap()).unwrap_err(),
            Refusal::ClientFull
        );
        assert!(admission.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = admission.admit("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            admission
                .admit("::ffff:192.0.2.9".parse().unwrap())
                .unwrap_err(),
            Refusal::ClientFull
        );
    }

    #[test]
    fn the_table_forgets_clients_with_no_connection() {
        let (admission, _registry) = admission(10_000, 1);
        for n in 0..1000u32 {
            let permit = admission.admit(IpAddr::from(n.to_be_bytes())).unwrap();
            drop(permit);
        }
        assert!(admission.lock().per_client.is_empty());
    }
}
