//! The complete function: `POST /upload/complete` and `POST /s3/multipart/{uploadId}/complete`, and S3's reports
//! (EventBridge `Object Created`) of the objects Uppy's S3 plugin POSTs, which complete their uploads.

use shared::app::Function;
use shared::{App, companion, handlers, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Complete).await?;
    lambda::run_with_objects(
        |req| handlers::complete_function(&app, req),
        |report| companion::object_created(&app, report),
    )
    .await
}
