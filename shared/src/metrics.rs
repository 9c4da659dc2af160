//! Metrics as CloudWatch embedded-metric-format (EMF) lines: one JSON object per line on stdout, which Lambda sends
//! to CloudWatch Logs, where the metrics are extracted from it. No agent, no PutMetricData call on the request path.
//!
//! Every observation is one [`Metric`]; [`Metric::line`] is its line, a pure function so its shape is unit-tested.

use std::io::Write;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::grid::Mode;

/// An observation worth a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A chunk was accepted (sequential or parallel mode): `ChunksAccepted`, `BytesAccepted`.
    ChunkAccepted {
        mode: Mode,
        bytes: u64,
    },
    /// A direct upload's part URLs were handed out: `PartUrlsIssued`.
    PartUrlsIssued {
        count: u64,
    },
    /// Buffered chunks became an S3 part: `PartsFlushed`, `FlushLatency`.
    PartFlushed {
        mode: Mode,
        millis: u64,
    },
    /// An upload was completed by this request: `UploadsCompleted`, `BytesCompleted`, `CompletionLatency`.
    Completed {
        mode: Mode,
        bytes: u64,
        millis: u64,
    },
    /// A request was answered with a 4xx (`Refusals`) or 5xx (`ServerErrors`), by route and status.
    Refused {
        route: &'static str,
        status: u16,
    },
    /// A request lost a race to another that did the same thing first: `RacesLost`.
    RaceLost {
        race: Race,
    },
    /// The completion hook failed or timed out; the completion stands: `HookFailures`.
    HookFailed,
    /// An upload event was published to EventBridge, or could not be (the batch is retried): `EventsPublished`,
    /// `EventPublishFailures`, by event.
    EventPublished {
        detail_type: &'static str,
    },
    EventPublishFailed {
        detail_type: &'static str,
    },
    /// The cleanup function removed an unfinished upload's bytes: `UploadsDiscarded`.
    Discarded,
}

/// Which race was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// A sequential chunk whose commit found the upload moved on.
    SequentialCommit,
    /// A sequential chunk that would fill a part while another chunk's request held the part's flush lease (409).
    FlushLease,
    /// A parallel chunk whose slot another request held first (same bytes: the answer is still 200).
    ParallelSlot,
    /// A completion while another request held the completion lease.
    Completion,
}

impl Race {
    fn name(self) -> &'static str {
        match self {
            Race::SequentialCommit => "sequential-commit",
            Race::FlushLease => "flush-lease",
            Race::ParallelSlot => "parallel-slot",
            Race::Completion => "completion",
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric's dimensions (name, value) and values (name, unit, value).
type Dimensions = Vec<(&'static str, String)>;
type Values = Vec<(&'static str, Unit, u64)>;

impl Metric {
    fn parts(self) -> (Dimensions, Values) {
        let mode = |m: Mode| vec![("Mode", m.as_str().to_string())];
        match self {
            Metric::ChunkAccepted { mode: m, bytes } => {
                (mode(m), vec![("ChunksAccepted", Unit::Count, 1), ("BytesAccepted", Unit::Bytes, bytes)])
            }
            Metric::PartUrlsIssued { count } => (mode(Mode::Direct), vec![("PartUrlsIssued", Unit::Count, count)]),
            Metric::PartFlushed { mode: m, millis } => {
                (mode(m), vec![("PartsFlushed", Unit::Count, 1), ("FlushLatency", Unit::Milliseconds, millis)])
            }
            Metric::Completed { mode: m, bytes, millis } => (
                mode(m),
                vec![
                    ("UploadsCompleted", Unit::Count, 1),
                    ("BytesCompleted", Unit::Bytes, bytes),
                    ("CompletionLatency", Unit::Milliseconds, millis),
                ],
            ),
            Metric::Refused { route, status } => {
                let name = if status >= 500 { "ServerErrors" } else { "Refusals" };
                (vec![("Route", route.to_string()), ("Status", status.to_string())], vec![(name, Unit::Count, 1)])
            }
            Metric::RaceLost { race } => (vec![("Race", race.name().to_string())], vec![("RacesLost", Unit::Count, 1)]),
            Metric::HookFailed => (Vec::new(), vec![("HookFailures", Unit::Count, 1)]),
            Metric::EventPublished { detail_type } => {
                (vec![("Event", detail_type.to_string())], vec![("EventsPublished", Unit::Count, 1)])
            }
            Metric::EventPublishFailed { detail_type } => {
                (vec![("Event", detail_type.to_string())], vec![("EventPublishFailures", Unit::Count, 1)])
            }
            Metric::Discarded => (Vec::new(), vec![("UploadsDiscarded", Unit::Count, 1)]),
        }
    }

    /// The EMF line: the `_aws` metadata naming the metrics and their one dimension set, then the dimensions' and
    /// metrics' values as top-level members.
    pub fn line(self, namespace: &str, timestamp_ms: u64) -> Value {
        let (dimensions, values) = self.parts();
        let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
        let definitions: Vec<Value> =
            values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.name()})).collect();
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [names], "Metrics": definitions}],
            }),
        );
        for (name, value) in dimensions {
            line.insert(name.into(), Value::String(value));
        }
        for (name, _, value) in values {
            line.insert(name.into(), json!(value));
        }
        Value::Object(line)
    }
}

