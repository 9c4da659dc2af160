//! Settings, read from the environment once at start-up. Names follow django-chunked-upload's settings.

use std::env;
use std::time::Duration;

use crate::hook::{self, HookSpec};
use crate::protocol::{KeyTemplate, MAX_PART_SIZE, MIB, MIN_PART_SIZE, MediaType, S3_MAX_OBJECT_SIZE};
use crate::store::Limits;

/// The smallest chunk (but the last) taken by default: django-chunked-upload's jQuery-File-Upload demo sends 100,000
/// bytes, and 80 such chunks make a 5 MiB part.
pub const DEFAULT_MIN_CHUNK: u64 = 64 * 1024;
/// The largest chunk whose base64 event (4/3 of it, plus headers) stays under Lambda's 6 MB request payload.
const DEFAULT_MAX_CHUNK: u64 = 4_500_000;
/// Below API Gateway's 30 s integration timeout and the functions' 29 s, with room to answer.
const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 25;
const LEASE_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Config {
    /// `CHUNKED_UPLOAD_BUCKET` (required): where parts, buffered chunks and final objects go.
    pub bucket: String,
    /// `CHUNKED_UPLOAD_TABLE` (required): the DynamoDB table of upload records.
    pub table: String,
    /// `CHUNKED_UPLOAD_EXPIRATION_DELTA` seconds from creation after which an unfinished upload is gone.
    pub expiration_delta_secs: u64,
    /// `CHUNKED_UPLOAD_MAX_BYTES`: largest file accepted; `None` means what S3 can store.
    pub max_bytes: Option<u64>,
    /// `CHUNKED_UPLOAD_MAX_CHUNK_BYTES`: largest chunk body accepted.
    pub max_chunk_bytes: u64,
    /// `CHUNKED_UPLOAD_FIELD_NAME`: the multipart field that carries the chunk.
    pub field_name: String,
    /// `CHUNKED_UPLOAD_KEY_TEMPLATE`: final object key, with `{upload_id}`, `{filename}` and `{owner}`; checked
    /// against the buffer prefix.
    pub key_template: KeyTemplate,
    /// `CHUNKED_UPLOAD_BUFFER_PREFIX`: where chunks wait until a part is full.
    pub buffer_prefix: String,
    /// `CHUNKED_UPLOAD_REQUIRE_AUTH`: anonymous requests get 403 when true.
    pub require_auth: bool,
    /// `CHUNKED_UPLOAD_MIN_PART_BYTES` / `CHUNKED_UPLOAD_MAX_PART_BYTES`: bounds of the S3 part size.
    pub min_part_bytes: u64,
    pub max_part_bytes: u64,
    /// `CHUNKED_UPLOAD_STORAGE_CLASS`: S3 storage class of the final object.
    pub storage_class: String,
    /// `CHUNKED_UPLOAD_S3_PATH_STYLE`: path-style S3 addressing; defaults to true when `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL` points at an emulator, which rarely serves virtual-hosted buckets.
    pub s3_path_style: bool,
    /// `CHUNKED_UPLOAD_MIN_CHUNK_BYTES`: smallest chunk accepted other than the last (a file smaller than a hundred
    /// of them may come in hundredths), bounding what one part costs in calls.
    pub min_chunk_bytes: u64,
    /// `CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER` / `CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER`: uploads, and bytes (their sizes
    /// added up), one owner may have in progress; unset or 0: no limit.
    pub limits: Limits,
    /// `CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS`: how long a request may take before it is answered 503. Below API
    /// Gateway's 30 s integration timeout and the functions' 29 s, so the client gets an answer that says what to do
    /// instead of a gateway timeout or a killed function.
    pub request_timeout: Duration,
    /// `CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS`: the days after which the bucket's lifecycle rules delete buffered
    /// chunks and abort multipart uploads; `None` where no such rule is known (local development).
    pub buffer_expiration_days: Option<u64>,
    /// `CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES`: active types (HTML, SVG, script...) stored as declared, not as
    /// `application/octet-stream`.
    pub trusted_content_types: Vec<MediaType>,
    /// `CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS`: how long a direct upload's part URL is valid (never past the upload's
    /// expiry). Short: a URL is a bearer credential for one part's bytes.
    pub presign_expiry: Duration,
    /// `CHUNKED_UPLOAD_METRICS_NAMESPACE`: the CloudWatch namespace of the metric lines (`metrics`); `off`: none.
    pub metrics_namespace: Option<String>,
    /// `CHUNKED_UPLOAD_EVENT_BUS`: the EventBridge bus (name or ARN) the events function publishes to.
    pub event_bus: String,
    /// `CHUNKED_UPLOAD_COMPLETION_HOOK`: what is called when an upload completes (`hook`); unset: nothing.
    pub completion_hook: Option<HookSpec>,
    /// `CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS`: how long the hook may take, below the request timeout (and never
    /// past the request's deadline).
    pub completion_hook_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests can check parsing without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let required = |var: &'static str| get(var).ok_or_else(|| ConfigError { var, reason: "must be set".into() });
        let number = |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            let Some(raw) = get(var) else {
                return Ok(default);
            };
            let value: u64 = raw
                .trim()
                .parse()
                .map_err(|_| ConfigError { var, reason: format!("{raw:?} is not a whole number") })?;
            if !(min..=max).contains(&value) {
                return Err(ConfigError { var, reason: format!("{value} is outside {min}..={max}") });
            }
            Ok(value)
        };

        let bucket = required("CHUNKED_UPLOAD_BUCKET")?;
        let table = required("CHUNKED_UPLOAD_TABLE")?;
        let expiration_delta_secs = number("CHUNKED_UPLOAD_EXPIRATION_DELTA", 86_400, 1, 366 * 86_400)?;
        let max_bytes = match get("CHUNKED_UPLOAD_MAX_BYTES") {
            None => None,
            Some(_) => Some(number("CHUNKED_UPLOAD_MAX_BYTES", 0, 1, S3_MAX_OBJECT_SIZE)?),
        };
        let max_chunk_bytes = number("CHUNKED_UPLOAD_MAX_CHUNK_BYTES", DEFAULT_MAX_CHUNK, 1, 64 * MIB)?;
        let min_part_bytes = number("CHUNKED_UPLOAD_MIN_PART_BYTES", MIN_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE)?;
        let max_part_bytes = number("CHUNKED_UPLOAD_MAX_PART_BYTES", MAX_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE)?;
        if max_part_bytes < min_part_bytes {
            return Err(ConfigError {
                var: "CHUNKED_UPLOAD_MAX_PART_BYTES",
                reason: format!("{max_part_bytes} is below CHUNKED_UPLOAD_MIN_PART_BYTES ({min_part_bytes})"),
            });
        }
        let field_name = get("CHUNKED_UPLOAD_FIELD_NAME").unwrap_or_else(|| "file".into());
        let key_template =
            get("CHUNKED_UPLOAD_KEY_TEMPLATE").unwrap_or_else(|| "uploads/{upload_id}/{filename}".into());
        let buffer_prefix = get("CHUNKED_UPLOAD_BUFFER_PREFIX").unwrap_or_else(|| "buffer/".into());
        if !buffer_prefix.ends_with('/') || buffer_prefix.starts_with('/') {
            return Err(ConfigError {
                var: "CHUNKED_UPLOAD_BUFFER_PREFIX",
                reason: format!("{buffer_prefix:?} must end with '/' and not start with one"),
            });
        }
        let key_template = KeyTemplate::parse(&key_template, &buffer_prefix)
            .map_err(|reason| ConfigError { var: "CHUNKED_UPLOAD_KEY_TEMPLATE", reason })?;
        let flag = |var: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                None => Ok(default),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some("0" | "false" | "no" | "off") => Ok(false),
                Some(v) => Err(ConfigError { var, reason: format!("{v:?} is not true or false") }),
            }
        };
        let require_auth = flag("CHUNKED_UPLOAD_REQUIRE_AUTH", true)?;
        let endpoint_overridden = get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL")).is_some();
        let s3_path_style = flag("CHUNKED_UPLOAD_S3_PATH_STYLE", endpoint_overridden)?;
        let storage_class = get("CHUNKED_UPLOAD_STORAGE_CLASS").unwrap_or_else(|| "STANDARD".into());
        if !STORAGE_CLASSES.contains(&storage_class.as_str()) {
            return Err(ConfigError {
                var: "CHUNKED_UPLOAD_STORAGE_CLASS",
                reason: format!("{storage_class:?} is not one of {}", STORAGE_CLASSES.join(", ")),
            });
        }
        let min_chunk_bytes = number("CHUNKED_UPLOAD_MIN_CHUNK_BYTES", DEFAULT_MIN_CHUNK, 1, max_chunk_bytes)?;
        let limit = |var: &'static str| -> Result<Option<u64>, ConfigError> {
            Ok(Some(number(var, 0, 0, u64::MAX)?).filter(|&v| v > 0))
        };
        let limits = Limits {
            uploads: limit("CHUNKED_UPLOAD_MAX_UPLOADS_PER_OWNER")?,
            bytes: limit("CHUNKED_UPLOAD_MAX_BYTES_PER_OWNER")?,
        };
        let request_timeout =
            Duration::from_secs(number("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", DEFAULT_REQUEST_TIMEOUT_SECS, 1, 900)?);
        let buffer_expiration_days = match get("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS") {
            None => None,
            Some(_) => Some(number("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", 0, 1, u64::MAX)?),
        };
        // A lifecycle rule that fires while uploads may still be live deletes their chunks and aborts their
        // multipart uploads: refuse to start rather than lose data later.
        let live_days = expiration_delta_secs.div_ceil(86_400);
        if let Some(days) = buffer_expiration_days.filter(|&days| days <= live_days) {
            return Err(ConfigError {
                var: "CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS",
                reason: format!(
                    "{days} days must be above CHUNKED_UPLOAD_EXPIRATION_DELTA in days ({expiration_delta_secs} s \
                     is {live_days} days, rounded up), or the lifecycle rules delete live uploads"
                ),
            });
        }
        let trusted_content_types = match get("CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    MediaType::parse(t).filter(|_| !t.contains(';')).ok_or_else(|| ConfigError {
                        var: "CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES",
                        reason: format!("{t:?} is not a media type (type/subtype, without parameters)"),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        // An hour at most: a URL signed with a function's temporary credentials stops working when they expire.
        let presign_expiry = Duration::from_secs(number("CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS", 900, 60, 3600)?);
        let metrics_namespace = match get("CHUNKED_UPLOAD_METRICS_NAMESPACE") {
            Some(off) if off.trim().eq_ignore_ascii_case("off") => None,
            Some(ns) if !valid_namespace(ns.trim()) => {
                return Err(ConfigError {
                    var: "CHUNKED_UPLOAD_METRICS_NAMESPACE",
                    reason: format!(
                        "{ns:?} is not a CloudWatch namespace (1 to 255 of letters, digits and . - _ / # : or space, \
                         not beginning with AWS/)"
                    ),
                });
            }
            Some(ns) => Some(ns.trim().to_string()),
            None => Some("ChunkedUpload".to_string()),
        };
        let event_bus =
            get("CHUNKED_UPLOAD_EVENT_BUS").map(|b| b.trim().to_string()).unwrap_or_else(|| "default".into());
        let completion_hook = get("CHUNKED_UPLOAD_COMPLETION_HOOK")
            .map(|text| HookSpec::parse(&text))
            .transpose()
            .map_err(|reason| ConfigError { var: "CHUNKED_UPLOAD_COMPLETION_HOOK", reason })?;
        let default_timeout = hook::DEFAULT_TIMEOUT.as_secs();
        let completion_hook_timeout =
            Duration::from_secs(number("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", default_timeout, 1, 900)?);
        // The hook runs inside the complete request, which must still record its answer before its deadline.
        if completion_hook.is_some() && completion_hook_timeout >= request_timeout {
            return Err(ConfigError {
                var: "CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS",
                reason: format!(
                    "{} s must be below CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS ({} s)",
                    completion_hook_timeout.as_secs(),
                    request_timeout.as_secs()
                ),
            });
        }
        Ok(Config {
            bucket,
            table,
            expiration_delta_secs,
            max_bytes,
            max_chunk_bytes,
            field_name,
            key_template,
            buffer_prefix,
            require_auth,
            min_part_bytes,
            max_part_bytes,
            storage_class,
            s3_path_style,
            min_chunk_bytes,
            limits,
            request_timeout,
            buffer_expiration_days,
            trusted_content_types,
            presign_expiry,
            metrics_namespace,
            event_bus,
            completion_hook,
            completion_hook_timeout,
        })
    }

    /// The largest file this deployment accepts.
    pub fn size_limit(&self) -> u64 {
        self.max_bytes.unwrap_or(S3_MAX_OBJECT_SIZE).min(S3_MAX_OBJECT_SIZE)
    }

    /// How long a completion claim holds before another request may take it over: the claimer's request ends by
    /// its deadline, so past the request timeout plus a margin (clock skew between functions, the answer's way out)
    /// nobody holds it any more.
    pub fn lease_ms(&self) -> u64 {
        (self.request_timeout + LEASE_MARGIN).as_millis() as u64
    }
}

