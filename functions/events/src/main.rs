//! The events function: the table's stream of record changes; publishes an EventBridge event when an upload is
//! completed, aborted or expires.

use shared::app::Function;
use shared::{App, events, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = App::from_env_as(Function::Events).await?;
    lambda::run_events(|event| events::handle_stream(&app, event)).await
}
