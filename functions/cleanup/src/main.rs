//! The cleanup function: the table's stream of TTL removals; discards the bytes of uploads that never completed.

use shared::app::Function;
use shared::{App, cleanup, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Cleanup).await?;
    lambda::run_events(|event| cleanup::handle_stream(&app, event)).await
}
