//! The complete function: `POST /upload/complete`.

use shared::{App, handlers, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env().await?;
    lambda::run(|req| handlers::complete_function(&app, req)).await
}
