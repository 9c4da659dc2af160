//! Storage: the upload record in DynamoDB and the bytes in S3, each in its own file.

pub mod bucket;
pub mod record;
pub mod table;

pub use bucket::{Bucket, CompleteFailure};
pub use record::{Buffered, Completed, Part, Status, UploadRecord};
pub use table::{ChunkCommit, Table, Written};