/// Where lines go: stdout in the functions and the local server; a test's buffer.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Emits metrics, or nothing when no namespace is configured.
#[derive(Clone)]
pub struct Metrics {
    namespace: Option<String>,
    sink: Sink,
}

impl Metrics {
    pub fn to_stdout(namespace: Option<String>) -> Self {
        Self::to_sink(
            namespace,
            Arc::new(|line| {
                // One write of the whole line, so it never interleaves with a log line.
                let _ = std::io::stdout().lock().write_all(format!("{line}\n").as_bytes());
            }),
        )
    }

    pub fn to_sink(namespace: Option<String>, sink: Sink) -> Self {
        Metrics { namespace, sink }
    }

    pub fn emit(&self, metric: Metric) {
        if let Some(namespace) = &self.namespace {
            (self.sink)(&metric.line(namespace, crate::clock::now_ms()).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_emf() {
        let line = Metric::Completed { mode: Mode::Parallel, bytes: 42, millis: 7 }.line("ChunkedUpload", 1_000);
        assert_eq!(
            line,
            json!({
                "_aws": {"Timestamp": 1000, "CloudWatchMetrics": [{
                    "Namespace": "ChunkedUpload",
                    "Dimensions": [["Mode"]],
                    "Metrics": [
                        {"Name": "UploadsCompleted", "Unit": "Count"},
                        {"Name": "BytesCompleted", "Unit": "Bytes"},
                        {"Name": "CompletionLatency", "Unit": "Milliseconds"},
                    ],
                }]},
                "Mode": "parallel", "UploadsCompleted": 1, "BytesCompleted": 42, "CompletionLatency": 7,
            })
        );
    }

    #[test]
    fn every_metric_names_each_of_its_dimensions_and_values() {
        let all = [
            Metric::ChunkAccepted { mode: Mode::Sequential, bytes: 1 },
            Metric::PartUrlsIssued { count: 3 },
            Metric::PartFlushed { mode: Mode::Sequential, millis: 1 },
            Metric::Completed { mode: Mode::Direct, bytes: 1, millis: 1 },
            Metric::Refused { route: "chunk", status: 409 },
            Metric::Refused { route: "complete", status: 503 },
            Metric::RaceLost { race: Race::ParallelSlot },
            Metric::RaceLost { race: Race::FlushLease },
            Metric::HookFailed,
            Metric::EventPublished { detail_type: "Upload Completed" },
            Metric::EventPublishFailed { detail_type: "Upload Expired" },
            Metric::Discarded,
        ];
        for metric in all {
            let line = metric.line("ns", 1);
            let meta = &line["_aws"]["CloudWatchMetrics"][0];
            for name in meta["Dimensions"][0].as_array().expect("one dimension set") {
                assert!(line[name.as_str().expect("a name")].is_string(), "{line}");
            }
            for definition in meta["Metrics"].as_array().expect("metrics") {
                assert!(line[definition["Name"].as_str().expect("a name")].is_u64(), "{line}");
            }
        }
        let refusal = Metric::Refused { route: "chunk", status: 409 }.line("ns", 1);
        assert_eq!((refusal["Refusals"].as_u64(), refusal["Status"].as_str()), (Some(1), Some("409")));
        assert_eq!(Metric::Refused { route: "chunk", status: 503 }.line("ns", 1)["ServerErrors"], 1);
    }
}
