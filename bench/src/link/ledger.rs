//! What the link model counts during a run: bytes up and down, connections by destination, each request with its
//! times, and when the link carried payload. From these a run's figures follow: its span, the time before the
//! first payload byte and after the last, the link's idle time in between, and the bytes sent again after a cut.
//!
//! Times are seconds since the run's mark (the harness marks the ledger right before a system starts).

use std::collections::BTreeMap;

use serde::Serialize;

/// One request as the link saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestRecord {
    /// Where it went (`host:port`, after aliases).
    pub destination: String,
    /// The S3 or DynamoDB operation, or the method and path (ids replaced by `{id}`).
    pub name: String,
    /// Whether its body is file data.
    pub payload: bool,
    pub body_bytes: u64,
    /// Its first and last byte on the link.
    pub first_on_link: f64,
    pub last_on_link: f64,
    /// Its last byte handed to the far side, and the first byte of the answer from there: the far side's time.
    pub last_delivered: f64,
    pub answer_from_far_side: Option<f64>,
    /// The answer's first byte handed to the client.
    pub answer_at_client: Option<f64>,
    pub status: Option<u16>,
}

/// A run's counts on one link.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Bytes on the link: `(left at, bytes, payload)`, in the order recorded.
    sent: Vec<(f64, u64, bool)>,
    uplink_bytes: u64,
    payload_bytes: u64,
    downlink_bytes: u64,
    first_request: Option<f64>,
    last_delivered_to_client: Option<f64>,
    connections: BTreeMap<String, u64>,
    requests: Vec<RequestRecord>,
    cut_at: Option<f64>,
    resumed_at: Option<f64>,
}

/// A run's figures on one link, as the report gives them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub uplink_bytes: u64,
    pub payload_bytes: u64,
    pub downlink_bytes: u64,
    /// The first request's first byte, the first and last payload byte on the link, the last byte handed to the
    /// client.
    pub first_request: Option<f64>,
    pub first_payload: Option<f64>,
    pub last_payload: Option<f64>,
    pub finished: Option<f64>,
    /// Seconds within `[first_payload, last_payload]` the link could have carried more (`idle_within`).
    pub idle_seconds: f64,
    pub connections: BTreeMap<String, u64>,
    /// Payload bytes on the link before the cut, and the first payload byte on a connection opened after it.
    pub cut_at: Option<f64>,
    pub payload_before_cut: Option<u64>,
    pub resumed_at: Option<f64>,
}

impl Ledger {
    /// `bytes` left the client at `at` (on the link).
    pub fn on_link(&mut self, at: f64, bytes: u64, payload: bool) {
        self.sent.push((at, bytes, payload));
        self.uplink_bytes += bytes;
        if payload {
            self.payload_bytes += bytes;
        }
    }

    pub fn request_started(&mut self, at: f64) {
        self.first_request = Some(self.first_request.map_or(at, |t| t.min(at)));
    }

    /// `bytes` of an answer reached the client at `at`.
    pub fn delivered_to_client(&mut self, at: f64, bytes: u64) {
        self.downlink_bytes += bytes;
        self.last_delivered_to_client = Some(self.last_delivered_to_client.map_or(at, |t| t.max(at)));
    }

    pub fn connection_opened(&mut self, destination: &str) {
        *self.connections.entry(destination.to_string()).or_default() += 1;
    }

    /// Keeps a request; its index is how it is updated later.
    pub fn add_request(&mut self, record: RequestRecord) -> usize {
        self.requests.push(record);
        self.requests.len() - 1
    }

    pub fn request_mut(&mut self, index: usize) -> Option<&mut RequestRecord> {
        self.requests.get_mut(index)
    }

    pub fn requests(&self) -> &[RequestRecord] {
        &self.requests
    }

    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    pub fn cut(&mut self, at: f64) {
        self.cut_at.get_or_insert(at);
    }

    /// Payload left at `at` on a connection opened after the cut: bytes flow again.
    pub fn resumed(&mut self, at: f64) {
        self.resumed_at = Some(self.resumed_at.map_or(at, |t| t.min(at)));
    }

