//! A client of the chunked-upload service, and the `chunked-upload` command-line tool built on it.
//!
//! [`upload::Uploader`] uploads a file in the mode that suits it (direct to S3, relayed parallel chunks, or
//! django-chunked-upload's sequential chunks), resumes an interrupted upload from what the server holds, and
//! completes with the whole file's checksum, computed while reading. [`api::Api`] is the service's HTTP API, retried
//! with backoff and jitter.

pub mod api;
pub mod error;
pub mod source;
pub mod state;
pub mod upload;

pub use error::{Error, Result};
