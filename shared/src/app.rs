//! The service's state, built once per process: settings and AWS clients.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, SdkConfig};

use crate::config::Config;
use crate::hook::CompletionHook;
use crate::metrics::Metrics;
use crate::store::{Bucket, Table};

pub struct App {
    pub config: Config,
    pub table: Table,
    pub bucket: Bucket,
    /// Lines on stdout; the tests read them from a sink of their own.
    pub metrics: Metrics,
    /// EventBridge, for the events function (`events`); the other functions build it and never call it.
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// `CHUNKED_UPLOAD_COMPLETION_HOOK`, if set.
    pub hook: Option<CompletionHook>,
}

/// A TCP and TLS handshake with a regional endpoint takes milliseconds; this covers one lost SYN (resent after 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// DynamoDB answers in milliseconds, whole items included: an attempt unanswered after this has hung, and the SDK
/// retries it while the request still has time.
pub(crate) const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// The SDK's time limits for S3 and DynamoDB calls, from the request timeout (`request`). No call outlives the
/// request: past it the handler answers anyway (and the cleanup function, which has no request, is bounded too).
///
/// DynamoDB: each attempt [`DYNAMODB_ATTEMPT_TIMEOUT`], the call with its retries the request timeout.
///
/// S3: an attempt may be an UploadPart of a whole part sent from memory, hundreds of MiB for the largest files, so no
/// fixed limit fits every call. An S3 call gets the request's time less one DynamoDB attempt (the commit that follows
/// it), and at least half of it. A hung S3 call then fails inside the operation, which knows that nothing was
/// committed and answers a plain 503, rather than at the request's deadline, where the answer cannot tell.
pub fn sdk_timeouts(request: Duration) -> (TimeoutConfig, TimeoutConfig) {
    let s3_call = request.saturating_sub(DYNAMODB_ATTEMPT_TIMEOUT).max(request / 2);
    let s3 = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(s3_call)
        .operation_timeout(s3_call)
        .build();
    let dynamodb = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(DYNAMODB_ATTEMPT_TIMEOUT.min(request))
        .operation_timeout(request)
        .build();
    (s3, dynamodb)
}

/// The Lambda functions of the deployment; a process runs one of them (the local server both API functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Chunk,
    Complete,
    Cleanup,
    Events,
    Tus,
}

impl Function {
    /// The SDK app id of the function's AWS clients: it names the function in every call's user agent (in CloudTrail,
    /// and for the tests' strict-AWS layer, which answers each call as that function's role would be answered).
    pub fn app_name(self) -> Option<AppName> {
        let name = match self {
            Function::Chunk => "chunk",
            Function::Complete => "complete",
            Function::Cleanup => "cleanup",
            Function::Events => "events",
            Function::Tus => "tus",
        };
        // Each is a valid app id; `None` only if the SDK's rules for them changed.
        AppName::new(name).ok()
    }
}

impl App {
    /// Reads the settings and the AWS configuration (credentials, region, `AWS_ENDPOINT_URL_*`) from the environment,
    /// for `function`.
    pub async fn from_env_as(function: Function) -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(name) = function.app_name() {
            loader = loader.app_name(name);
        }
        let sdk = loader.load().await;
        Ok(Self::new(config, &sdk))
    }

    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(config.s3_path_style).build();
        let (dynamodb, lambda) = (aws_sdk_dynamodb::Client::new(sdk), aws_sdk_lambda::Client::new(sdk));
        Self::with_clients(config, sdk, aws_sdk_s3::Client::from_conf(s3), dynamodb, &lambda)
    }

    /// With S3, DynamoDB and Lambda clients configured by the caller (the tests route them through proxies, and point
    /// the Lambda client at an emulated Lambda), the rest from `sdk` (EventBridge, and the credentials presigned URLs
    /// are signed with); the service's time limits replace the clients' own. The Lambda client is used only by a
    /// completion hook that names a function.
    pub fn with_clients(
        config: Config,
        sdk: &SdkConfig,
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        lambda: &aws_sdk_lambda::Client,
    ) -> Self {
        let eventbridge = aws_sdk_eventbridge::Client::new(sdk);
        let (s3_timeouts, dynamodb_timeouts) = sdk_timeouts(config.request_timeout);
        let s3 = aws_sdk_s3::Client::from_conf(s3.config().to_builder().timeout_config(s3_timeouts).build());
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            dynamodb.config().to_builder().timeout_config(dynamodb_timeouts.clone()).build(),
        );
        // PutEvents of one small entry answers in milliseconds, as DynamoDB does.
        let eventbridge = aws_sdk_eventbridge::Client::from_conf(
            eventbridge.config().to_builder().timeout_config(dynamodb_timeouts).build(),
        );
        let hook = config
            .completion_hook
            .as_ref()
            .map(|spec| CompletionHook::new(spec, config.completion_hook_timeout, lambda));
        App {
            hook,
            table: Table::new(dynamodb, config.table.clone()),
            bucket: Bucket::new(s3, config.bucket.clone(), sdk.credentials_provider()),
            metrics: Metrics::to_stdout(config.metrics_namespace.clone()),
            eventbridge,
            config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_calls_leave_room_for_the_commit() {
        let (s3, dynamodb) = sdk_timeouts(Duration::from_secs(25));
        assert_eq!(s3.operation_attempt_timeout(), Some(Duration::from_secs(21)));
        assert_eq!(s3.operation_timeout(), Some(Duration::from_secs(21)));
        assert_eq!(dynamodb.operation_attempt_timeout(), Some(Duration::from_secs(4)));
        assert_eq!(dynamodb.operation_timeout(), Some(Duration::from_secs(25)));
        // A short request timeout still leaves S3 half of it, and no call outlives the request.
        let (s3, dynamodb) = sdk_timeouts(Duration::from_secs(3));
        assert_eq!(s3.operation_timeout(), Some(Duration::from_millis(1500)));
        assert_eq!(dynamodb.operation_attempt_timeout(), Some(Duration::from_secs(3)));
    }
}
