//! The complete function: `POST /upload/complete`.

use shared::app::Function;
use shared::{App, handlers, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Complete).await?;
    lambda::run(|req| handlers::complete_function(&app, req)).await
}
