//! The chunked-upload service: django-chunked-upload's protocol over S3 multipart uploads, with upload state in
//! DynamoDB.
//!
//! - [`protocol`]: the protocol's pure rules; [`grid`]: the modes and the parallel and direct grid; [`checksum`]:
//!   CRC64NVME; [`upload`]: the operations; [`store`]: DynamoDB and S3.
//! - [`request`] and [`handlers`]: HTTP decoding and entry points; [`cleanup`]: the stream consumer;
//!   [`lambda`]: the AWS Lambda glue;
//!   [`local`]: API Gateway emulation for the local server and the tests (feature `local`, never in a function);
//!   [`metrics`]: CloudWatch embedded-metric-format lines;
//! - [`hook`]: the optional completion hook (a Lambda function; a command or a local URL on the local server);
//! - [`secret`]: who may use an upload (the authenticated owner, or the holder of an anonymous upload's secret).

pub mod app;
pub mod checksum;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod grid;
pub mod handlers;
pub mod hook;
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod md5state;
pub mod metrics;
pub mod protocol;
pub mod request;
pub mod routes;
pub mod secret;
pub mod store;
pub mod tus;
pub mod upload;

pub use app::App;
pub use config::Config;
pub use error::ApiError;
