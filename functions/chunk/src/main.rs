//! The chunk function: `POST /upload`, `GET /upload/{upload_id}`, `DELETE /upload/{upload_id}`.

use shared::app::Function;
use shared::{App, handlers, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Chunk).await?;
    lambda::run(|req| handlers::chunk_function(&app, req)).await
}