/// CloudWatch's rule for namespaces; `AWS/` is AWS's own.
fn valid_namespace(ns: &str) -> bool {
    (1..=255).contains(&ns.len())
        && !ns.starts_with("AWS/")
        && ns.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [("CHUNKED_UPLOAD_BUCKET", "b"), ("CHUNKED_UPLOAD_TABLE", "t")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.expiration_delta_secs, 86_400);
        assert_eq!(c.max_bytes, None);
        assert_eq!(c.size_limit(), S3_MAX_OBJECT_SIZE);
        assert_eq!(c.field_name, "file");
        assert_eq!(c.key_template, KeyTemplate::parse("uploads/{upload_id}/{filename}", "buffer/").unwrap());
        assert!(c.require_auth);
        assert_eq!(c.min_part_bytes, MIN_PART_SIZE);
        assert_eq!(c.storage_class, "STANDARD");
        assert!(!c.s3_path_style);
        assert_eq!(c.request_timeout, Duration::from_secs(25));
        assert_eq!(c.lease_ms(), 35_000);
        assert_eq!(c.buffer_expiration_days, None);
        assert!(c.trusted_content_types.is_empty());
        assert_eq!(c.event_bus, "default");
        assert_eq!(c.completion_hook, None);
        assert_eq!(c.completion_hook_timeout, Duration::from_secs(5));
        assert!(config(&[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4566")]).unwrap().s3_path_style);
        assert_eq!(c.metrics_namespace.as_deref(), Some("ChunkedUpload"));
    }

    #[test]
    fn metrics_namespace() {
        let ns = |v: &str| config(&[("CHUNKED_UPLOAD_METRICS_NAMESPACE", v)]).map(|c| c.metrics_namespace);
        assert_eq!(ns("Team/Uploads").unwrap().as_deref(), Some("Team/Uploads"));
        assert_eq!(ns("OFF").unwrap(), None);
        for bad in ["AWS/Lambda", "a\u{e9}", "semi;colon"] {
            assert_eq!(ns(bad).unwrap_err().var, "CHUNKED_UPLOAD_METRICS_NAMESPACE", "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("CHUNKED_UPLOAD_EXPIRATION_DELTA", "soon"),
            ("CHUNKED_UPLOAD_EXPIRATION_DELTA", "0"),
            ("CHUNKED_UPLOAD_MAX_BYTES", "-5"),
            ("CHUNKED_UPLOAD_MIN_PART_BYTES", "1024"),
            ("CHUNKED_UPLOAD_REQUIRE_AUTH", "maybe"),
            ("CHUNKED_UPLOAD_KEY_TEMPLATE", "uploads/{filename}"),
            ("CHUNKED_UPLOAD_STORAGE_CLASS", "CHEAP"),
            ("CHUNKED_UPLOAD_BUFFER_PREFIX", "buffer"),
            ("CHUNKED_UPLOAD_S3_PATH_STYLE", "sometimes"),
            ("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", "0"),
            ("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", "2.5"),
            ("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", "0"),
            ("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", "three"),
            ("CHUNKED_UPLOAD_KEY_TEMPLATE", "{owner}/{upload_id}"),
            ("CHUNKED_UPLOAD_KEY_TEMPLATE", "buffer/{upload_id}"),
            ("CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES", "image/png, html"),
            ("CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES", "text/html; charset=utf-8"),
            ("CHUNKED_UPLOAD_COMPLETION_HOOK", "not a function"),
            ("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", "0"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().contains(var));
        }
        assert_eq!(Config::from_lookup(|_| None).unwrap_err().var, "CHUNKED_UPLOAD_BUCKET");
    }

    #[test]
    fn overrides() {
        let c = config(&[
            ("CHUNKED_UPLOAD_MAX_BYTES", "1000"),
            ("CHUNKED_UPLOAD_REQUIRE_AUTH", "false"),
            ("CHUNKED_UPLOAD_EXPIRATION_DELTA", "2"),
            ("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS", "3"),
            ("CHUNKED_UPLOAD_TRUSTED_CONTENT_TYPES", " Text/HTML,image/svg+xml, "),
            ("CHUNKED_UPLOAD_EVENT_BUS", " uploads "),
        ])
        .unwrap();
        assert_eq!(c.event_bus, "uploads");
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(
            c.trusted_content_types,
            [MediaType::parse("text/html").unwrap(), MediaType::parse("image/svg+xml").unwrap()]
        );
        assert_eq!(c.size_limit(), 1000);
        assert!(!c.require_auth);
        assert_eq!(c.expiration_delta_secs, 2);
    }

    #[test]
    fn the_hook_answers_within_the_request() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:attach";
        let c =
            config(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", arn), ("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", "3")])
                .unwrap();
        assert_eq!(c.completion_hook, Some(HookSpec::Lambda(arn.into())));
        assert_eq!(c.completion_hook_timeout, Duration::from_secs(3));
        let err =
            config(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", arn), ("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", "25")])
                .unwrap_err();
        assert_eq!(err.var, "CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS");
        assert!(err.reason.contains("CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS"), "{err}");
        // Without a hook, its timeout constrains nothing.
        assert!(config(&[("CHUNKED_UPLOAD_COMPLETION_HOOK_TIMEOUT_SECS", "60")]).is_ok());
        // The functions refuse what only the local server can call.
        let local = config(&[("CHUNKED_UPLOAD_COMPLETION_HOOK", "cmd:./attach.sh")]);
        assert_eq!(local.is_ok(), cfg!(feature = "local"), "{local:?}");
    }

    #[test]
    fn buffer_expiration_must_outlast_uploads() {
        let days = |delta: &str, days: &str| {
            config(&[("CHUNKED_UPLOAD_EXPIRATION_DELTA", delta), ("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", days)])
        };
        // (delta in seconds, the fewest buffer days it allows): day counts round up.
        for (delta, fewest) in [(1, 2), (3_600, 2), (86_400, 2), (86_401, 3), (259_200, 4), (2_592_000, 31)] {
            let ok = days(&delta.to_string(), &fewest.to_string()).unwrap();
            assert_eq!(ok.buffer_expiration_days, Some(fewest));
            let err = days(&delta.to_string(), &(fewest - 1).to_string()).unwrap_err();
            assert_eq!(err.var, "CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", "{delta} s, {} days", fewest - 1);
            assert!(err.to_string().contains("CHUNKED_UPLOAD_EXPIRATION_DELTA"), "{err}");
        }
        // The default delta (one day) against the template's default of 3 days.
        assert_eq!(config(&[("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", "3")]).unwrap().buffer_expiration_days, Some(3));
        assert_eq!(
            config(&[("CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS", "1")]).unwrap_err().var,
            "CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS"
        );
    }

    #[test]
    fn the_key_template_is_checked_against_the_buffer_prefix() {
        // Fine alone, but the buffer prefix moved under the template's prefix: an owner named "buffer" would collide.
        let err = config(&[
            ("CHUNKED_UPLOAD_KEY_TEMPLATE", "uploads/{owner}/{upload_id}"),
            ("CHUNKED_UPLOAD_BUFFER_PREFIX", "uploads/buffer/"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "CHUNKED_UPLOAD_KEY_TEMPLATE");
        assert!(err.reason.contains("uploads/buffer/"), "{err}");
        let c = config(&[
            ("CHUNKED_UPLOAD_KEY_TEMPLATE", "uploads/{owner}/{upload_id}"),
            ("CHUNKED_UPLOAD_BUFFER_PREFIX", "staging/"),
        ])
        .unwrap();
        let id = crate::protocol::UploadId::new();
        assert_eq!(c.key_template.render(&id, "f", "staging").as_str(), format!("uploads/staging/{id}"));
    }
}