    /// The figures, for a link whose payload crosses at `bytes_per_second`.
    pub fn summary(&self, bytes_per_second: f64) -> Summary {
        let payload_times = || self.sent.iter().filter(|(_, _, payload)| *payload).map(|(t, _, _)| *t);
        let first_payload = payload_times().reduce(f64::min);
        let last_payload = payload_times().reduce(f64::max);
        let idle_seconds = match (first_payload, last_payload) {
            (Some(from), Some(to)) => idle_within(&self.sent, bytes_per_second, from, to),
            _ => 0.0,
        };
        let before_cut = |cut: f64| self.sent.iter().filter(|(t, _, p)| *p && *t <= cut).map(|(_, n, _)| n).sum();
        Summary {
            uplink_bytes: self.uplink_bytes,
            payload_bytes: self.payload_bytes,
            downlink_bytes: self.downlink_bytes,
            first_request: self.first_request,
            first_payload,
            last_payload,
            finished: self.last_delivered_to_client,
            idle_seconds,
            connections: self.connections.clone(),
            cut_at: self.cut_at,
            payload_before_cut: self.cut_at.map(before_cut),
            resumed_at: self.resumed_at,
        }
    }
}

/// Seconds within `[from, to]` the link of `bytes_per_second` could have carried more than it did: the window's
/// length less the time its bytes (those that left within it) take at that rate. Counted from the bytes, not from
/// when the proxy happened to read them: a busy machine reads in bursts what crossed the link evenly.
pub fn idle_within(sent: &[(f64, u64, bool)], bytes_per_second: f64, from: f64, to: f64) -> f64 {
    let bytes: u64 = sent.iter().filter(|(t, _, _)| (from..=to).contains(t)).map(|(_, n, _)| n).sum();
    (to - from - bytes as f64 / bytes_per_second).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_carrying_its_rate_throughout_has_no_idle_time() {
        // 1,000 bytes a second; 100 bytes every 0.1 s keep it busy, even read in bursts.
        let sent: Vec<_> = (1..=10).map(|i| (i as f64 / 10.0, 100, true)).collect();
        assert!(idle_within(&sent, 1000.0, 0.1, 1.0) < 1e-9);
        let bursts = [(0.5, 500, true), (1.0, 500, true)];
        assert!(idle_within(&bursts, 1000.0, 0.0, 1.0) < 1e-9);
    }

    #[test]
    fn what_the_link_did_not_carry_is_idle_time() {
        // 300 bytes within [0.1, 0.6] at 1,000 a second: 0.3 s of 0.5 carried, 0.2 s idle; bytes outside do not count.
        let sent = [(0.05, 999, false), (0.2, 200, true), (0.6, 100, true), (0.7, 999, true)];
        assert!((idle_within(&sent, 1000.0, 0.1, 0.6) - 0.2).abs() < 1e-9);
        assert_eq!(idle_within(&[], 1000.0, 0.0, 1.0), 1.0);
    }

    #[test]
    fn a_summary_has_the_runs_span_and_what_a_cut_cost() {
        let mut ledger = Ledger::default();
        ledger.request_started(0.05);
        ledger.on_link(0.05, 300, false); // a JSON request before the data
        ledger.on_link(0.2, 1000, true);
        ledger.on_link(0.3, 1000, true);
        ledger.cut(0.35);
        ledger.on_link(1.1, 1000, true);
        ledger.resumed(1.1);
        ledger.delivered_to_client(1.3, 50);
        ledger.connection_opened("127.0.0.1:4566");
        ledger.connection_opened("127.0.0.1:4566");
        let s = ledger.summary(10_000.0);
        assert_eq!((s.uplink_bytes, s.payload_bytes, s.downlink_bytes), (3300, 3000, 50));
        assert_eq!(
            (s.first_request, s.first_payload, s.last_payload, s.finished),
            (Some(0.05), Some(0.2), Some(1.1), Some(1.3))
        );
        // 3,000 bytes left within [0.2, 1.1]: 0.3 s of the 0.9 s at 10,000 a second, 0.6 s idle.
        assert!((s.idle_seconds - 0.6).abs() < 1e-9, "{}", s.idle_seconds);
        assert_eq!(s.connections["127.0.0.1:4566"], 2);
        assert_eq!((s.cut_at, s.payload_before_cut, s.resumed_at), (Some(0.35), Some(2000), Some(1.1)));
    }
}
