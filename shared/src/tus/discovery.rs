//! `OPTIONS`: what the server speaks. Deployed behind an HTTP API with CORS configured, API Gateway answers a
//! browser's preflight itself (an OPTIONS with `Origin` and `Access-Control-Request-Method`); every other OPTIONS
//! reaches this (docs/tus.md).

use lambda_http::http::StatusCode;

use super::answer::Answer;
use super::checksum::ALGORITHMS;
use super::headers::VERSION;
use crate::app::App;

/// The extensions served.
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation";

pub(super) fn answer(app: &App) -> Answer {
    Answer::new(StatusCode::NO_CONTENT)
        .header("tus-version", VERSION)
        .header("tus-extension", EXTENSIONS)
        .header("tus-max-size", app.config.size_limit())
        .header("tus-checksum-algorithm", ALGORITHMS)
}
