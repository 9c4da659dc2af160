//! S3's reports of objects POSTed to the bucket, emulated. Deployed, S3 reports each object a browser POSTs with a
//! form from `GET /s3/params` (through EventBridge, to the complete function), which completes its upload; the
//! emulators send no such report, so the local server watches the key a form names until the object appears or the
//! form expires, then hands the complete function's handler the report S3 would send.

use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use shared::lambda::{CreatedObject, ObjectCreated, ObjectCreatedDetail};
use shared::{App, companion};
use tokio::time::{Instant, sleep};

use crate::Apps;

/// The longest wait between two looks at a key: a posted object is completed within this.
const MOST_BETWEEN_LOOKS: Duration = Duration::from_secs(2);

/// Starts watching for the object of a form the API just handed out, if `response` answers `GET /s3/params`; the
/// complete function's app completes it.
pub fn watch_for_form(apps: &Arc<Apps>, method: &Method, path: &str, response: &Response<Bytes>) {
    if method != Method::GET
        || !path.trim_end_matches('/').ends_with("/s3/params")
        || response.status() != StatusCode::OK
    {
        return;
    }
    let Ok(form) = serde_json::from_slice::<serde_json::Value>(response.body()) else { return };
    let (Some(key), Some(expires)) = (form["key"].as_str(), form["expires"].as_u64()) else { return };
    let (apps, key) = (apps.clone(), key.to_string());
    tokio::spawn(async move {
        let app = &apps.complete;
        let until = Instant::now() + Duration::from_secs(expires);
        let mut between = Duration::from_millis(100);
        while Instant::now() < until {
            // Hundreds of forms may be watched at once: their looks must not use up the retries requests need.
            match apps.posted.stored(&key).await {
                Ok(Some(_)) => {
                    report(app, key).await;
                    return;
                }
                Ok(None) => {}
                Err(e) => eprintln!("watching for a posted object at {key:?}: {e}"),
            }
            sleep(between).await;
            between = (between * 2).min(MOST_BETWEEN_LOOKS);
        }
    });
}

/// What S3 would report through EventBridge.
async fn report(app: &App, key: String) {
    let report = ObjectCreated {
        detail_type: "Object Created".into(),
        source: "aws.s3".into(),
        detail: ObjectCreatedDetail { object: CreatedObject { key: key.clone() } },
    };
    if let Err(e) = companion::object_created(app, report).await {
        eprintln!("the posted object at {key:?} did not complete its upload: {e}");
    }
}
