//! What the engine counts: connection events, messages sent and received by type and outcome,
//! and how late received messages reach us. Process-wide collectors (the engine has no
//! registry of its own); every `Metrics` registry of the process exports them, so two servers
//! in one test process share these counts (compare before and after, never absolute values).
//!
//! Label values are fixed sets: a message's type is one of `events::kind`'s names, an outcome
//! one of [`SendOutcome`]'s, a connection event one of [`Connection`]'s. No label per session.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, core::Collector};

pub struct EngineMetrics {
    pub connection_events: IntCounterVec,
    pub sent: IntCounterVec,
    pub received: IntCounterVec,
    pub receive_lag: Histogram,
}

/// A session's connection changed.
#[derive(Debug, Clone, Copy)]
pub enum Connection {
    Connected,
    Disconnected,
    LoggedOut,
    /// Stopped by WhatsApp: stream replaced, temporary ban, client outdated.
    Stopped,
    QrExhausted,
}

impl Connection {
    fn label(self) -> &'static str {
        match self {
            Connection::Connected => "connected",
            Connection::Disconnected => "disconnected",
            Connection::LoggedOut => "logged_out",
            Connection::Stopped => "stopped",
            Connection::QrExhausted => "qr_exhausted",
        }
    }
}

/// How a send ended.
#[derive(Debug, Clone, Copy)]
pub enum SendOutcome {
    /// WhatsApp took it and it is recorded.
    Sent,
    /// Not sent (not journaled, or WhatsApp refused or did not answer).
    Failed,
    /// WhatsApp took it; its record is retried in the background (the API answered 500).
    NotRecorded,
}

impl SendOutcome {
    fn label(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::Failed => "failed",
            SendOutcome::NotRecorded => "not_recorded",
        }
    }
}

pub static ENGINE: LazyLock<EngineMetrics> = LazyLock::new(|| EngineMetrics {
    connection_events: IntCounterVec::new(
        Opts::new(
            "whatsapp_connection_events_total",
            "Session connection changes on this node (connected, disconnected, logged_out, \
             stopped, qr_exhausted); a connected after a disconnected is a reconnect",
        ),
        &["event"],
    )
    .expect("static metric definition"),
    sent: IntCounterVec::new(
        Opts::new(
            "whatsapp_messages_sent_total",
            "Messages sent through WhatsApp by type and outcome (sent, failed, not_recorded)",
        ),
        &["type", "outcome"],
    )
    .expect("static metric definition"),
    received: IntCounterVec::new(
        Opts::new(
            "whatsapp_messages_received_total",
            "Messages received from WhatsApp by type and outcome (stored; failed: not stored, \
             left unacknowledged for WhatsApp to deliver again; a redelivery counts again)",
        ),
        &["type", "outcome"],
    )
    .expect("static metric definition"),
    receive_lag: Histogram::with_opts(
        HistogramOpts::new(
            "whatsapp_receive_lag_seconds",
            "From a received message's WhatsApp timestamp (second precision) to its record here",
        )
        .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0]),
    )
    .expect("static metric definition"),
});

impl EngineMetrics {
    /// Creates the common series at zero, so dashboards and alerts see them before the first
    /// event.
    pub fn touch(&self) {
        for c in [
            Connection::Connected,
            Connection::Disconnected,
            Connection::LoggedOut,
            Connection::Stopped,
            Connection::QrExhausted,
        ] {
            self.connection_events.with_label_values(&[c.label()]);
        }
        for o in [
            SendOutcome::Sent,
            SendOutcome::Failed,
            SendOutcome::NotRecorded,
        ] {
            self.sent.with_label_values(&["text", o.label()]);
        }
        for o in ["stored", "failed"] {
            self.received.with_label_values(&["text", o]);
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.connection_events.clone()),
            Box::new(self.sent.clone()),
            Box::new(self.received.clone()),
            Box::new(self.receive_lag.clone()),
        ]
    }
}

pub(crate) fn connection(event: Connection) {
    ENGINE
        .connection_events
        .with_label_values(&[event.label()])
        .inc();
}

pub(crate) fn sent(kind: &str, outcome: SendOutcome) {
    ENGINE
        .sent
        .with_label_values(&[kind, outcome.label()])
        .inc();
}

/// A received message of `kind` recorded (`stored`) or not; `timestamp` is WhatsApp's (Unix
/// seconds).
pub(crate) fn received(kind: &str, timestamp: i64, stored: bool) {
    let outcome = if stored { "stored" } else { "failed" };
    ENGINE.received.with_label_values(&[kind, outcome]).inc();
    let lag = chrono::Utc::now().timestamp_millis() - timestamp.saturating_mul(1000);
    if stored && timestamp > 0 {
        ENGINE.receive_lag.observe(lag.max(0) as f64 / 1000.0);
    }
}
