//! The service's state, built once per process: settings and AWS clients.

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Config;
use crate::store::{Bucket, Table};

pub struct App {
    pub config: Config,
    pub table: Table,
    pub bucket: Bucket,
}

impl App {
    /// Reads the settings and the AWS configuration (credentials, region, `AWS_ENDPOINT_URL_*`) from the environment.
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        Ok(Self::new(config, &sdk))
    }

    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(config.s3_path_style).build();
        Self::with_clients(config, aws_sdk_s3::Client::from_conf(s3), aws_sdk_dynamodb::Client::new(sdk))
    }

    /// With clients configured by the caller (the tests route them through a proxy).
    pub fn with_clients(config: Config, s3: aws_sdk_s3::Client, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        App {
            table: Table::new(dynamodb, config.table.clone()),
            bucket: Bucket::new(s3, config.bucket.clone()),
            config,
        }
    }
}
