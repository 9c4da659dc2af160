//! The tus function: `/files` and `/files/{id}` (tus 1.0.0: creation, HEAD, PATCH, DELETE, OPTIONS). The PATCH that
//! takes an upload's last byte completes it, completion hook included.

use shared::app::Function;
use shared::{App, handlers, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Tus).await?;
    lambda::run(|req| handlers::tus_function(&app, req)).await
}
